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
        let msg_id = self.msg_id;
        match self.record()? {
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

    /// Reads and checks the record itself.
    pub fn record(&self) -> io::Result<Record> {
        if let Some(end) = self.written_by {
            self.writer.wait_written(end);
        }
        let mut data = vec![0u8; self.len as usize];
        self.segment.file()?.read_exact_at(&mut data, self.offset)?;
        let msg_id = self.msg_id;
        match Record::decode(&Bytes::from(data)) {
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
