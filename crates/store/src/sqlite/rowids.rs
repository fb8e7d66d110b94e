//! A table's rowids by record id, as the writer looks them up.
//!
//! The ids a load found are held sorted in one vector, found through a
//! table of where each 16-bit prefix of the id starts; the ids added
//! since, in a sharded hash map. A load from the state snapshot gets its
//! ids already sorted, so this costs one pass over them: hashing 2.4M
//! ids into a map took ~1.7 s of one core of a cold start at 1M live
//! intents (each insert a cache miss), the longest step after the
//! snapshot's read. A sorted vector is also 24 bytes an id, against ~50
//! for a hash map's entry at its load factor.
//!
//! A removed id keeps its place in the vector, marked gone (an id created
//! again takes it back). A lookup reads the prefix table and searches
//! the ids of one prefix (random ids: a few dozen at 2.4M); ids chosen to
//! share a prefix only make that search a binary search of them all.

use super::RecordKey;
use crate::sharded::ShardedMap;
use uuid::Uuid;

/// A loaded id's rowid once the record is gone (rowids are positive).
const GONE: i64 = i64::MIN;

/// Prefix bits of the table of where each prefix's ids start.
const PREFIX_BITS: u32 = 16;

#[derive(Default)]
pub(super) struct RowidMap {
    /// The ids a load found, each once, sorted; [`GONE`] once removed.
    loaded: Vec<(Uuid, i64)>,
    /// Where the ids of each prefix start in `loaded`, and its length last
    /// (empty when nothing was loaded).
    starts: Vec<u32>,
    /// Every other id (and text ids, which are never in `loaded`).
    added: ShardedMap<RecordKey, i64>,
}

fn prefix(id: &Uuid) -> usize {
    (id.as_u128() >> (128 - PREFIX_BITS)) as usize
}

impl RowidMap {
    /// From the ids a load found with their rowids, in any order; why not,
    /// should an id be there twice or a rowid not be positive.
    pub(super) fn from_loaded(pairs: Vec<(RecordKey, i64)>) -> Result<Self, String> {
        let mut ids = Vec::with_capacity(pairs.len());
        let mut added = ShardedMap::default();
        for (key, rowid) in pairs {
            if rowid <= 0 {
                return Err(format!("record {key:?} at rowid {rowid}"));
            }
            match key {
                RecordKey::Uuid(u) => ids.push((u, rowid)),
                text => {
                    if added.insert(text.clone(), rowid).is_some() {
                        return Err(format!("record {text:?} is held twice"));
                    }
                }
            }
        }
        if !ids.is_sorted_by_key(|p| p.0) {
            ids.sort_unstable_by_key(|p| p.0);
        }
        Self::sorted(ids, added)
    }

    /// From ids as a snapshot holds them: sorted, or in a few sorted runs
    /// (merged: a stable sort finds the runs); why not, should an id be
    /// there twice or a rowid not be positive.
    pub(super) fn from_ids(mut ids: Vec<(Uuid, i64)>) -> Result<Self, String> {
        if let Some((id, rowid)) = ids.iter().find(|p| p.1 <= 0) {
            return Err(format!("record {id} at rowid {rowid}"));
        }
        if !ids.is_sorted_by_key(|p| p.0) {
            ids.sort_by_key(|p| p.0);
        }
        Self::sorted(ids, ShardedMap::default())
    }

    fn sorted(loaded: Vec<(Uuid, i64)>, added: ShardedMap<RecordKey, i64>) -> Result<Self, String> {
        if let Some(w) = loaded.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!("record {} is held twice", w[1].0));
        }
        if u32::try_from(loaded.len()).is_err() {
            return Err(format!("{} records in one table", loaded.len()));
        }
        let mut starts = Vec::new();
        if !loaded.is_empty() {
            starts.reserve_exact((1 << PREFIX_BITS) + 1);
            let mut at = 0usize;
            for p in 0..(1usize << PREFIX_BITS) {
                while at < loaded.len() && prefix(&loaded[at].0) < p {
                    at += 1;
                }
                starts.push(at as u32);
            }
            starts.push(loaded.len() as u32);
        }
        Ok(RowidMap {
            loaded,
            starts,
            added,
        })
    }

    /// The place of `id` in `loaded`, if a load found it.
    fn place(&self, id: &Uuid) -> Option<usize> {
        if self.starts.is_empty() {
            return None;
        }
        let p = prefix(id);
        let (from, to) = (self.starts[p] as usize, self.starts[p + 1] as usize);
        self.loaded[from..to]
            .binary_search_by_key(id, |e| e.0)
            .ok()
            .map(|i| from + i)
    }

    pub(super) fn get(&self, key: &RecordKey) -> Option<i64> {
        if let RecordKey::Uuid(u) = key
            && let Some(i) = self.place(u)
        {
            let rowid = self.loaded[i].1;
            return (rowid != GONE).then_some(rowid);
        }
        self.added.get(key).copied()
    }

    /// Notes `key` at `rowid`; what it was at before.
    pub(super) fn insert(&mut self, key: RecordKey, rowid: i64) -> Option<i64> {
        if let RecordKey::Uuid(u) = &key
            && let Some(i) = self.place(u)
        {
            let before = std::mem::replace(&mut self.loaded[i].1, rowid);
            return (before != GONE).then_some(before);
        }
        self.added.insert(key, rowid)
    }

    /// Forgets `key`; the rowid it was at.
    pub(super) fn remove(&mut self, key: &RecordKey) -> Option<i64> {
        if let RecordKey::Uuid(u) = key
            && let Some(i) = self.place(u)
        {
            let before = std::mem::replace(&mut self.loaded[i].1, GONE);
            return (before != GONE).then_some(before);
        }
        self.added.remove(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    /// xorshift64*: deterministic ids.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn key(u: u128) -> RecordKey {
        RecordKey::Uuid(Uuid::from_u128(u))
    }

    /// Loaded ids, random or all under one prefix, then inserts, removals
    /// and re-inserts of loaded and new ids and of text ids: every answer
    /// as a plain hash map's.
    #[test]
    fn answers_as_a_hash_map_does() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for clustered in [false, true] {
            let mut ids: Vec<u128> = (0..20_000)
                .map(|_| {
                    let r = ((next(&mut s) as u128) << 64) | next(&mut s) as u128;
                    if clustered { r >> 20 } else { r }
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let mut plain: HashMap<RecordKey, i64> = HashMap::new();
            let mut pairs = Vec::new();
            for (i, u) in ids.iter().enumerate() {
                pairs.push((key(*u), i as i64 + 1));
                plain.insert(key(*u), i as i64 + 1);
            }
            pairs.push((RecordKey::Text("uss-a".into()), 90_000));
            plain.insert(RecordKey::Text("uss-a".into()), 90_000);
            // Out of order, as rows come by rowid.
            pairs.reverse();
            let mut m = RowidMap::from_loaded(pairs).unwrap();
            let mut rowid = 100_000i64;
            for round in 0..40_000u64 {
                let r = next(&mut s);
                let k = match r % 4 {
                    0 | 1 => key(ids[(r >> 8) as usize % ids.len()]),
                    2 => key((r as u128) << 40),
                    _ => RecordKey::Text(format!("uss-{}", r % 7).into()),
                };
                match (r >> 3) % 3 {
                    0 => {
                        rowid += 1;
                        assert_eq!(m.insert(k.clone(), rowid), plain.insert(k, rowid));
                    }
                    1 => assert_eq!(m.remove(&k), plain.remove(&k), "round {round}"),
                    _ => assert_eq!(m.get(&k), plain.get(&k).copied()),
                }
            }
            for (k, v) in &plain {
                assert_eq!(m.get(k), Some(*v));
            }
            for u in &ids {
                assert_eq!(m.get(&key(*u)), plain.get(&key(*u)).copied());
            }
            assert_eq!(m.get(&key(u128::MAX)), None);
        }
    }

    fn refused(r: Result<RowidMap, String>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(why) => why,
        }
    }

    #[test]
    fn an_id_held_twice_or_a_rowid_not_positive_is_refused() {
        let twice = vec![(key(7), 1), (key(3), 2), (key(7), 3)];
        assert!(refused(RowidMap::from_loaded(twice)).contains("twice"));
        let text = vec![
            (RecordKey::Text("a".into()), 1),
            (RecordKey::Text("a".into()), 2),
        ];
        assert!(refused(RowidMap::from_loaded(text)).contains("twice"));
        assert!(
            RowidMap::from_ids(vec![(Uuid::from_u128(1), 1), (Uuid::from_u128(1), 2)]).is_err()
        );
        assert!(RowidMap::from_ids(vec![(Uuid::from_u128(1), GONE)]).is_err());
        // Two sorted runs, as changes laid over a snapshot leave them.
        let runs = vec![
            (Uuid::from_u128(2), 1),
            (Uuid::from_u128(5), 2),
            (Uuid::from_u128(1), 3),
            (Uuid::from_u128(9), 4),
        ];
        let m = RowidMap::from_ids(runs).unwrap();
        assert_eq!(m.get(&key(1)), Some(3));
        assert_eq!(m.get(&key(9)), Some(4));
        let twice = vec![(Uuid::from_u128(2), 1), (Uuid::from_u128(2), 2)];
        assert!(refused(RowidMap::from_ids(twice)).contains("twice"));
        assert!(RowidMap::from_loaded(vec![(key(1), 0)]).is_err());
    }

    #[test]
    fn an_empty_load_takes_every_id_into_the_added_map() {
        let mut m = RowidMap::from_ids(Vec::new()).unwrap();
        assert_eq!(m.get(&key(5)), None);
        assert_eq!(m.insert(key(5), 9), None);
        assert_eq!(m.get(&key(5)), Some(9));
        assert_eq!(m.remove(&key(5)), Some(9));
        assert_eq!(m.get(&key(5)), None);
        let mut d = RowidMap::default();
        assert_eq!(d.insert(key(6), 1), None);
        assert_eq!(d.get(&key(6)), Some(1));
    }
}
