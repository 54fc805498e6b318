//! Segment files: their names in the log directory, and walking the records of one.

use super::record::{Decoded, Record};
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};

/// Where a record sits: segment number, byte offset, and length including its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.seg"))
}

/// The segment numbers present in `dir`, oldest first.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// What a walk through a segment found besides intact records.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Walk {
    /// Byte ranges `[from, to)` that held no valid record and were skipped, with the reason.
    pub skipped: Vec<(u64, u64, &'static str)>,
    /// The offset after the last intact record, when the file ends in bytes that are not
    /// one (a write cut short by a crash, or damage at the end): the file is cut back here.
    pub truncate_at: Option<u64>,
}

/// Calls `each` with every intact record of a segment in order. Damaged bytes are skipped up
/// to the next offset where an intact record starts (its checksum must match), so one bad
/// spot does not hide the records after it.
pub(crate) fn walk(data: &Bytes, mut each: impl FnMut(Record, u64, u32)) -> Walk {
    let mut result = Walk::default();
    let mut at = 0usize;
    while at < data.len() {
        match Record::decode_at(data, at) {
            Decoded::Record(record, used) => {
                each(record, at as u64, used as u32);
                at += used;
            }
            // A length pointing past the end is a torn tail only if no record follows.
            Decoded::Incomplete | Decoded::Corrupt(_) => match resync(data, at + 1) {
                Some(next) => {
                    result
                        .skipped
                        .push((at as u64, next as u64, damage(data, at)));
                    at = next;
                }
                None => {
                    if let Decoded::Corrupt(why) = Record::decode_at(data, at) {
                        result.skipped.push((at as u64, data.len() as u64, why));
                    }
                    result.truncate_at = Some(at as u64);
                    break;
                }
            },
        }
    }
    result
}

fn damage(data: &Bytes, at: usize) -> &'static str {
    match Record::decode_at(data, at) {
        Decoded::Corrupt(why) => why,
        _ => "record length runs past later records",
    }
}

/// The first offset at or after `from` where an intact record starts.
fn resync(data: &Bytes, from: usize) -> Option<usize> {
    (from..data.len()).find(|&at| matches!(Record::decode_at(data, at), Decoded::Record(..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::Holder;
    use bytes::BytesMut;

    fn publish(id: u64) -> Record {
        Record::Publish {
            msg_id: id,
            published_ms: 0,
            exchange: String::new(),
            routing_key: "q".into(),
            properties: Bytes::new(),
            body: Bytes::from(vec![b'x'; 100]),
            holders: vec![Holder {
                vhost: "/".into(),
                queue: "q".into(),
                delivered: false,
            }],
        }
    }

    fn segment(n: u64) -> Bytes {
        let mut out = BytesMut::new();
        for id in 0..n {
            publish(id).encode(&mut out);
        }
        out.freeze()
    }

    fn ids(data: &Bytes) -> (Vec<u64>, Walk) {
        let mut seen = Vec::new();
        let walk = walk(data, |r, _, _| {
            if let Record::Publish { msg_id, .. } = r {
                seen.push(msg_id)
            }
        });
        (seen, walk)
    }

    #[test]
    fn a_cut_at_any_offset_keeps_every_whole_record_before_it() {
        let data = segment(3);
        let one = data.len() / 3;
        for cut in 0..=data.len() {
            let (seen, walk) = ids(&data.slice(..cut));
            assert_eq!(seen.len(), cut / one, "cut at {cut}");
            let whole = (cut / one * one) as u64;
            if cut % one == 0 {
                assert_eq!(walk.truncate_at, None);
            } else {
                assert_eq!(walk.truncate_at, Some(whole), "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_flipped_byte_loses_only_its_own_record() {
        let data = segment(3);
        let one = data.len() / 3;
        for at in one..2 * one {
            let mut bad = data.to_vec();
            bad[at] ^= 0x01;
            let (seen, walk) = ids(&Bytes::from(bad));
            assert_eq!(seen, vec![0, 2], "flip at {at}");
            assert_eq!(walk.skipped.len(), 1);
            assert_eq!(walk.skipped[0].0, one as u64);
        }
    }
}
