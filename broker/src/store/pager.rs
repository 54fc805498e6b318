//! The pager: one thread that reads the message log for the broker, so that no file read
//! happens under the broker's lock: paged-out messages for queues whose consumers are waiting
//! (the next few of a queue, in queue order), and the live records compaction copies forward.
//! It hands what it read back through a callback that takes the lock briefly. Each request
//! carries the caller's note of what the messages are for (`T`), handed back with them.

use super::log::{CopyJob, Kind};
use super::paged::{read_messages, PagedRef};
use super::record::Record;
use crate::message::Message;
use std::io;
use std::sync::mpsc;

/// What the pager is asked to read.
#[derive(Debug)]
enum Work<T> {
    Messages(PageRequest<T>),
    Copy(CopyJob),
}

/// What the pager read.
#[derive(Debug)]
pub(crate) enum Paged<T> {
    Messages(PagedIn<T>),
    /// The records of a [`CopyJob`], for `MessageLog::finish_copy` of the log it came from.
    Copied {
        kind: Kind,
        segment: u64,
        records: Vec<(u64, io::Result<Record>)>,
    },
}

/// Messages to read back, and what they are for.
#[derive(Debug)]
pub(crate) struct PageRequest<T> {
    pub refs: Vec<PagedRef>,
    pub then: T,
}

/// What came back for a [`PageRequest`]: each message, or why it could not be read.
#[derive(Debug)]
pub(crate) struct PagedIn<T> {
    pub bodies: Vec<(u64, io::Result<Message>)>,
    pub then: T,
}

/// The sending side; dropping it ends the thread once the request in hand is done.
#[derive(Debug)]
pub(crate) struct Pager<T> {
    requests: mpsc::Sender<Work<T>>,
}

impl<T: Send + 'static> Pager<T> {
    /// Starts the thread; `done` gets every result (it runs on the pager thread).
    pub(crate) fn start(done: Box<dyn Fn(Paged<T>) + Send>) -> io::Result<Pager<T>> {
        let (requests, incoming) = mpsc::channel::<Work<T>>();
        std::thread::Builder::new()
            .name("bloodbank-pager".into())
            .spawn(move || {
                while let Ok(work) = incoming.recv() {
                    done(match work {
                        Work::Messages(request) => Paged::Messages(PagedIn {
                            bodies: read_messages(&request.refs),
                            then: request.then,
                        }),
                        Work::Copy(job) => Paged::Copied {
                            kind: job.kind,
                            segment: job.segment,
                            records: job.read_all(),
                        },
                    });
                }
            })?;
        Ok(Pager { requests })
    }

    /// Asks for messages; false when the thread has stopped.
    pub(crate) fn request(&self, request: PageRequest<T>) -> bool {
        self.requests.send(Work::Messages(request)).is_ok()
    }

    /// Asks for the records of a copy-forward; false when the thread has stopped.
    pub(crate) fn copy(&self, job: CopyJob) -> bool {
        self.requests.send(Work::Copy(job)).is_ok()
    }
}
