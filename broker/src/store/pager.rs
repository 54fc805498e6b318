//! The pager: one thread that reads paged-out messages back from the log for queues whose
//! consumers are waiting, so that no file read happens under the broker's lock. The core
//! asks for the next few messages of a queue (read-ahead in queue order); the thread reads
//! them and hands the bodies back through a callback that takes the lock briefly to put them
//! in place and deliver.

use super::log::PagedRef;
use crate::core::Message;
use std::io;
use std::sync::mpsc;

/// Messages of one queue to read back.
#[derive(Debug)]
pub struct PageRequest {
    pub vhost: String,
    pub queue: String,
    pub refs: Vec<PagedRef>,
}

/// What came back for a [`PageRequest`]: each message, or why it could not be read.
#[derive(Debug)]
pub struct PagedIn {
    pub vhost: String,
    pub queue: String,
    pub bodies: Vec<(u64, io::Result<Message>)>,
}

/// The sending side; dropping it ends the thread once the request in hand is done.
#[derive(Debug)]
pub struct Pager {
    requests: mpsc::Sender<PageRequest>,
}

impl Pager {
    /// Starts the thread; `done` gets every result (it runs on the pager thread).
    pub fn start(done: Box<dyn Fn(PagedIn) + Send>) -> io::Result<Pager> {
        let (requests, incoming) = mpsc::channel::<PageRequest>();
        std::thread::Builder::new()
            .name("bloodbank-pager".into())
            .spawn(move || {
                while let Ok(request) = incoming.recv() {
                    let bodies = request.refs.iter().map(|r| (r.msg_id, r.read())).collect();
                    done(PagedIn {
                        vhost: request.vhost,
                        queue: request.queue,
                        bodies,
                    });
                }
            })?;
        Ok(Pager { requests })
    }

    /// Asks for messages; false when the thread has stopped.
    pub fn request(&self, request: PageRequest) -> bool {
        self.requests.send(request).is_ok()
    }
}
