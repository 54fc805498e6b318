//! Group commit: one thread calls fdatasync on the active segment for every batch of appends
//! that someone waits on, then publishes how far the log is durable. Publishers' confirms wait
//! on that position, so one fdatasync releases every confirm of its batch.
//!
//! Positions are log sequence numbers (LSN): bytes appended since the log was opened.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use tokio::sync::watch;

struct State {
    file: Arc<File>,
    /// Bytes handed to the kernel so far.
    written: u64,
    /// The highest position someone waits to see durable.
    requested: u64,
    stop: bool,
}

pub struct Syncer {
    state: Mutex<State>,
    wake: Condvar,
    durable: watch::Sender<u64>,
}

impl Syncer {
    /// Starts the sync thread for a log whose active segment is `file`.
    pub fn start(file: Arc<File>) -> (Arc<Syncer>, JoinHandle<()>) {
        let syncer = Arc::new(Syncer {
            state: Mutex::new(State {
                file,
                written: 0,
                requested: 0,
                stop: false,
            }),
            wake: Condvar::new(),
            durable: watch::channel(0).0,
        });
        let worker = syncer.clone();
        let handle = std::thread::Builder::new()
            .name("bloodbank-sync".into())
            .spawn(move || worker.run())
            .expect("spawning the sync thread");
        (syncer, handle)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that everything up to `lsn` has been written to the active segment.
    pub fn wrote(&self, lsn: u64) {
        self.lock().written = lsn;
    }

    /// Asks for everything up to `lsn` to be made durable.
    pub fn request(&self, lsn: u64) {
        let mut state = self.lock();
        if lsn > state.requested && lsn > *self.durable.borrow() {
            state.requested = lsn;
            self.wake.notify_one();
        }
    }

    /// A new active segment; the caller has already synced the old one up to `lsn`.
    pub fn switch(&self, file: Arc<File>, lsn: u64) {
        let mut state = self.lock();
        state.file = file;
        state.written = lsn;
        drop(state);
        self.advance(lsn);
    }

    /// How far the log is durable.
    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Changes whenever the durable position moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
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

    fn run(&self) {
        loop {
            let (file, target) = {
                let mut state = self.lock();
                // Wait for a request beyond what is durable and written bytes to cover it.
                while !state.stop
                    && (state.requested <= self.durable() || state.written <= self.durable())
                {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.stop {
                    return;
                }
                // Everything written so far rides along with this sync.
                (state.file.clone(), state.written)
            };
            match file.sync_data() {
                Ok(()) => self.advance(target),
                Err(e) => {
                    // Confirms stay pending: nothing is acknowledged that is not on disk.
                    tracing::error!(error = %e, "fdatasync of the message log failed");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }
}
