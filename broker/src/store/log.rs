//! The message log: persistent messages of durable queues, appended to numbered segment files.
//!
//! Invariants:
//! - Records are only ever appended, to the highest-numbered (active) segment. Segments are
//!   deleted oldest first, so the files on disk always hold a suffix of the log's history and
//!   replaying them oldest first rebuilds the same index.
//! - A segment is deleted once it holds no live message, or after its few live messages have
//!   been copied forward (same id, the queues still holding them) and that copy is on disk.
//! - Appends happen under the broker's lock into a buffer, handed to `LogWriter` (one thread
//!   that writes and fdatasyncs, group commit) when it fills, before a sync is asked for, on
//!   every broker tick and when a connection closes. A publisher's confirm waits for the
//!   position its record ends at to be durable.
//! - A segment whose live messages were copied forward is deleted only once the copies are
//!   durable.
//! - Acks and delivery marks are appended without waiting: losing one to a crash only means a
//!   message comes back (as `redelivered`).
//!
//! The same structure is the spill file ([`Kind::Spill`]): transient messages past
//! `message_memory` go there so that a backlog of them does not live in RAM. It is never
//! synced and wiped at every start; only its publish records are written (what a queue no
//! longer holds is only forgotten in the index, which compaction goes by), and its ids start
//! at [`SPILL_BASE`] so that an id says which file holds the message.

use super::live::LiveIndex;
use super::paged::{PagedRef, SegmentFile};
use super::record::{Holder, PublishHead, Record};
use super::replay::{Meta, Names, Replay};
use super::segment::{list_segments, segment_path, walk, Location};
use super::writer::{LogWriter, Syncs};
use crate::message::Message;
use crate::Map;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Buffered records are written out once they reach this many bytes.
const FLUSH_AT: usize = 256 * 1024;

/// The segment sizes a log takes (`BrokerConfig::segment_bytes`; others are clamped): at
/// most 1 GiB, as the index keeps offsets in 32 bits.
pub const SEGMENT_BYTES: std::ops::RangeInclusive<u64> = 4096..=1 << 30;

/// Ids of spilled messages start here; the durable log's stay below.
pub(crate) const SPILL_BASE: u64 = 1 << 62;

/// What a log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Persistent messages of durable queues: synced for confirms, replayed at start.
    Durable,
    /// Transient messages past the memory budget: never synced, wiped at start.
    Spill,
}

/// A queue's messages as found on disk, in publish order.
#[derive(Debug)]
pub struct RecoveredQueue {
    pub vhost: String,
    pub queue: String,
    pub messages: Vec<(u64, Meta)>,
}

/// What opening the log found.
#[derive(Debug, Default)]
pub struct Recovery {
    pub queues: Vec<RecoveredQueue>,
    /// Damage found and worked around, each naming the file and byte offsets.
    pub problems: Vec<String>,
    /// Incomplete records cut from the end of the newest segment: what a crash in the middle
    /// of a write leaves (the write was never confirmed), repaired, not damage.
    pub torn_tails: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SegStats {
    len: u64,
    live_bytes: u64,
}

pub struct MessageLog {
    kind: Kind,
    dir: PathBuf,
    segment_bytes: u64,
    active_no: u64,
    /// Bytes appended since the log was opened; what the writer's positions count.
    lsn: u64,
    /// Records appended but not yet handed to the writer.
    pending: BytesMut,
    /// The position of each segment's first byte.
    segment_start: BTreeMap<u64, u64>,
    /// Segments whose live messages were copied forward: deleted once the log is durable up
    /// to the position given.
    doomed: BTreeMap<u64, u64>,
    writer: Arc<LogWriter>,
    writer_thread: Option<JoinHandle<()>>,
    names: Names,
    live: LiveIndex,
    segments: BTreeMap<u64, SegStats>,
    next_id: u64,
    /// The segments read from, each opened once; a segment in use is deleted by its last user.
    readers: Map<u64, Arc<SegmentFile>>,
    /// Copy-forward reads are handed out ([`MessageLog::take_copy_job`]) instead of done here.
    offload_copies: bool,
    /// The segment whose live messages are being copied forward, and the job not yet taken.
    copying: Option<u64>,
    copy_job: Option<CopyJob>,
}

/// The live messages of an old segment, to be read off the broker's lock and handed back to
/// [`MessageLog::finish_copy`].
#[derive(Debug)]
pub struct CopyJob {
    pub(crate) kind: Kind,
    pub segment: u64,
    pub refs: Vec<PagedRef>,
}

impl CopyJob {
    /// Reads every record (blocking).
    pub fn read_all(&self) -> Vec<(u64, io::Result<Record>)> {
        self.refs.iter().map(|r| (r.msg_id, r.record())).collect()
    }
}

impl std::fmt::Debug for MessageLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageLog")
            .field("dir", &self.dir)
            .field("active", &self.active_no)
            .field("live", &self.live.len())
            .finish()
    }
}

impl MessageLog {
    /// Opens (or creates) the log in `dir`: checks every record, cuts torn tails, rebuilds the
    /// index, and starts a new active segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<(MessageLog, Recovery)> {
        MessageLog::open_as(Kind::Durable, dir, segment_bytes)
    }

    /// Creates the spill file in `dir`, removing whatever an earlier run left there.
    pub fn spill(dir: &Path, segment_bytes: u64) -> io::Result<MessageLog> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let (mut log, _) = MessageLog::open_as(Kind::Spill, dir, segment_bytes)?;
        log.next_id = SPILL_BASE;
        Ok(log)
    }

    fn open_as(kind: Kind, dir: &Path, segment_bytes: u64) -> io::Result<(MessageLog, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let found = list_segments(dir)?;
        let mut replay = Replay::default();
        let mut segments = BTreeMap::new();
        let mut problems = Vec::new();
        let mut torn_tails = Vec::new();
        for &no in &found {
            let path = segment_path(dir, no);
            let data = Bytes::from(std::fs::read(&path)?);
            let result = walk(&data, |record, offset, len| {
                let loc = Location {
                    segment: no,
                    offset,
                    len,
                };
                replay.apply(record, loc);
            });
            for (from, to, why) in &result.skipped {
                problems.push(format!(
                    "{}: bytes {from}..{to} skipped ({why})",
                    path.display()
                ));
            }
            let mut len = data.len() as u64;
            if let Some(cut) = result.truncate_at {
                let report = format!(
                    "{}: incomplete record at offset {cut}, file cut back from {len} bytes",
                    path.display()
                );
                if Some(&no) == found.last() && result.skipped.is_empty() {
                    torn_tails.push(report);
                } else {
                    problems.push(report);
                }
                OpenOptions::new().write(true).open(&path)?.set_len(cut)?;
                len = cut;
            }
            segments.insert(no, SegStats { len, live_bytes: 0 });
        }
        for (id, loc) in &replay.unindexable {
            problems.push(format!(
                "{}: message {id} at offset {} is past the 4 GiB a segment may hold; not \
                 recovered (segment_bytes is capped at 1 GiB)",
                segment_path(dir, loc.segment).display(),
                loc.offset
            ));
        }
        for (_, loc) in replay.live.iter() {
            if let Some(s) = segments.get_mut(&loc.segment) {
                s.live_bytes += loc.len as u64;
            }
        }
        let active_no = found.last().map_or(1, |n| n + 1);
        let active = match kind {
            Kind::Durable => create_segment(dir, active_no)?,
            // Nothing in the spill file outlives a crash: its entry need not either.
            Kind::Spill => new_segment(dir, active_no)?,
        };
        segments.insert(active_no, SegStats::default());
        let syncs = match kind {
            Kind::Durable => Syncs::OnRequest,
            Kind::Spill => Syncs::Never,
        };
        let (writer, writer_thread) = LogWriter::start(active, syncs)?;
        let Replay {
            names,
            live,
            queues,
            max_id,
            ..
        } = replay;
        let mut recovered: Vec<RecoveredQueue> = queues
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(q, m)| {
                let (vhost, queue) = names.name(q);
                RecoveredQueue {
                    vhost: vhost.to_string(),
                    queue: queue.to_string(),
                    messages: m.into_sorted(),
                }
            })
            .collect();
        recovered.sort_by(|a, b| (&a.vhost, &a.queue).cmp(&(&b.vhost, &b.queue)));
        let mut log = MessageLog {
            kind,
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.clamp(*SEGMENT_BYTES.start(), *SEGMENT_BYTES.end()),
            active_no,
            lsn: 0,
            pending: BytesMut::with_capacity(FLUSH_AT),
            segment_start: BTreeMap::from([(active_no, 0)]),
            doomed: BTreeMap::new(),
            writer,
            writer_thread: Some(writer_thread),
            names,
            live,
            segments,
            next_id: max_id.map_or(1, |m| m + 1),
            readers: Map::default(),
            offload_copies: false,
            copying: None,
            copy_job: None,
        };
        log.compact()?;
        Ok((
            log,
            Recovery {
                queues: recovered,
                problems,
                torn_tails,
            },
        ))
    }

    /// The writer thread's handle: durable positions, sync requests.
    pub fn writer(&self) -> &Arc<LogWriter> {
        &self.writer
    }

    /// The position after the last record appended.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Appends a persistent message held by `queues`; returns its id.
    pub fn publish(
        &mut self,
        message: &Message,
        published_ms: u64,
        queues: &[(&str, &str)],
    ) -> io::Result<u64> {
        let msg_id = self.next_id;
        let head = PublishHead {
            msg_id,
            published_ms,
            exchange: &message.exchange,
            routing_key: &message.routing_key,
            properties: &message.raw_properties,
            body: &message.body,
        };
        let holders = queues.iter().map(|&(v, q)| (v, q, false));
        let loc = self.append_with(|out| head.encode(out, holders), true)?;
        self.next_id += 1;
        let holders: SmallVec<[(u32, bool); 2]> = queues
            .iter()
            .map(|(v, q)| (self.names.id(v, q), false))
            .collect();
        self.add_live(msg_id, loc, &holders);
        Ok(msg_id)
    }

    /// Messages that left `queue` for good.
    pub fn ack(&mut self, vhost: &str, queue: &str, msg_ids: Vec<u64>) -> io::Result<()> {
        if msg_ids.is_empty() {
            return Ok(());
        }
        let q = self.names.id(vhost, queue);
        for id in &msg_ids {
            self.release(*id, q);
        }
        self.note(|| Record::Ack {
            vhost: vhost.into(),
            queue: queue.into(),
            msg_ids,
        })
    }

    /// A message was handed out from `queue` for the first time.
    pub fn delivered(&mut self, vhost: &str, queue: &str, msg_id: u64) -> io::Result<()> {
        // Only replay reads delivery marks: the spill keeps none, in its index either.
        if self.kind == Kind::Spill {
            return Ok(());
        }
        let q = self.names.id(vhost, queue);
        self.live.mark_delivered(msg_id, q);
        self.note(|| Record::Delivered {
            vhost: vhost.into(),
            queue: queue.into(),
            msg_id,
        })
    }

    /// The queue is gone, with every message it held.
    pub fn drop_queue(&mut self, vhost: &str, queue: &str) -> io::Result<()> {
        let Some(q) = self.names.get(vhost, queue) else {
            return Ok(());
        };
        let held = self.live.held_by(q);
        if held.is_empty() {
            return Ok(());
        }
        for id in held {
            self.release(id, q);
        }
        self.note(|| Record::Drop {
            vhost: vhost.into(),
            queue: queue.into(),
        })
    }

    /// Reads a live message back from disk, here and now (blocking: see [`MessageLog::locate`]
    /// for reading it elsewhere).
    pub fn read(&mut self, msg_id: u64) -> io::Result<Message> {
        self.locate(msg_id)?.read()
    }

    /// Makes everything appended so far durable, now, and stops the writer thread.
    pub fn close(&mut self) -> io::Result<()> {
        self.flush();
        self.writer.stop();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
        Ok(())
    }

    /// How many persistent messages are live, and the bytes of segment files on disk.
    pub fn usage(&self) -> (usize, u64) {
        (self.live.len(), self.segments.values().map(|s| s.len).sum())
    }

    fn add_live(&mut self, msg_id: u64, loc: Location, holders: &[(u32, bool)]) {
        if let Some(s) = self.segments.get_mut(&loc.segment) {
            s.live_bytes += loc.len as u64;
        }
        self.live.insert(msg_id, loc, holders);
    }

    fn release(&mut self, msg_id: u64, q: u32) {
        if let Some(loc) = self.live.release(msg_id, q) {
            if let Some(s) = self.segments.get_mut(&loc.segment) {
                s.live_bytes = s.live_bytes.saturating_sub(loc.len as u64);
            }
        }
    }

    /// Appends a change to what queues hold (ack, delivery mark, drop) for replay; the spill
    /// file, never replayed, keeps none.
    fn note(&mut self, record: impl FnOnce() -> Record) -> io::Result<()> {
        match self.kind {
            Kind::Durable => self.append(&record(), true).map(drop),
            Kind::Spill => Ok(()),
        }
    }

    fn append(&mut self, record: &Record, may_compact: bool) -> io::Result<Location> {
        self.append_with(|out| record.encode(out), may_compact)
    }

    /// Appends what `encode` writes (one record) and says where it went.
    fn append_with(
        &mut self,
        encode: impl FnOnce(&mut BytesMut),
        may_compact: bool,
    ) -> io::Result<Location> {
        let before = self.pending.len();
        encode(&mut self.pending);
        let len = (self.pending.len() - before) as u64;
        let active_len = self.segments.get(&self.active_no).map_or(0, |s| s.len);
        let rolled = active_len > 0 && active_len + len > self.segment_bytes;
        if rolled {
            // The record opens the next segment: write the rest out without it.
            let record_bytes = self.pending.split_off(before);
            self.roll()?;
            self.pending.unsplit(record_bytes);
        }
        let offset = self.segments.get(&self.active_no).map_or(0, |s| s.len);
        self.segments.entry(self.active_no).or_default().len += len;
        self.lsn += len;
        let loc = Location {
            segment: self.active_no,
            offset,
            len: len as u32,
        };
        // Only once the record has its place: compaction appends copies after it.
        if rolled && may_compact {
            self.compact()?;
        }
        if self.pending.len() >= FLUSH_AT {
            self.flush();
        }
        Ok(loc)
    }

    /// Hands buffered records to the writer thread.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.writer.push(self.pending.split().freeze(), self.lsn);
        }
    }

    /// Seals the active segment (the writer syncs it) and starts the next one.
    fn roll(&mut self) -> io::Result<()> {
        self.flush();
        let next = self.active_no + 1;
        if next > u32::MAX as u64 {
            return Err(io::Error::other(
                "the message log ran out of segment numbers",
            ));
        }
        // Creating the file is one quick call; syncing the directory is the writer's.
        let file = new_segment(&self.dir, next)?;
        let reader = SegmentFile::opened(
            segment_path(&self.dir, next),
            file.try_clone()?,
            &self.writer,
        );
        self.readers.insert(next, reader);
        self.writer.switch(file, self.dir.clone());
        self.active_no = next;
        self.segment_start.insert(next, self.lsn);
        self.segments.insert(next, SegStats::default());
        Ok(())
    }

    /// Deletes old segments that hold little or nothing live, copying the live messages of
    /// each forward first, so disk use follows the live backlog. Runs on every segment roll
    /// and periodically (after a queue is deleted or drained, nothing else would roll).
    pub fn compact(&mut self) -> io::Result<()> {
        // A spill file that holds nothing starts over, so a drained backlog leaves no file
        // behind (the durable log keeps its active segment: rolling costs syncs there).
        let active_len = self.segments.get(&self.active_no).map_or(0, |s| s.len);
        if self.kind == Kind::Spill && self.live.is_empty() && active_len > 0 {
            self.roll()?;
        }
        loop {
            let Some((&oldest, &stats)) = self.segments.iter().next() else {
                return Ok(());
            };
            if oldest == self.active_no {
                return Ok(());
            }
            if let Some(&needed) = self.doomed.get(&oldest) {
                if self.writer.durable() < needed {
                    return Ok(());
                }
                self.doomed.remove(&oldest);
                self.delete_segment(oldest);
                continue;
            }
            let total: u64 = self.segments.values().map(|s| s.len).sum();
            let live: u64 = self.segments.values().map(|s| s.live_bytes).sum();
            let worth = stats.live_bytes == 0
                || stats.live_bytes * 2 <= stats.len
                || total > 2 * live + 2 * self.segment_bytes;
            if !worth {
                return Ok(());
            }
            if stats.live_bytes > 0 {
                // One segment at a time; its originals go once the copies are durable (a
                // later compaction).
                if self.copying.is_some() {
                    return Ok(());
                }
                let job = self.plan_copy(oldest)?;
                self.copying = Some(oldest);
                if self.offload_copies {
                    self.copy_job = Some(job);
                    return Ok(());
                }
                let records = job.read_all();
                return self.finish_copy(oldest, records);
            }
            self.delete_segment(oldest);
        }
    }

    /// Forgets a segment and has the writer delete its file, once no read of it is in
    /// flight.
    fn delete_segment(&mut self, segment: u64) {
        self.segments.remove(&segment);
        self.segment_start.remove(&segment);
        match self.readers.remove(&segment) {
            Some(reader) => reader.doom(),
            None => self.writer.delete(segment_path(&self.dir, segment)),
        }
    }

    /// From now on compaction hands its reads out ([`MessageLog::take_copy_job`]).
    pub fn offload_copies(&mut self) {
        self.offload_copies = true;
    }

    /// A copy-forward whose records are to be read elsewhere, if compaction wants one.
    pub fn take_copy_job(&mut self) -> Option<CopyJob> {
        self.copy_job.take()
    }

    /// Where the live messages of `segment` are (nothing is read yet).
    fn plan_copy(&mut self, segment: u64) -> io::Result<CopyJob> {
        let ids: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, loc)| loc.segment == segment)
            .map(|(id, _)| id)
            .collect();
        let refs = ids
            .into_iter()
            .map(|id| self.locate(id))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(CopyJob {
            kind: self.kind,
            segment,
            refs,
        })
    }

    /// Appends copies of the records read for a copy job (of the messages still live there,
    /// listing the queues that hold them now), and dooms the old segment once they are
    /// durable. A record that could not be read keeps the segment (the next compaction tries
    /// again).
    pub fn finish_copy(
        &mut self,
        segment: u64,
        records: Vec<(u64, io::Result<Record>)>,
    ) -> io::Result<()> {
        self.copying = None;
        let mut failed = None;
        for (id, read) in records {
            let mut record = match read {
                Ok(record) => record,
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            };
            if self.live.location(id).is_none_or(|l| l.segment != segment) {
                continue;
            }
            let Record::Publish { holders, .. } = &mut record else {
                continue;
            };
            *holders = self
                .live
                .holders(id)
                .iter()
                .map(|&(q, delivered)| {
                    let (vhost, queue) = self.names.name(q);
                    Holder {
                        vhost: vhost.into(),
                        queue: queue.into(),
                        delivered,
                    }
                })
                .collect();
            let loc = self.append(&record, false)?;
            if let Some(old) = self.live.relocate(id, loc) {
                if let Some(s) = self.segments.get_mut(&old.segment) {
                    s.live_bytes = s.live_bytes.saturating_sub(old.len as u64);
                }
            }
            if let Some(s) = self.segments.get_mut(&loc.segment) {
                s.live_bytes += loc.len as u64;
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.flush();
        self.writer.request(self.lsn);
        self.doomed.insert(segment, self.lsn);
        Ok(())
    }

    /// Where a live message's record is, to be read off the broker's lock (by the pager
    /// thread, which also opens the segment file): hands any of it still buffered here to the
    /// writer. The segment is not deleted while the reference is held.
    pub fn locate(&mut self, msg_id: u64) -> io::Result<PagedRef> {
        let loc = self
            .live
            .location(msg_id)
            .ok_or_else(|| invalid(format!("message {msg_id} is not in the log")))?;
        // A record appended since the log was opened may still be buffered or on its way to
        // the file (segments found at open are wholly on disk).
        let written_by = match self.segment_start.get(&loc.segment) {
            Some(start) => {
                let end = start + loc.offset + loc.len as u64;
                if end > self.lsn - self.pending.len() as u64 {
                    self.flush();
                }
                Some(end)
            }
            None => None,
        };
        let segment = self
            .readers
            .entry(loc.segment)
            .or_insert_with(|| {
                SegmentFile::new(segment_path(&self.dir, loc.segment), self.writer.clone())
            })
            .clone();
        Ok(PagedRef {
            msg_id,
            segment,
            offset: loc.offset,
            len: loc.len,
            written_by,
            writer: self.writer.clone(),
        })
    }
}

impl Drop for MessageLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// A new segment file; its directory entry is made durable by the writer (see `roll`), or
/// here for the first segment of a run.
fn new_segment(dir: &Path, no: u64) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(segment_path(dir, no))
}

fn create_segment(dir: &Path, no: u64) -> io::Result<File> {
    let file = new_segment(dir, no)?;
    // The new file's directory entry must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn invalid(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits until everything appended is durable.
    fn settle(log: &mut MessageLog) {
        log.flush();
        log.writer().request(log.lsn());
        while log.writer().durable() < log.lsn() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn message(body: &str) -> Message {
        Message::new("", "q", Default::default(), Bytes::from(body.to_string()))
    }

    #[test]
    fn a_straggler_is_copied_forward_and_its_old_segment_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovery) = MessageLog::open(dir.path(), 4096).unwrap();
        assert!(recovery.queues.is_empty());
        let first_segment = log.active_no;
        let keep = log.publish(&message("keep"), 1, &[("/", "q")]).unwrap();
        let mut kept = Vec::new();
        for i in 0..100 {
            let body = format!("{i:0>200}");
            let id = log.publish(&message(&body), 2, &[("/", "q")]).unwrap();
            if i % 10 == 0 {
                kept.push((id, body));
            } else {
                log.ack("/", "q", vec![id]).unwrap();
            }
        }
        // Every live message reads back as itself, wherever compaction moved it.
        for (id, body) in &kept {
            assert_eq!(log.read(*id).unwrap().body, Bytes::from(body.clone()));
        }
        // Old segments go once the copies of their live messages are durable.
        for _ in 0..20 {
            settle(&mut log);
            log.compact().unwrap();
        }
        // The writer deletes them after what was handed over before.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut segments = list_segments(dir.path()).unwrap();
        while segments.len() > 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            segments = list_segments(dir.path()).unwrap();
        }
        assert!(!segments.contains(&first_segment), "{segments:?}");
        assert!(segments.len() <= 3, "{segments:?}");
        assert_eq!(log.read(keep).unwrap().body, Bytes::from("keep"));
        drop(log);

        let (mut log, recovery) = MessageLog::open(dir.path(), 4096).unwrap();
        assert!(recovery.problems.is_empty(), "{:?}", recovery.problems);
        assert_eq!(recovery.queues.len(), 1);
        let ids: Vec<u64> = recovery.queues[0].messages.iter().map(|m| m.0).collect();
        let mut expected = vec![keep];
        expected.extend(kept.iter().map(|k| k.0));
        assert_eq!(ids, expected);
        for (id, body) in &kept {
            assert_eq!(log.read(*id).unwrap().body, Bytes::from(body.clone()));
        }
        assert_eq!(recovery.queues[0].messages[0].1.published_ms, 1);
        assert_eq!(log.read(keep).unwrap().body, Bytes::from("keep"));
        // Ids keep growing across restarts.
        let next = log.publish(&message("later"), 3, &[("/", "q")]).unwrap();
        assert!(next > keep);
    }

    #[test]
    fn the_spill_file_starts_empty_numbers_from_its_base_and_writes_no_acks() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill");
        let mut log = MessageLog::spill(&spill, 4096).unwrap();
        let id = log.publish(&message("one"), 0, &[("/", "q")]).unwrap();
        assert_eq!(id, SPILL_BASE);
        let before = log.lsn();
        log.ack("/", "q", vec![id]).unwrap();
        assert_eq!(
            log.lsn(),
            before,
            "an ack appends nothing to the spill file"
        );
        let kept = log.publish(&message("two"), 0, &[("/", "q")]).unwrap();
        assert_eq!(log.read(kept).unwrap().body, Bytes::from("two"));
        drop(log);
        let mut log = MessageLog::spill(&spill, 4096).unwrap();
        assert_eq!(log.usage(), (0, 0));
        assert_eq!(list_segments(&spill).unwrap().len(), 1);
        // Once nothing in it is live, compaction leaves one empty file.
        let id = log.publish(&message("three"), 0, &[("/", "q")]).unwrap();
        log.compact().unwrap();
        assert!(log.usage().1 > 0);
        log.ack("/", "q", vec![id]).unwrap();
        log.compact().unwrap();
        assert_eq!(log.usage(), (0, 0));
    }

    /// The pager reads runs of nearby records at once: across gaps of other records and
    /// segment ends every message still comes back as itself, and a damaged record costs
    /// only its own message.
    #[test]
    fn messages_read_in_runs_come_back_whole_and_damage_stays_local() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MessageLog::open(dir.path(), 8192).unwrap();
        let mut wanted = Vec::new();
        for i in 0..60 {
            let body = format!("{i:0>150}");
            let id = log.publish(&message(&body), 0, &[("/", "q")]).unwrap();
            match i % 3 {
                0 => log.ack("/", "q", vec![id]).unwrap(),
                _ => wanted.push((id, body)),
            }
        }
        settle(&mut log);
        let refs: Vec<PagedRef> = wanted
            .iter()
            .map(|(id, _)| log.locate(*id).unwrap())
            .collect();
        let read = super::super::paged::read_messages(&refs);
        assert_eq!(read.len(), wanted.len());
        for ((id, body), (got_id, got)) in wanted.iter().zip(&read) {
            assert_eq!(id, got_id);
            assert_eq!(got.as_ref().unwrap().body, Bytes::from(body.clone()));
        }

        let victim = &refs[5];
        let path = segment_path(
            dir.path(),
            log.live.location(victim.msg_id).unwrap().segment,
        );
        let mut data = std::fs::read(&path).unwrap();
        data[victim.offset as usize + victim.len as usize - 2] ^= 0x40;
        std::fs::write(&path, data).unwrap();
        let refs: Vec<PagedRef> = wanted
            .iter()
            .map(|(id, _)| log.locate(*id).unwrap())
            .collect();
        let read = super::super::paged::read_messages(&refs);
        let failed: Vec<u64> = read
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(failed, [wanted[5].0]);
    }

    #[test]
    fn a_message_on_two_queues_lives_until_both_settle_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MessageLog::open(dir.path(), 1 << 20).unwrap();
        let id = log
            .publish(&message("both"), 0, &[("/", "a"), ("/", "b")])
            .unwrap();
        log.delivered("/", "b", id).unwrap();
        log.ack("/", "a", vec![id]).unwrap();
        drop(log);
        let (mut log, recovery) = MessageLog::open(dir.path(), 1 << 20).unwrap();
        let names: Vec<&str> = recovery.queues.iter().map(|q| q.queue.as_str()).collect();
        assert_eq!(names, ["b"]);
        assert!(recovery.queues[0].messages[0].1.delivered);
        log.drop_queue("/", "b").unwrap();
        assert_eq!(log.usage().0, 0);
    }

    #[test]
    fn a_torn_tail_of_the_newest_segment_is_repaired_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MessageLog::open(dir.path(), 1 << 20).unwrap();
        let kept = log.publish(&message("whole"), 0, &[("/", "q")]).unwrap();
        let newest = segment_path(dir.path(), log.active_no);
        drop(log);
        let whole = std::fs::metadata(&newest).unwrap().len();
        let mut partial = BytesMut::new();
        Record::Ack {
            vhost: "/".into(),
            queue: "q".into(),
            msg_ids: vec![kept],
        }
        .encode(&mut partial);
        let mut data = std::fs::read(&newest).unwrap();
        data.extend_from_slice(&partial[..partial.len() - 3]);
        std::fs::write(&newest, data).unwrap();
        let (_, recovery) = MessageLog::open(dir.path(), 1 << 20).unwrap();
        assert!(recovery.problems.is_empty(), "{:?}", recovery.problems);
        assert_eq!(recovery.torn_tails.len(), 1);
        assert!(recovery.torn_tails[0].contains(&format!("offset {whole}")));
        assert_eq!(recovery.queues[0].messages[0].0, kept);
        assert_eq!(std::fs::metadata(&newest).unwrap().len(), whole);
    }

    /// Recovery of a segment cut short at every offset and of one with each byte flipped in
    /// turn: it opens (never a panic or an error that stops the start), and every message it
    /// recovers reads back as the one that was written.
    #[test]
    fn a_segment_cut_or_damaged_at_any_offset_opens_and_serves_only_whole_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MessageLog::open(dir.path(), 1 << 20).unwrap();
        let mut bodies = std::collections::HashMap::new();
        for i in 0..3 {
            let body = format!("message {i}");
            let id = log.publish(&message(&body), i, &[("/", "q")]).unwrap();
            bodies.insert(id, body);
        }
        let first = *bodies.keys().min().unwrap();
        log.ack("/", "q", vec![first]).unwrap();
        let name = segment_path(dir.path(), log.active_no);
        drop(log);
        let original = std::fs::read(&name).unwrap();
        let file_name = name.file_name().unwrap().to_owned();
        let check = |data: &[u8], what: &str| {
            let scratch = tempfile::tempdir().unwrap();
            std::fs::write(scratch.path().join(&file_name), data).unwrap();
            let (mut log, recovery) = MessageLog::open(scratch.path(), 1 << 20)
                .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
            for queue in &recovery.queues {
                for (id, _) in &queue.messages {
                    let read = log.read(*id).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(
                        Some(&String::from_utf8_lossy(&read.body).into_owned()),
                        bodies.get(id),
                        "{what}: message {id} came back changed"
                    );
                }
            }
        };
        for cut in 0..original.len() {
            check(&original[..cut], &format!("cut at {cut}"));
        }
        for at in 0..original.len() {
            let mut bad = original.clone();
            bad[at] ^= 0x20;
            check(&bad, &format!("byte {at} flipped"));
        }
    }
}
