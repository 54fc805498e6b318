//! Hot reload: a thread watches a `schemas/` tree and swaps in a freshly checked and
//! compiled set when files change. A bad edit keeps the last good set and says why.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::contracts::Contracts;
use crate::error::Error;

struct State {
    contracts: RwLock<Arc<Contracts>>,
    last_error: Mutex<Option<String>>,
    stop: AtomicBool,
}

/// The contracts of a directory, kept current. Dropping it stops the watcher.
pub struct Live {
    state: Arc<State>,
}

impl Live {
    /// Loads `dir` (which must be valid now, or not exist yet: then the set starts empty) and
    /// checks it for changes every `interval`.
    pub fn start(dir: &Path, interval: Duration) -> Result<Live, Error> {
        let seen = fingerprint(dir);
        let contracts = match dir.exists() {
            true => Contracts::load(dir)?,
            false => {
                tracing::warn!(dir = %dir.display(), "no event contracts: every event type is unregistered until the directory appears");
                Contracts::default()
            }
        };
        let state = Arc::new(State {
            contracts: RwLock::new(Arc::new(contracts)),
            last_error: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let watcher = Arc::clone(&state);
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("schemas-reload".into())
            .spawn(move || watch(&watcher, &dir, seen, interval))
            .map_err(|source| Error::Io {
                path: "schemas-reload thread".into(),
                source,
            })?;
        Ok(Live { state })
    }

    /// The current set; cheap, and stays valid while a reload swaps in another.
    pub fn current(&self) -> Arc<Contracts> {
        Arc::clone(
            &self
                .state
                .contracts
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Why the newest edit was refused, while the last good set stays in use.
    pub fn last_error(&self) -> Option<String> {
        self.state
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

fn watch(
    state: &State,
    dir: &Path,
    mut seen: Vec<(PathBuf, u64, Option<SystemTime>)>,
    interval: Duration,
) {
    while !state.stop.load(Ordering::Relaxed) {
        std::thread::sleep(interval);
        let now = fingerprint(dir);
        if now == seen {
            continue;
        }
        seen = now;
        let outcome = Contracts::load(dir);
        let mut last_error = state.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(contracts) => {
                tracing::info!(dir = %dir.display(), contracts = contracts.event_types().len(), "schemas reloaded");
                *state.contracts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(contracts);
                *last_error = None;
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "schemas changed but do not load; keeping the last good set: {e}");
                *last_error = Some(e.to_string());
            }
        }
    }
}

/// Every JSON file's path, size and modification time, sorted: changes when any file does.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(path),
                Ok(m) if path.extension().is_some_and(|e| e == "json") => {
                    out.push((path, m.len(), m.modified().ok()))
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}
