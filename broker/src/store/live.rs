//! The log's index of live persistent messages: for each, where its newest copy is and which
//! queues still hold it (each with whether it delivered it).
//!
//! Message ids are handed out in order and mostly die in order, so the index is a run of
//! chunks of [`CHUNK`] consecutive ids, oldest first: a full chunk is an array of 16-byte
//! slots; a chunk in which few messages are left (a slow queue among fast ones, a dead-letter
//! queue filling slowly) keeps only those, in a sorted list. A message held by one queue,
//! nearly all of them, costs its slot and nothing else; one held by several keeps the
//! holders in a side map.

use super::replay::QueueId;
use super::segment::Location;
use crate::Map;
use std::collections::VecDeque;

/// Ids per chunk.
const CHUNK: u64 = 1024;
/// A full chunk turns into a list below this many live messages ...
const TO_SPARSE: usize = CHUNK as usize / 4;
/// ... and a list into a full chunk above this many.
const TO_DENSE: usize = CHUNK as usize / 2;

/// `holder` when the holders are in the side map.
const SHARED: u32 = u32::MAX;
/// `holder` of an empty slot.
const EMPTY: u32 = 0;
/// Queue ids at or above this are kept in the side map (they do not fit the encoding).
const MAX_INLINE_QUEUE: QueueId = (u32::MAX >> 1) - 1;

/// One message: its record's place, and its holder (`(queue + 1) << 1 | delivered`), or
/// [`SHARED`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    segment: u32,
    offset: u32,
    len: u32,
    holder: u32,
}

impl Slot {
    fn loc(&self) -> Location {
        Location {
            segment: self.segment as u64,
            offset: self.offset as u64,
            len: self.len,
        }
    }

    fn set_loc(&mut self, loc: Location) {
        // MessageLog keeps segment numbers and offsets below 2^32 (see `fits`).
        self.segment = loc.segment as u32;
        self.offset = loc.offset as u32;
        self.len = loc.len;
    }
}

fn encode(q: QueueId, delivered: bool) -> u32 {
    (q + 1) << 1 | delivered as u32
}

fn decode(holder: u32) -> (QueueId, bool) {
    ((holder >> 1) - 1, holder & 1 == 1)
}

/// Whether a location can be kept in a slot.
pub(crate) fn fits(loc: &Location) -> bool {
    loc.segment <= u32::MAX as u64 && loc.offset <= u32::MAX as u64
}

#[derive(Debug)]
enum Chunk {
    Empty,
    Dense {
        slots: Box<[Slot]>,
        live: usize,
    },
    /// (id - chunk start, slot), sorted.
    Sparse(Vec<(u16, Slot)>),
}

impl Chunk {
    fn live(&self) -> usize {
        match self {
            Chunk::Empty => 0,
            Chunk::Dense { live, .. } => *live,
            Chunk::Sparse(list) => list.len(),
        }
    }

    fn get_mut(&mut self, i: u16) -> Option<&mut Slot> {
        match self {
            Chunk::Empty => None,
            Chunk::Dense { slots, .. } => {
                Some(&mut slots[i as usize]).filter(|s| s.holder != EMPTY)
            }
            Chunk::Sparse(list) => match list.binary_search_by_key(&i, |e| e.0) {
                Ok(at) => Some(&mut list[at].1),
                Err(_) => None,
            },
        }
    }

    /// Puts `slot` at `i` (which must be empty).
    fn put(&mut self, i: u16, slot: Slot) {
        match self {
            Chunk::Empty => *self = Chunk::Sparse(vec![(i, slot)]),
            Chunk::Dense { slots, live } => {
                slots[i as usize] = slot;
                *live += 1;
            }
            Chunk::Sparse(list) => {
                let at = list.partition_point(|e| e.0 < i);
                list.insert(at, (i, slot));
                if list.len() > TO_DENSE {
                    let mut slots = vec![Slot::default(); CHUNK as usize].into_boxed_slice();
                    for (i, s) in list.iter() {
                        slots[*i as usize] = *s;
                    }
                    let live = list.len();
                    *self = Chunk::Dense { slots, live };
                }
            }
        }
    }

    fn remove(&mut self, i: u16) {
        match self {
            Chunk::Empty => {}
            Chunk::Dense { slots, live } => {
                if slots[i as usize].holder != EMPTY {
                    slots[i as usize] = Slot::default();
                    *live -= 1;
                }
                if *live < TO_SPARSE {
                    let list: Vec<(u16, Slot)> = (0..CHUNK as u16)
                        .map(|i| (i, slots[i as usize]))
                        .filter(|(_, s)| s.holder != EMPTY)
                        .collect();
                    *self = Chunk::Sparse(list);
                }
            }
            Chunk::Sparse(list) => {
                if let Ok(at) = list.binary_search_by_key(&i, |e| e.0) {
                    list.remove(at);
                }
                // A list that emptied keeps a little room: a queue kept short refills it.
                if list.capacity() > 64 && list.len() * 4 < list.capacity() {
                    list.shrink_to(list.len() * 2);
                }
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (u16, &Slot)> + '_> {
        match self {
            Chunk::Empty => Box::new(std::iter::empty()),
            Chunk::Dense { slots, .. } => Box::new(
                slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.holder != EMPTY)
                    .map(|(i, s)| (i as u16, s)),
            ),
            Chunk::Sparse(list) => Box::new(list.iter().map(|(i, s)| (*i, s))),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct LiveIndex {
    /// The chunk of id `CHUNK * first` and those after it.
    first: u64,
    chunks: VecDeque<Chunk>,
    /// Holders of messages held by several queues.
    shared: Map<u64, Vec<(QueueId, bool)>>,
    len: usize,
}

impl LiveIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn chunk_mut(&mut self, id: u64) -> Option<(&mut Chunk, u16)> {
        let no = id / CHUNK;
        let at = no.checked_sub(self.first)?;
        let chunk = self.chunks.get_mut(at as usize)?;
        Some((chunk, (id % CHUNK) as u16))
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        let (chunk, i) = self.chunk_mut(id)?;
        chunk.get_mut(i)
    }

    fn slot(&self, id: u64) -> Option<&Slot> {
        let at = (id / CHUNK).checked_sub(self.first)?;
        let i = (id % CHUNK) as u16;
        match self.chunks.get(at as usize)? {
            Chunk::Empty => None,
            Chunk::Dense { slots, .. } => Some(&slots[i as usize]).filter(|s| s.holder != EMPTY),
            Chunk::Sparse(list) => list
                .binary_search_by_key(&i, |e| e.0)
                .ok()
                .map(|at| &list[at].1),
        }
    }

    /// Records message `id` at `loc`, held by `holders` (at least one), replacing what was
    /// known of it. `loc` must [`fits`].
    pub(crate) fn insert(&mut self, id: u64, loc: Location, holders: &[(QueueId, bool)]) {
        self.remove(id);
        let holder = match holders {
            [] => return,
            [(q, delivered)] if *q <= MAX_INLINE_QUEUE => encode(*q, *delivered),
            _ => {
                self.shared.insert(id, holders.to_vec());
                SHARED
            }
        };
        let mut slot = Slot {
            holder,
            ..Slot::default()
        };
        slot.set_loc(loc);
        let no = id / CHUNK;
        if self.len == 0 && self.chunks.len() == 1 && self.first != no {
            self.chunks.clear();
        }
        if self.chunks.is_empty() {
            self.first = no;
        }
        while no < self.first {
            self.chunks.push_front(Chunk::Empty);
            self.first -= 1;
        }
        while no >= self.first + self.chunks.len() as u64 {
            // A new chunk at the end fills in order: it starts full-sized.
            let at_end = self.first + self.chunks.len() as u64 == no;
            self.chunks.push_back(match at_end {
                true => Chunk::Dense {
                    slots: vec![Slot::default(); CHUNK as usize].into_boxed_slice(),
                    live: 0,
                },
                false => Chunk::Empty,
            });
        }
        if let Some((chunk, i)) = self.chunk_mut(id) {
            chunk.put(i, slot);
            self.len += 1;
        }
    }

    fn remove(&mut self, id: u64) {
        let Some((chunk, i)) = self.chunk_mut(id) else {
            return;
        };
        let Some(holder) = chunk.get_mut(i).map(|s| s.holder) else {
            return;
        };
        chunk.remove(i);
        if holder == SHARED {
            self.shared.remove(&id);
        }
        self.len -= 1;
        self.trim();
    }

    /// Drops empty chunks from both ends but the last one (new ids arrive there).
    fn trim(&mut self) {
        while self.chunks.len() > 1 && self.chunks.front().is_some_and(|c| c.live() == 0) {
            self.chunks.pop_front();
            self.first += 1;
        }
        while self.chunks.len() > 1 && self.chunks.back().is_some_and(|c| c.live() == 0) {
            self.chunks.pop_back();
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.slot(id).is_some()
    }

    pub(crate) fn location(&self, id: u64) -> Option<Location> {
        self.slot(id).map(Slot::loc)
    }

    /// Moves a live message's record; the old location.
    pub(crate) fn relocate(&mut self, id: u64, loc: Location) -> Option<Location> {
        let slot = self.slot_mut(id)?;
        let old = slot.loc();
        slot.set_loc(loc);
        Some(old)
    }

    /// The queues holding message `id`, each with whether it delivered it.
    pub(crate) fn holders(&self, id: u64) -> Vec<(QueueId, bool)> {
        match self.slot(id) {
            None => Vec::new(),
            Some(s) if s.holder == SHARED => self.shared.get(&id).cloned().unwrap_or_default(),
            Some(s) => vec![decode(s.holder)],
        }
    }

    /// Queue `q` handed message `id` out.
    pub(crate) fn mark_delivered(&mut self, id: u64, q: QueueId) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        if slot.holder == SHARED {
            for h in self.shared.get_mut(&id).into_iter().flatten() {
                if h.0 == q {
                    h.1 = true;
                }
            }
        } else if decode(slot.holder).0 == q {
            slot.holder |= 1;
        }
    }

    /// Queue `q` no longer holds message `id`: the message's location if that was its last
    /// holder (it is gone from the index then).
    pub(crate) fn release(&mut self, id: u64, q: QueueId) -> Option<Location> {
        let slot = *self.slot_mut(id)?;
        if slot.holder == SHARED {
            let holders = self.shared.get_mut(&id)?;
            holders.retain(|h| h.0 != q);
            match holders.as_slice() {
                [] => {}
                [(q, delivered)] if *q <= MAX_INLINE_QUEUE => {
                    let one = encode(*q, *delivered);
                    self.shared.remove(&id);
                    self.slot_mut(id)?.holder = one;
                    return None;
                }
                _ => return None,
            }
        } else if decode(slot.holder).0 != q {
            return None;
        }
        self.remove(id);
        Some(slot.loc())
    }

    /// Every live message, in id order, with its location.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, Location)> + '_ {
        self.chunks.iter().enumerate().flat_map(move |(n, chunk)| {
            let start = (self.first + n as u64) * CHUNK;
            chunk.iter().map(move |(i, s)| (start + i as u64, s.loc()))
        })
    }

    /// The ids of the messages queue `q` holds.
    pub(crate) fn held_by(&self, q: QueueId) -> Vec<u64> {
        let mut ids = Vec::new();
        for (n, chunk) in self.chunks.iter().enumerate() {
            let start = (self.first + n as u64) * CHUNK;
            for (i, s) in chunk.iter() {
                let id = start + i as u64;
                let holds = match s.holder {
                    SHARED => self
                        .shared
                        .get(&id)
                        .is_some_and(|h| h.iter().any(|h| h.0 == q)),
                    one => decode(one).0 == q,
                };
                if holds {
                    ids.push(id);
                }
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl LiveIndex {
        fn shapes(&self) -> Vec<&'static str> {
            let shape = |c: &Chunk| match c {
                Chunk::Empty => "empty",
                Chunk::Dense { .. } => "dense",
                Chunk::Sparse(_) => "sparse",
            };
            self.chunks.iter().map(shape).collect()
        }
    }

    fn loc(offset: u64) -> Location {
        Location {
            segment: 3,
            offset,
            len: 10,
        }
    }

    #[test]
    fn messages_live_until_their_last_queue_releases_them() {
        let mut live = LiveIndex::default();
        live.insert(1, loc(0), &[(0, false), (1, false)]);
        live.insert(2, loc(10), &[(0, false)]);
        assert_eq!(live.len(), 2);
        live.mark_delivered(1, 1);
        assert_eq!(live.holders(1), [(0, false), (1, true)]);
        assert_eq!(live.release(1, 0), None);
        assert_eq!(live.holders(1), [(1, true)]);
        assert_eq!(live.held_by(1), [1]);
        assert_eq!(live.release(1, 1), Some(loc(0)));
        assert!(!live.contains(1));
        assert_eq!(live.release(2, 5), None, "a queue that does not hold it");
        live.mark_delivered(2, 0);
        assert_eq!(live.holders(2), [(0, true)]);
        assert_eq!(live.relocate(2, loc(99)), Some(loc(10)));
        assert_eq!(live.location(2), Some(loc(99)));
        assert_eq!(live.release(2, 0), Some(loc(99)));
        assert!(live.is_empty());
        assert!(live.shared.is_empty());
    }

    #[test]
    fn chunks_turn_sparse_and_dense_and_go_when_empty() {
        let mut live = LiveIndex::default();
        let n = 5 * CHUNK;
        for id in 0..n {
            live.insert(id, loc(id), &[((id % 2) as QueueId, false)]);
        }
        // Queue 0 is drained; queue 1's messages stay, half of each chunk.
        for id in (0..n).step_by(2) {
            assert_eq!(live.release(id, 0), Some(loc(id)));
        }
        assert_eq!(live.shapes(), ["dense"; 5]);
        // Three in four of the rest go: sparse lists now.
        for id in (1..n).step_by(2).filter(|id| id % 8 != 1) {
            live.release(id, 1);
        }
        assert_eq!(live.shapes(), ["sparse"; 5]);
        let left: Vec<u64> = live.iter().map(|(id, _)| id).collect();
        assert_eq!(left, (1..n).step_by(8).collect::<Vec<_>>());
        assert_eq!(live.held_by(1), left);
        assert_eq!(live.len(), left.len());
        // An old id written again (a copy forward in replay) fills a sparse chunk back up.
        for id in (0..CHUNK).filter(|id| id % 8 != 1) {
            live.insert(id, loc(id), &[(7, false)]);
        }
        assert_eq!(live.shapes()[0], "dense");
        for id in 0..n {
            live.release(id, 7);
            live.release(id, 1);
        }
        assert!(live.is_empty());
        assert_eq!(live.chunks.len(), 1);
        // The next id far ahead starts afresh instead of filling the gap.
        live.insert(100 * CHUNK, loc(0), &[(0, false)]);
        assert_eq!(live.shapes(), ["dense"]);
    }

    #[test]
    fn ids_below_the_first_chunk_are_taken() {
        let mut live = LiveIndex::default();
        live.insert(10 * CHUNK, loc(1), &[(0, false)]);
        live.insert(3, loc(2), &[(0, true)]);
        assert_eq!(live.location(3), Some(loc(2)));
        assert_eq!(live.held_by(0), [3, 10 * CHUNK]);
        live.release(10 * CHUNK, 0);
        assert_eq!(live.iter().collect::<Vec<_>>(), [(3, loc(2))]);
    }
}
