//! Reading records of the log off the broker's lock: a [`PagedRef`] says where a message's
//! record is; the pager thread reads it. The segment file is opened on the first read (by the
//! reader, not under the lock), and a segment that compaction retires while a read of it is
//! in flight is deleted when the last reference goes, by the log writer as always.

use super::record::{Decoded, Record};
use super::writer::LogWriter;
use crate::message::Message;
use crate::wire::parse_properties;
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One segment file as its readers share it.
pub(crate) struct SegmentFile {
    path: PathBuf,
    file: Mutex<Option<Arc<File>>>,
    /// Compaction retired the segment: whoever drops the last reference has it deleted.
    doomed: AtomicBool,
    writer: Arc<LogWriter>,
}

impl SegmentFile {
    /// A segment to be opened on its first read.
    pub(crate) fn new(path: PathBuf, writer: Arc<LogWriter>) -> Arc<SegmentFile> {
        Arc::new(SegmentFile {
            path,
            file: Mutex::new(None),
            doomed: AtomicBool::new(false),
            writer,
        })
    }

    /// A segment whose file is open already (the one just created).
    pub(crate) fn opened(path: PathBuf, file: File, writer: &Arc<LogWriter>) -> Arc<SegmentFile> {
        let segment = SegmentFile::new(path, writer.clone());
        *segment.lock() = Some(Arc::new(file));
        segment
    }

    /// The segment is retired: it goes when nobody reads it any more.
    pub(crate) fn doom(&self) {
        self.doomed.store(true, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<File>>> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open file (blocking: opens it on first use).
    fn file(&self) -> io::Result<Arc<File>> {
        let mut file = self.lock();
        if let Some(f) = file.as_ref() {
            return Ok(f.clone());
        }
        let opened = Arc::new(File::open(&self.path)?);
        *file = Some(opened.clone());
        Ok(opened)
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        if self.doomed.load(Ordering::Relaxed) {
            self.writer.delete(self.path.clone());
        }
    }
}

/// A persistent message's record on disk, ready to be read without the broker's lock.
pub struct PagedRef {
    pub msg_id: u64,
    pub(super) segment: Arc<SegmentFile>,
    pub(super) offset: u64,
    pub(super) len: u32,
    /// The log position the writer must have written for the record to be in the file.
    pub(super) written_by: Option<u64>,
    pub(super) writer: Arc<LogWriter>,
}

impl PagedRef {
    /// Reads the message (blocking: waits for the writer, then reads the file).
    pub fn read(&self) -> io::Result<Message> {
        self.record().and_then(|r| self.message(r))
    }

    /// Reads and checks the record itself.
    pub fn record(&self) -> io::Result<Record> {
        if let Some(end) = self.written_by {
            self.writer.wait_written(end);
        }
        let mut data = vec![0u8; self.len as usize];
        self.segment.file()?.read_exact_at(&mut data, self.offset)?;
        self.record_in(&Bytes::from(data), 0)
    }

    /// Its record, found at `at` in `data`, checked.
    fn record_in(&self, data: &Bytes, at: usize) -> io::Result<Record> {
        let msg_id = self.msg_id;
        match Record::decode_message_at(data, at) {
            Decoded::Record(record @ Record::Publish { .. }, _) if matches!(record, Record::Publish { msg_id: m, .. } if m == msg_id) => {
                Ok(record)
            }
            _ => Err(invalid(format!(
                "{}: record of message {msg_id} at offset {} is damaged",
                self.segment.path.display(),
                self.offset
            ))),
        }
    }

    /// The message of its publish record.
    fn message(&self, record: Record) -> io::Result<Message> {
        let msg_id = self.msg_id;
        match record {
            Record::Publish {
                exchange,
                routing_key,
                properties,
                body,
                ..
            } => Ok(Message {
                exchange,
                routing_key,
                properties: parse_properties(&properties).ok_or_else(|| {
                    invalid(format!("message {msg_id} has unreadable properties"))
                })?,
                raw_properties: properties,
                body,
            }),
            _ => Err(invalid(format!("message {msg_id} is not a publish record"))),
        }
    }
}

/// Records further apart than this are read separately.
const MAX_GAP: u64 = 4096;
/// The most bytes one read takes in (unless one record is larger).
const MAX_RUN: u64 = 256 * 1024;

/// Reads the messages of `refs` (blocking), with one read for each run of records that lie
/// close together in one segment, as the read-ahead of a queue mostly does; their bodies are
/// slices of that read's buffer. A run whose read fails is read again record by record, so
/// that each message gets its own answer.
pub(crate) fn read_messages(refs: &[PagedRef]) -> Vec<(u64, io::Result<Message>)> {
    let mut out = Vec::with_capacity(refs.len());
    let mut rest = refs;
    while !rest.is_empty() {
        let (run, after) = rest.split_at(run_length(rest));
        match read_run(run) {
            Ok(data) => {
                let start = run[0].offset;
                for r in run {
                    let at = (r.offset - start) as usize;
                    out.push((r.msg_id, r.record_in(&data, at).and_then(|m| r.message(m))));
                }
            }
            Err(_) => out.extend(run.iter().map(|r| (r.msg_id, r.read()))),
        }
        rest = after;
    }
    out
}

/// How many of `refs`, from the first, one read takes in.
fn run_length(refs: &[PagedRef]) -> usize {
    let first = &refs[0];
    let mut end = first.offset + first.len as u64;
    let mut n = 1;
    for r in &refs[1..] {
        let r_end = r.offset + r.len as u64;
        let close = Arc::ptr_eq(&r.segment, &first.segment)
            && r.offset >= end
            && r.offset - end <= MAX_GAP
            && r_end - first.offset <= MAX_RUN;
        if !close {
            break;
        }
        end = r_end;
        n += 1;
    }
    n
}

/// The bytes from the first record of `run` to the end of its last.
fn read_run(run: &[PagedRef]) -> io::Result<Bytes> {
    let (first, last) = (&run[0], &run[run.len() - 1]);
    if let Some(end) = run.iter().filter_map(|r| r.written_by).max() {
        first.writer.wait_written(end);
    }
    let mut data = vec![0u8; (last.offset + last.len as u64 - first.offset) as usize];
    first
        .segment
        .file()?
        .read_exact_at(&mut data, first.offset)?;
    Ok(Bytes::from(data))
}

impl std::fmt::Debug for PagedRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PagedRef({} at {}:{})",
            self.msg_id,
            self.segment.path.display(),
            self.offset
        )
    }
}

fn invalid(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}
