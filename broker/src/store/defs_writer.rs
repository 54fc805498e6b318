//! The definitions store's one writer thread. The core queues each change ([`DefOp`]) with a
//! sequence number under its lock, which costs a channel send; this thread applies whatever
//! has queued up in one redb transaction (one fsync for the batch) and publishes how far the
//! store is committed. A session holds back `declare-ok`, `bind-ok` and `delete-ok` until the
//! change is committed, and answers 541 INTERNAL_ERROR when the commit failed: a client is
//! never told a durable queue exists that would not survive a restart.

use super::definitions::{DefOp, Definitions};
use crate::error::chain;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::watch;

/// Failed batches remembered for sessions still waiting on them.
const FAILURES_KEPT: usize = 64;

/// How the writer is doing: everything up to `done` is settled, committed unless it falls in
/// one of the `failed` ranges.
#[derive(Debug, Default)]
struct Settled {
    failed: Vec<(u64, u64, String)>,
}

pub struct DefsWriter {
    queue: Mutex<Option<mpsc::Sender<(u64, DefOp)>>>,
    done: watch::Receiver<u64>,
    settled: Arc<Mutex<Settled>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DefsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DefsWriter(done {})", self.done())
    }
}

impl DefsWriter {
    pub fn start(defs: Definitions) -> std::io::Result<DefsWriter> {
        let (queue, ops) = mpsc::channel();
        let (done_tx, done) = watch::channel(0);
        let settled = Arc::new(Mutex::new(Settled::default()));
        let thread = {
            let settled = settled.clone();
            std::thread::Builder::new()
                .name("bloodbank-defs".into())
                .spawn(move || run(defs, ops, done_tx, settled))?
        };
        Ok(DefsWriter {
            queue: Mutex::new(Some(queue)),
            done,
            settled,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `op` as number `seq` (the caller numbers them, in order, under the core lock).
    pub fn send(&self, seq: u64, op: DefOp) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let sent = queue.as_ref().is_some_and(|q| q.send((seq, op)).is_ok());
        if !sent {
            tracing::error!("the definitions writer has stopped; a definition change is lost");
        }
    }

    /// Changes when more is settled.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.done.clone()
    }

    /// Everything up to this number is settled.
    pub fn done(&self) -> u64 {
        *self.done.borrow()
    }

    /// Why a change numbered within `(after, upto]` was not stored, if one was not.
    pub fn failure(&self, after: u64, upto: u64) -> Option<String> {
        let settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        settled
            .failed
            .iter()
            .find(|(from, to, _)| *from <= upto && *to > after)
            .map(|(_, _, why)| why.clone())
    }

    /// Applies what is queued and stops the thread.
    pub fn stop(&self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for DefsWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    defs: Definitions,
    ops: mpsc::Receiver<(u64, DefOp)>,
    done: watch::Sender<u64>,
    settled: Arc<Mutex<Settled>>,
) {
    while let Ok(first) = ops.recv() {
        let (from, mut upto) = (first.0, first.0);
        let mut batch = vec![first.1];
        while let Ok((seq, op)) = ops.try_recv() {
            upto = seq;
            batch.push(op);
        }
        if let Err(e) = defs.apply(&batch) {
            let why = chain(&e);
            tracing::error!(changes = batch.len(), "storing definitions failed: {why}");
            let mut settled = settled.lock().unwrap_or_else(|p| p.into_inner());
            if settled.failed.len() == FAILURES_KEPT {
                settled.failed.remove(0);
            }
            settled.failed.push((from, upto, why));
        }
        done.send_replace(upto);
    }
}
