//! The log's one writer thread: it takes the records the broker appended (in memory, under
//! its lock), writes them to the segment files, and when anyone waits for durability calls
//! fdatasync once for everything written so far (group commit), then publishes how far the log
//! is durable. Appends and syncs happen here, not under the broker's lock, so a write that
//! the kernel holds back (say, behind a page under writeback) never stalls deliveries. It also
//! syncs a full segment and the directory at a roll and deletes retired segments. The one file
//! call left under the lock is creating the next segment at a roll; reads are the pager's.
//!
//! Positions are log sequence numbers (LSN): bytes appended since the log was opened.
//!
//! The spill file of transient messages uses the same writer with [`Syncs::Never`]: nothing
//! there has to survive a crash, so a write counts as done once it is in the file.
//!
//! A write or sync that fails (EIO, ENOSPC, a file size limit) is retried with a growing pause,
//! so nothing handed over is dropped and every record stays where the index says it is; but
//! whoever waits for the records pending at that moment (or handed over while it keeps failing)
//! is told they failed (publishers get `basic.nack`), and [`LogWriter::failing`] raises the
//! disk alarm, which blocks publishers until a write goes through again.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// Under load, syncs are at least this far apart; what arrives meanwhile rides along. Measured
/// on a 2-core VM at 10k persistent msg/s: fdatasync flat out (~1000/s) left delivery p99 at
/// ~23 ms from the I/O's toll on scheduling; 2 ms apart gave ~5 ms and confirm p99 ~4 ms, and
/// more throughput. "Under load" is when the last sync carried more than one batch of
/// records: a lone publisher that waits for each confirm (one batch a sync) gets its sync at
/// once instead of waiting out the interval every time (2.3 ms against an fdatasync of 0.15 ms
/// here).
const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(2);

/// A failing write is retried after this pause, doubling up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// How far the log got, as its waiters see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Everything up to here is on disk.
    durable: u64,
    /// Positions after `.0` up to `.1` were pending when writing failed: they are not
    /// promised to anyone, even if a retry stores them later.
    failed: (u64, u64),
}

/// What became of the records up to a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Durable,
    Failed,
    Pending,
}

impl Progress {
    pub fn outcome(&self, lsn: u64) -> Outcome {
        if lsn > self.failed.0 && lsn <= self.failed.1 {
            Outcome::Failed
        } else if lsn <= self.durable {
            Outcome::Durable
        } else {
            Outcome::Pending
        }
    }
}

#[cfg(test)]
impl Progress {
    pub(crate) fn at(durable: u64) -> Progress {
        Progress {
            durable,
            failed: (0, 0),
        }
    }

    pub(crate) fn failed_after(durable: u64, upto: u64) -> Progress {
        Progress {
            durable,
            failed: (durable, upto),
        }
    }
}

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
    /// The end of everything handed over.
    pushed: u64,
    stop: bool,
}

/// Whether the writer makes what it writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syncs {
    /// fdatasync on request (group commit) and at every segment roll.
    OnRequest,
    /// Never: written is as far as anyone is promised (the spill file).
    Never,
}

pub struct LogWriter {
    syncs: Syncs,
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes readers waiting for `written` to move.
    progress: Condvar,
    durable: watch::Sender<Progress>,
    /// A write or sync keeps failing.
    failing: AtomicBool,
}

impl LogWriter {
    /// Starts the writer thread with `file` as the current segment.
    pub fn start(file: File, syncs: Syncs) -> std::io::Result<(Arc<LogWriter>, JoinHandle<()>)> {
        let writer = Arc::new(LogWriter {
            syncs,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                written: 0,
                requested: 0,
                pushed: 0,
                stop: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            durable: watch::channel(Progress::default()).0,
            failing: AtomicBool::new(false),
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
        let mut state = self.lock();
        state.queue.push_back(Chunk::Data(records, end));
        state.pushed = end;
        if self.failing() {
            // Nobody is promised what arrives while the disk fails.
            self.durable.send_modify(|p| p.failed.1 = end);
        }
        drop(state);
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

    /// How far the log is durable, and what failed.
    pub fn progress(&self) -> Progress {
        *self.durable.borrow()
    }

    /// How far the log is durable.
    pub fn durable(&self) -> u64 {
        self.durable.borrow().durable
    }

    /// Changes whenever the durable position moves or writing fails.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.durable.subscribe()
    }

    /// Writes to the log keep failing (the disk alarm is on).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Writes and syncs everything handed over, then ends the thread.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.work.notify_one();
    }

    fn advance(&self, lsn: u64) {
        self.durable.send_if_modified(|p| {
            let moved = lsn > p.durable;
            if moved {
                p.durable = lsn;
            }
            moved
        });
    }

    /// Runs a write or sync until it works. When it fails, everything pending is reported
    /// failed and the alarm raised; the retries pause longer each time. Gives up only when
    /// the log is stopping (what it still held was reported failed).
    fn persist(&self, what: &str, mut op: impl FnMut() -> std::io::Result<()>) -> bool {
        let mut pause = FIRST_RETRY_PAUSE;
        let mut attempts = 0u32;
        loop {
            let Err(e) = op() else {
                if attempts > 0 {
                    self.failing.store(false, Ordering::Relaxed);
                    tracing::info!("{what} works again after {attempts} failed attempts");
                }
                return true;
            };
            if attempts == 0 {
                tracing::error!(error = %e, "{what} failed; publishers are nacked and blocked until it works again");
                let state = self.lock();
                self.failing.store(true, Ordering::Relaxed);
                self.durable
                    .send_modify(|p| p.failed = (p.durable, state.pushed));
            }
            attempts += 1;
            if self.lock().stop {
                tracing::error!(error = %e, "{what} still fails at shutdown; giving up");
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }

    fn run(&self, mut file: File) {
        // Bytes in the current segment (every segment starts empty).
        let mut len = 0u64;
        let mut last_sync = std::time::Instant::now();
        // Batches of records written since the last sync, and whether that sync carried more
        // than one (then the next one waits for company).
        let mut batches = 0usize;
        let mut busy = false;
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
                        let ok = self.persist("writing to the message log", || {
                            // A failed write may have written part: cut it off, then retry,
                            // so every record stays where the index says it is.
                            file.write_all(&bytes).inspect_err(|_| {
                                let _ = file.set_len(len);
                            })
                        });
                        if !ok {
                            return;
                        }
                        len += bytes.len() as u64;
                        end = Some(at);
                        batches += 1;
                    }
                    Chunk::Switch(next, _) if self.syncs == Syncs::Never => {
                        file = next;
                        len = 0;
                    }
                    Chunk::Switch(next, dir) => {
                        if !self.persist("syncing a full log segment", || file.sync_data())
                            || !self.persist("syncing the log directory", || {
                                File::open(&dir).and_then(|d| d.sync_all())
                            })
                        {
                            return;
                        }
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
            if self.syncs == Syncs::Never {
                self.advance(written);
                if stop && self.lock().queue.is_empty() {
                    return;
                }
                continue;
            }
            let durable = self.durable();
            if stop || (sync_wanted > durable && written > durable) {
                if !stop && busy {
                    let since = last_sync.elapsed();
                    if since < MIN_SYNC_INTERVAL {
                        std::thread::sleep(MIN_SYNC_INTERVAL - since);
                        continue;
                    }
                }
                // Everything written so far rides along with this sync.
                if !self.persist("fdatasync of the message log", || file.sync_data()) {
                    return;
                }
                last_sync = std::time::Instant::now();
                busy = batches > 1;
                batches = 0;
                self.advance(written);
            }
            if stop && self.lock().queue.is_empty() {
                return;
            }
        }
    }
}
