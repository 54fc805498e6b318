//! Hot reload: a thread watches a `schemas/` tree and swaps in a freshly checked and
//! compiled set when files change. A bad edit keeps the last good set and says why.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::contracts::Contracts;
use crate::error::Error;

/// Where a set of contracts comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into the binary: the project's own `schemas/` as it was at build time.
    BuiltIn,
    /// A directory, watched for changes.
    Dir(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// What `/health` says of the contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub source: Source,
    /// Event types with at least one contract.
    pub event_types: usize,
    /// Why the set is not what was asked for: a configured directory that is missing or
    /// holds no contract, or an edit that did not load. None when all is well.
    pub problem: Option<String>,
}

struct State {
    source: Source,
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
            source: Source::Dir(dir.to_path_buf()),
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

    /// A set that never changes (the contracts built into the binary).
    pub fn fixed(contracts: Contracts, source: Source) -> Live {
        Live {
            state: Arc::new(State {
                source,
                contracts: RwLock::new(Arc::new(contracts)),
                last_error: Mutex::new(None),
                stop: AtomicBool::new(true),
            }),
        }
    }

    pub fn source(&self) -> &Source {
        &self.state.source
    }

    /// Where the contracts come from, how many there are, and what is wrong with them.
    pub fn status(&self) -> Status {
        let event_types = self.current().event_types().len();
        let problem = match (&self.state.source, self.last_error()) {
            (_, Some(e)) => Some(format!("the last edit did not load: {e}")),
            (Source::Dir(dir), None) if !dir.is_dir() => {
                Some(format!("{} does not exist", dir.display()))
            }
            (Source::Dir(dir), None) if event_types == 0 => {
                Some(format!("{} holds no event contract", dir.display()))
            }
            _ => None,
        };
        Status {
            source: self.state.source.clone(),
            event_types,
            problem,
        }
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
                tracing::warn!(dir = %dir.display(), "schemas changed but do not load; keeping the last good set: {}", chain(&e));
                *last_error = Some(chain(&e));
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

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
