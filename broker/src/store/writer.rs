//! The log's one writer thread: it takes the records the broker appended (in memory, under
//! its lock), writes them to the segment files, and when anyone waits for durability calls
//! fdatasync once for everything written so far (group commit), then publishes how far the log
//! is durable. Appends and syncs happen here, not under the broker's lock, so a write that
//! the kernel holds back (say, behind a page under writeback) never stalls deliveries. (What
//! still touches files under the lock is listed in docs/ARCHITECTURE.md.)
//!
//! Positions are log sequence numbers (LSN): bytes appended since the log was opened.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// Syncs are at least this far apart; what arrives meanwhile rides along. Measured on a 2-core
/// VM at 10k persistent msg/s: fdatasync flat out (~1000/s) left delivery p99 at ~23 ms from
/// the I/O's toll on scheduling; 2 ms apart gave ~5 ms and confirm p99 ~4 ms, and more
/// throughput.
const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(2);

enum Chunk {
    /// Records for the current segment, ending at this position.
    Data(Bytes, u64),
    /// Continue in this (new, empty) segment; the previous one is synced first, and the
    /// directory, so that the new file's entry survives a crash.
    Switch(File, PathBuf),
    /// A segment nothing needs any more.
    Delete(PathBuf),
}

struct State {
    queue: VecDeque<Chunk>,
    /// Everything up to here is in the files (not necessarily durable).
    written: u64,
    /// The highest position someone waits to see durable.
    requested: u64,
    stop: bool,
}

pub struct LogWriter {
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes readers waiting for `written` to move.
    progress: Condvar,
    durable: watch::Sender<u64>,
}

impl LogWriter {
    /// Starts the writer thread with `file` as the current segment.
    pub fn start(file: File) -> std::io::Result<(Arc<LogWriter>, JoinHandle<()>)> {
        let writer = Arc::new(LogWriter {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                written: 0,
                requested: 0,
                stop: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            durable: watch::channel(0).0,
        });
        let worker = writer.clone();
        let handle = std::thread::Builder::new()
            .name("bloodbank-log".into())
            .spawn(move || worker.run(file))?;
        Ok((writer, handle))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands over records that end at position `end`.
    pub fn push(&self, records: Bytes, end: u64) {
        self.lock().queue.push_back(Chunk::Data(records, end));
        self.work.notify_one();
    }

    /// Records after this go to `file`, a new segment in directory `dir`.
    pub fn switch(&self, file: File, dir: PathBuf) {
        self.lock().queue.push_back(Chunk::Switch(file, dir));
        self.work.notify_one();
    }

    /// Deletes a segment file, after everything handed over before it.
    pub fn delete(&self, path: PathBuf) {
        self.lock().queue.push_back(Chunk::Delete(path));
        self.work.notify_one();
    }

    /// Asks for everything up to `lsn` to be made durable.
    pub fn request(&self, lsn: u64) {
        let mut state = self.lock();
        if lsn > state.requested && lsn > self.durable() {
            state.requested = lsn;
            self.work.notify_one();
        }
    }

    /// Blocks until everything up to `lsn` is in the files (so it can be read back).
    pub fn wait_written(&self, lsn: u64) {
        let mut state = self.lock();
        while state.written < lsn && !state.stop {
            state = self.progress.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How far the log is durable.
    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Changes whenever the durable position moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Writes and syncs everything handed over, then ends the thread.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.work.notify_one();
    }

    fn advance(&self, lsn: u64) {
        self.durable.send_if_modified(|d| {
            let moved = lsn > *d;
            if moved {
                *d = lsn;
            }
            moved
        });
    }

    fn run(&self, mut file: File) {
        // Bytes in the current segment (every segment starts empty).
        let mut len = 0u64;
        let mut last_sync = std::time::Instant::now();
        loop {
            let (chunks, stop, sync_wanted) = {
                let mut state = self.lock();
                while state.queue.is_empty()
                    && !state.stop
                    && !(state.requested > self.durable() && state.written > self.durable())
                {
                    state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                let chunks: Vec<Chunk> = state.queue.drain(..).collect();
                (chunks, state.stop, state.requested)
            };
            let mut end = None;
            for chunk in chunks {
                match chunk {
                    Chunk::Data(bytes, at) => {
                        retry("writing to the message log", || {
                            // A failed write may have written part: cut it off, then retry,
                            // so every record stays where the index says it is.
                            file.write_all(&bytes).inspect_err(|_| {
                                let _ = file.set_len(len);
                            })
                        });
                        len += bytes.len() as u64;
                        end = Some(at);
                    }
                    Chunk::Switch(next, dir) => {
                        retry("syncing a full log segment", || file.sync_data());
                        retry("syncing the log directory", || {
                            File::open(&dir).and_then(|d| d.sync_all())
                        });
                        if let Some(at) = end {
                            self.advance(at);
                        }
                        file = next;
                        len = 0;
                    }
                    Chunk::Delete(path) => {
                        if let Err(e) = std::fs::remove_file(&path) {
                            tracing::warn!(path = %path.display(), error = %e, "deleting a log segment failed");
                        }
                    }
                }
            }
            let written = {
                let mut state = self.lock();
                if let Some(at) = end {
                    state.written = at;
                }
                self.progress.notify_all();
                state.written
            };
            if stop || (sync_wanted > self.durable() && written > self.durable()) {
                if !stop {
                    let since = last_sync.elapsed();
                    if since < MIN_SYNC_INTERVAL {
                        std::thread::sleep(MIN_SYNC_INTERVAL - since);
                        continue;
                    }
                }
                // Everything written so far rides along with this sync.
                retry("fdatasync of the message log", || file.sync_data());
                last_sync = std::time::Instant::now();
                self.advance(written);
            }
            if stop && self.lock().queue.is_empty() {
                return;
            }
        }
    }
}

/// Retries a failing write or sync until it works: nothing is confirmed that is not on disk,
/// and nothing handed over is dropped.
fn retry(what: &str, mut op: impl FnMut() -> std::io::Result<()>) {
    while let Err(e) = op() {
        tracing::error!(error = %e, "{what} failed; retrying");
        std::thread::sleep(Duration::from_millis(100));
    }
}
