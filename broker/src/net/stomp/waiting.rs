//! Replies that wait for the disk. A SEND of a persistent message is answered (its RECEIPT,
//! or nothing) only once the message log is durable past it, and every frame after it waits
//! its turn, so replies keep their order while a producer pipelines SENDs instead of waiting
//! for each fsync. Pure state; the connection task feeds it the log's progress.

use super::frame::Frame;
use crate::store::{Outcome, Progress};
use std::collections::VecDeque;

/// Most replies held at once; the connection stops reading frames while this many wait.
pub(crate) const MAX_WAITING: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// (log position, frames to send once it is durable), positions never decreasing.
    queue: VecDeque<(u64, Vec<Frame>)>,
}

/// A write the replies were waiting for failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotStored;

impl Waiting {
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.queue.len() >= MAX_WAITING
    }

    /// A step's frames: handed back if they may go now, else held (after what already
    /// waits, and until the log is durable past `wait_for`).
    pub(crate) fn admit(
        &mut self,
        wait_for: Option<u64>,
        frames: Vec<Frame>,
    ) -> Option<Vec<Frame>> {
        let last = self.queue.back().map(|(p, _)| *p);
        match (wait_for, last) {
            (None, None) => Some(frames),
            (Some(p), last) => {
                self.queue.push_back((p.max(last.unwrap_or(0)), frames));
                None
            }
            (None, Some(last)) => {
                self.queue.push_back((last, frames));
                None
            }
        }
    }

    /// The frames whose turn has come with the log at `progress`, in order.
    pub(crate) fn release(&mut self, progress: &Progress) -> Result<Vec<Frame>, NotStored> {
        let mut out = Vec::new();
        while let Some((position, _)) = self.queue.front() {
            match progress.outcome(*position) {
                Outcome::Pending => break,
                Outcome::Failed => return Err(NotStored),
                Outcome::Durable => {
                    if let Some((_, frames)) = self.queue.pop_front() {
                        out.extend(frames);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(id: &str) -> Vec<Frame> {
        vec![Frame::new("RECEIPT").with("receipt-id", id)]
    }

    fn ids(frames: &[Frame]) -> Vec<&str> {
        frames
            .iter()
            .filter_map(|f| f.header("receipt-id"))
            .collect()
    }

    #[test]
    fn replies_wait_for_their_position_and_keep_their_order() {
        let mut w = Waiting::default();
        assert_eq!(w.admit(None, receipt("now")).unwrap().len(), 1);
        assert!(w.admit(Some(10), receipt("a")).is_none());
        assert!(
            w.admit(None, receipt("b")).is_none(),
            "after a, so it waits for 10 too"
        );
        assert!(w.admit(Some(20), receipt("c")).is_none());
        assert!(w.admit(Some(15), Vec::new()).is_none());
        let at = |durable| Progress::at(durable);
        assert!(w.release(&at(9)).unwrap().is_empty());
        assert_eq!(ids(&w.release(&at(12)).unwrap()), ["a", "b"]);
        assert_eq!(ids(&w.release(&at(25)).unwrap()), ["c"]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_failed_write_is_reported() {
        let mut w = Waiting::default();
        w.admit(Some(10), receipt("a"));
        assert_eq!(w.release(&Progress::failed_after(5, 10)), Err(NotStored));
    }
}
