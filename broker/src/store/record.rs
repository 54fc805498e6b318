//! The records of the message log and their byte layout. Pure: no files here.
//!
//! A record on disk is `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`; the
//! payload starts with a kind byte. Strings carry a u16 length, byte blobs a u32 length.
//! A reader that finds fewer bytes than a header announces has hit a torn tail; a checksum or
//! layout mismatch is corruption.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes before the payload: length and checksum.
pub(crate) const HEADER_LEN: usize = 8;
/// No record is larger than this (the broker's largest message plus headroom); a larger length
/// field can only be corruption.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// A queue that holds a persistent message, and whether it was ever delivered from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub vhost: String,
    pub queue: String,
    pub delivered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A persistent message enqueued on durable queues (also written again when a live
    /// message is copied forward out of an old segment, with the same id).
    Publish {
        msg_id: u64,
        /// When it was first published (ms since the Unix epoch), for TTLs after a restart.
        published_ms: u64,
        exchange: String,
        routing_key: String,
        properties: Bytes,
        body: Bytes,
        holders: Vec<Holder>,
    },
    /// Messages that left a queue for good (ack, reject, expiry, overflow, purge).
    Ack {
        vhost: String,
        queue: String,
        msg_ids: Vec<u64>,
    },
    /// A message was handed to a consumer: after a crash it comes back `redelivered`.
    Delivered {
        vhost: String,
        queue: String,
        msg_id: u64,
    },
    /// The queue was deleted: every message it held so far is gone.
    Drop { vhost: String, queue: String },
}

mod kind {
    pub(crate) const PUBLISH: u8 = 1;
    pub(crate) const ACK: u8 = 2;
    pub(crate) const DELIVERED: u8 = 3;
    pub(crate) const DROP: u8 = 4;
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, intact record and the bytes it took.
    Record(Record, usize),
    /// The buffer ends inside a record (a write cut short).
    Incomplete,
    /// The bytes are not a valid record.
    Corrupt(&'static str),
}

/// The fields of a publish record but its holders, borrowed: what the log appends for a
/// message without copying its names into a [`Record`].
pub(crate) struct PublishHead<'a> {
    pub msg_id: u64,
    pub published_ms: u64,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

impl PublishHead<'_> {
    /// Appends the publish record, header included, with these holders (vhost, queue,
    /// delivered).
    pub(crate) fn encode<'h>(
        &self,
        out: &mut BytesMut,
        holders: impl ExactSizeIterator<Item = (&'h str, &'h str, bool)>,
    ) {
        framed(out, |out| {
            out.put_u8(kind::PUBLISH);
            out.put_u64_le(self.msg_id);
            out.put_u64_le(self.published_ms);
            put_str(out, self.exchange);
            put_str(out, self.routing_key);
            put_blob(out, self.properties);
            put_blob(out, self.body);
            out.put_u32_le(holders.len() as u32);
            for (vhost, queue, delivered) in holders {
                put_str(out, vhost);
                put_str(out, queue);
                out.put_u8(delivered as u8);
            }
        });
    }
}

/// Appends what `payload` writes as one record: its length and checksum, then it.
fn framed(out: &mut BytesMut, payload: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u64_le(0); // length and checksum, filled in below
    payload(out);
    let payload_len = (out.len() - start - HEADER_LEN) as u32;
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

impl Record {
    /// Appends the record, header included.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Record::Publish {
                msg_id,
                published_ms,
                exchange,
                routing_key,
                properties,
                body,
                holders,
            } => {
                let head = PublishHead {
                    msg_id: *msg_id,
                    published_ms: *published_ms,
                    exchange,
                    routing_key,
                    properties,
                    body,
                };
                let holders = holders
                    .iter()
                    .map(|h| (h.vhost.as_str(), h.queue.as_str(), h.delivered));
                head.encode(out, holders);
            }
            Record::Ack {
                vhost,
                queue,
                msg_ids,
            } => framed(out, |out| {
                out.put_u8(kind::ACK);
                put_str(out, vhost);
                put_str(out, queue);
                out.put_u32_le(msg_ids.len() as u32);
                for id in msg_ids {
                    out.put_u64_le(*id);
                }
            }),
            Record::Delivered {
                vhost,
                queue,
                msg_id,
            } => framed(out, |out| {
                out.put_u8(kind::DELIVERED);
                put_str(out, vhost);
                put_str(out, queue);
                out.put_u64_le(*msg_id);
            }),
            Record::Drop { vhost, queue } => framed(out, |out| {
                out.put_u8(kind::DROP);
                put_str(out, vhost);
                put_str(out, queue);
            }),
        }
    }

    /// Reads the record at offset `at` of `data`. Blobs are slices of `data`, not copies; the
    /// rest is read in place.
    pub fn decode_at(data: &Bytes, at: usize) -> Decoded {
        Record::decode_with(data, at, true)
    }

    /// As [`Record::decode_at`] (checked alike), but a publish record's holders are left
    /// out: whoever reads a message back knows who holds it from the index.
    pub fn decode_message_at(data: &Bytes, at: usize) -> Decoded {
        Record::decode_with(data, at, false)
    }

    fn decode_with(data: &Bytes, at: usize, holders: bool) -> Decoded {
        let buf = &data[at.min(data.len())..];
        if buf.len() < HEADER_LEN {
            return Decoded::Incomplete;
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len == 0 || len > MAX_PAYLOAD {
            return Decoded::Corrupt("impossible record length");
        }
        if buf.len() < HEADER_LEN + len {
            return Decoded::Incomplete;
        }
        if crc32fast::hash(&buf[HEADER_LEN..HEADER_LEN + len]) != crc {
            return Decoded::Corrupt("checksum mismatch");
        }
        let mut cursor = Cursor {
            data,
            at: at + HEADER_LEN,
            end: at + HEADER_LEN + len,
        };
        match parse_payload(&mut cursor, holders) {
            Some(record) => Decoded::Record(record, HEADER_LEN + len),
            None => Decoded::Corrupt("malformed record"),
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16_le(bytes.len() as u16);
    out.put_slice(bytes);
}

fn put_blob(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

/// A cursor over a payload (`data[at..end]`); every read checks the bytes are there. Only
/// blobs share `data` (one reference count each); the rest is read in place.
struct Cursor<'a> {
    data: &'a Bytes,
    at: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.end - self.at
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        if end > self.end {
            return None;
        }
        let data: &'a Bytes = self.data;
        let out = &data[self.at..end];
        self.at = end;
        Some(out)
    }

    /// Passes over what is left (checked by the record's checksum, not parsed).
    fn skip_rest(&mut self) {
        self.at = self.end;
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok().map(str::to_string)
    }

    fn blob(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        let from = self.at;
        self.take(n)?;
        Some(self.data.slice(from..from + n))
    }
}

fn parse_payload(c: &mut Cursor, with_holders: bool) -> Option<Record> {
    let record = match c.u8()? {
        kind::PUBLISH => {
            let msg_id = c.u64()?;
            let published_ms = c.u64()?;
            let exchange = c.string()?;
            let routing_key = c.string()?;
            let properties = c.blob()?;
            let body = c.blob()?;
            let n = c.u32()? as usize;
            // Each holder takes at least 5 bytes: a count beyond that is damage.
            if n > c.left() / 5 {
                return None;
            }
            let mut holders = Vec::new();
            if with_holders {
                holders.reserve_exact(n);
                for _ in 0..n {
                    holders.push(Holder {
                        vhost: c.string()?,
                        queue: c.string()?,
                        delivered: c.u8()? != 0,
                    });
                }
            } else {
                c.skip_rest();
            }
            Record::Publish {
                msg_id,
                published_ms,
                exchange,
                routing_key,
                properties,
                body,
                holders,
            }
        }
        kind::ACK => {
            let vhost = c.string()?;
            let queue = c.string()?;
            let n = c.u32()? as usize;
            if n > c.left() / 8 {
                return None;
            }
            let msg_ids = (0..n).map(|_| c.u64()).collect::<Option<Vec<_>>>()?;
            Record::Ack {
                vhost,
                queue,
                msg_ids,
            }
        }
        kind::DELIVERED => Record::Delivered {
            vhost: c.string()?,
            queue: c.string()?,
            msg_id: c.u64()?,
        },
        kind::DROP => Record::Drop {
            vhost: c.string()?,
            queue: c.string()?,
        },
        _ => return None,
    };
    // Trailing bytes mean the layout is not what we wrote.
    (c.left() == 0).then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Publish {
                msg_id: 7,
                published_ms: 1_700_000_000_000,
                exchange: "events".into(),
                routing_key: "a.b".into(),
                properties: Bytes::from_static(b"\x10\x00\x02"),
                body: Bytes::from_static(b"hello"),
                holders: vec![Holder {
                    vhost: "/".into(),
                    queue: "q".into(),
                    delivered: true,
                }],
            },
            Record::Ack {
                vhost: "/".into(),
                queue: "q".into(),
                msg_ids: vec![1, 2, 3],
            },
            Record::Delivered {
                vhost: "/".into(),
                queue: "q".into(),
                msg_id: 9,
            },
            Record::Drop {
                vhost: "/".into(),
                queue: "q".into(),
            },
        ]
    }

    #[test]
    fn round_trips() {
        for r in samples() {
            let mut out = BytesMut::new();
            r.encode(&mut out);
            let len = out.len();
            assert_eq!(Record::decode_at(&out.freeze(), 0), Decoded::Record(r, len));
        }
    }

    #[test]
    fn every_cut_is_incomplete_and_every_flip_is_caught() {
        for r in samples() {
            let mut out = BytesMut::new();
            r.encode(&mut out);
            let whole = out.freeze();
            for cut in 0..whole.len() {
                assert!(matches!(
                    Record::decode_at(&whole.slice(..cut), 0),
                    Decoded::Incomplete | Decoded::Corrupt(_)
                ));
            }
            for at in 0..whole.len() {
                let mut bad = whole.to_vec();
                bad[at] ^= 0x40;
                assert!(
                    !matches!(Record::decode_at(&Bytes::from(bad), 0), Decoded::Record(ref x, _) if *x == r),
                    "flip at {at} went unnoticed"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Record::decode_at(&Bytes::from(data), 0);
        }
    }
}
