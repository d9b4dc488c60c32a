//! Trimming a cache back to `cache_limit`, oldest first, in memory that does not grow with the cache.
//!
//! **Counting.** Every file, link and directory counts its disk use (`st_blocks`, as `du` counts: a
//! sparse file cannot hide its blocks) rounded up to whole 4 KiB blocks, and **at least one block**, as
//! `checkout_limit` counts: a million empty files are 3.8 GiB, not nothing. A name counts each time it
//! is seen (hard links too), the cache's own directory once.
//!
//! **Oldest first without a list of the files.** Sorting every file by its modification time needs
//! every file (with its path) in memory — 1.3 GB for 200,000 files 60 levels deep. Instead:
//! 1. A first walk ([`walk`](crate::isolation::walk)) totals the cache and files every entry's bytes in
//!    a [`Histogram`] of modification times: at most [`BUCKETS`] buckets, whose width doubles (merging
//!    neighbours) whenever one more would be needed. If the cache fits, that is all (one walk).
//! 2. Otherwise the excess (total − limit) is counted off the histogram, oldest bucket first: every
//!    bucket before the one where it is reached is removed whole, so everything older than that
//!    bucket's start (the cut-off) goes.
//! 3. When that boundary bucket is at most [`RESOLUTION`] (about a second) wide, the next walk removes
//!    everything older than the cut-off and, from the boundary bucket, entries in the order met until
//!    the excess is gone: within a second, "oldest" is walk order. When it is wider, the next walk
//!    removes everything older than the cut-off and makes a finer histogram of the boundary bucket
//!    alone — each walk narrows the uncertain range by up to [`BUCKETS`] (14 bits), so mtimes spread
//!    over years need at most four or five walks and a usual cache two or three.
//! 4. A directory goes when the trim emptied it, or when it is older than the cut-off and empty. An
//!    older directory that is not empty stays: when such leftovers leave the cache above the limit,
//!    a further walk files what is left from the cut-off on and goes on from there (at most
//!    [`MAX_WALKS`] walks in all).
//!
//! Memory: the histogram (≤ [`BUCKETS`] entries, under a MiB), one listing buffer (32 KiB), and per
//! level of depth the walk's 16 bytes and one byte here. Time: each walk is linear in the entries.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::isolation::walk::{self, Seen, WalkError};

/// The unit of counting: every entry takes at least one.
pub const BLOCK: u64 = 4096;

/// How many buckets the histogram of modification times keeps at most (few in unit tests, so that
/// they go through the merging and the finer walks with a few hundred files).
pub const BUCKETS: usize = if cfg!(test) { 16 } else { 16 * 1024 };

/// The width (in nanoseconds, 2³⁰ ≈ 1.07 s) under which entries of the boundary bucket are removed in
/// walk order rather than told apart by a further walk.
pub const RESOLUTION: i128 = 1 << 30;

/// How many walks one trim takes at most (the first included).
const MAX_WALKS: u32 = 8;

/// The lowest modification time there is, in nanoseconds.
const LOWEST: i128 = (i64::MIN as i128) * 1_000_000_000;
const HIGHEST: i128 = (i64::MAX as i128 + 1) * 1_000_000_000;

/// What an entry counts against `cache_limit`.
pub fn counted(stat: &FileStat) -> u64 {
    let used = u64::try_from(stat.st_blocks)
        .unwrap_or(0)
        .saturating_mul(512);
    used.div_ceil(BLOCK).max(1).saturating_mul(BLOCK)
}

/// An entry's modification time in nanoseconds.
fn key(stat: &FileStat) -> i128 {
    i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec)
}

/// Bytes by modification time over `[lo, hi)`, in buckets of `2^shift` nanoseconds from `lo`.
#[derive(Debug)]
pub struct Histogram {
    lo: i128,
    hi: i128,
    shift: u32,
    buckets: BTreeMap<i128, u64>,
}

impl Histogram {
    pub fn new(lo: i128, hi: i128) -> Histogram {
        Histogram {
            lo,
            hi,
            shift: 0,
            buckets: BTreeMap::new(),
        }
    }

    fn covers(&self, key: i128) -> bool {
        self.lo <= key && key < self.hi
    }

    pub fn add(&mut self, key: i128, bytes: u64) {
        let at = (key - self.lo) >> self.shift;
        let sum = self.buckets.entry(at).or_insert(0);
        *sum = sum.saturating_add(bytes);
        while self.buckets.len() > BUCKETS {
            self.shift += 1;
            let mut merged = BTreeMap::new();
            for (at, bytes) in std::mem::take(&mut self.buckets) {
                let sum: &mut u64 = merged.entry(at >> 1).or_insert(0);
                *sum = sum.saturating_add(bytes);
            }
            self.buckets = merged;
        }
    }

    /// The bucket, oldest first, in which the running total reaches `need`: its start and end (keys)
    /// and the bytes of the buckets before it. `None` if all of them hold less.
    pub fn boundary(&self, need: u64) -> Option<(i128, i128, u64)> {
        let mut before = 0u64;
        for (at, bytes) in &self.buckets {
            if before.saturating_add(*bytes) >= need {
                let start = self.lo + (at << self.shift);
                return Some((start, (start + (1i128 << self.shift)).min(self.hi), before));
            }
            before = before.saturating_add(*bytes);
        }
        None
    }
}

/// One walk: what it removes, what it files in its histogram, what it found.
struct Sweep {
    /// Entries older than this go.
    below: i128,
    /// Entries in this range go, in walk order, while `budget` bytes remain to be freed.
    tie: Option<(i128, i128)>,
    budget: u64,
    /// Kept entries in its range are filed here.
    histogram: Option<Histogram>,
    /// Bytes of the kept entries (the top not included), entries kept, entries removed.
    kept: u64,
    entries: u64,
    removed: usize,
    /// Per level of depth (the top is 0): [`OLD`], [`TIE`], [`EMPTIED`].
    levels: Vec<u8>,
}

const OLD: u8 = 1;
const TIE: u8 = 2;
const EMPTIED: u8 = 4;

impl Sweep {
    fn new(
        below: i128,
        tie: Option<(i128, i128)>,
        budget: u64,
        histogram: Option<Histogram>,
    ) -> Sweep {
        Sweep {
            below,
            tie,
            budget,
            histogram,
            kept: 0,
            entries: 0,
            removed: 0,
            levels: vec![0],
        }
    }

    /// Whether an entry with this key goes: [`OLD`], [`TIE`] or 0.
    fn verdict(&self, key: i128) -> u8 {
        if key < self.below {
            OLD
        } else if self.budget > 0 && self.tie.is_some_and(|(lo, hi)| lo <= key && key < hi) {
            TIE
        } else {
            0
        }
    }

    fn keep(&mut self, key: i128, bytes: u64) {
        self.kept = self.kept.saturating_add(bytes);
        self.entries += 1;
        if let Some(histogram) = self.histogram.as_mut().filter(|h| h.covers(key)) {
            histogram.add(key, bytes);
        }
    }

    fn removed(&mut self, verdict: u8, bytes: u64, depth: usize) {
        self.removed += 1;
        if verdict == TIE {
            self.budget = self.budget.saturating_sub(bytes);
        }
        if let Some(level) = self.levels.get_mut(depth) {
            *level |= EMPTIED;
        }
    }

    fn see(&mut self, seen: Seen<'_>) {
        match seen {
            Seen::Entry {
                dir,
                name,
                stat,
                depth,
            } => {
                let (key, bytes) = (key(stat), counted(stat));
                let verdict = self.verdict(key);
                if verdict != 0 && unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).is_ok() {
                    self.removed(verdict, bytes, depth);
                } else {
                    self.keep(key, bytes);
                }
            }
            Seen::Dir { stat, .. } => {
                // Counted now, as kept; taken back if it goes on the way out.
                let key = key(stat);
                let verdict = self.verdict(key);
                self.keep(key, counted(stat));
                self.levels.push(verdict);
            }
            Seen::Left { dir, name, depth } => {
                let flags = self.levels.pop().unwrap_or(0);
                let tie = flags & TIE != 0 && self.budget > 0;
                if flags & (OLD | EMPTIED) == 0 && !tie {
                    return;
                }
                // An empty directory only: a non-empty one refuses (ENOTEMPTY).
                let Ok(stat) = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
                    return;
                };
                if unlinkat(dir, name, UnlinkatFlags::RemoveDir).is_ok() {
                    let bytes = counted(&stat);
                    self.kept = self.kept.saturating_sub(bytes);
                    self.entries = self.entries.saturating_sub(1);
                    self.removed(if tie { TIE } else { OLD }, bytes, depth);
                }
            }
        }
    }
}

/// What trimming did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// What the cache counted before and after, in bytes.
    pub before: u64,
    pub after: u64,
    /// Entries (files, links, directories) left, and how many were removed.
    pub entries: u64,
    pub removed: usize,
    /// How many times the cache was walked.
    pub walks: u32,
}

/// Removes the oldest entries (by modification time) below `top` until it counts at most `limit`.
pub fn trim(top: &OwnedFd, limit: u64) -> Result<Trimmed, WalkError> {
    let top_bytes = counted(&fstat(top)?);
    let mut sweep = Sweep::new(LOWEST, None, 0, Some(Histogram::new(LOWEST, HIGHEST)));
    walk::walk(top, |seen| sweep.see(seen))?;
    let before = sweep.kept.saturating_add(top_bytes);
    let mut trimmed = Trimmed {
        before,
        after: before,
        entries: sweep.entries,
        removed: 0,
        walks: 1,
    };
    while trimmed.after > limit && trimmed.walks < MAX_WALKS {
        let need = trimmed.after - limit;
        let last = sweep;
        let Some(histogram) = last.histogram else {
            break;
        };
        sweep = match histogram.boundary(need) {
            // Fine enough: what is older goes, then the boundary bucket in walk order. What is kept
            // is filed again, should that fall short (an older directory that was not empty).
            Some((start, end, older)) if end - start <= RESOLUTION => Sweep::new(
                start,
                Some((start, end)),
                need.saturating_sub(older),
                Some(Histogram::new(start, HIGHEST)),
            ),
            // What is older goes; the boundary bucket is filed finer.
            Some((start, end, _)) => Sweep::new(start, None, 0, Some(Histogram::new(start, end))),
            // What this walk filed cannot make up the excess (older entries that could not go):
            // file everything from the same cut-off again.
            None if histogram.hi < HIGHEST => Sweep::new(
                histogram.lo,
                None,
                0,
                Some(Histogram::new(histogram.lo, HIGHEST)),
            ),
            // Not even everything filed makes it up: nothing more can go.
            None => break,
        };
        walk::walk(top, |seen| sweep.see(seen))?;
        trimmed.walks += 1;
        trimmed.removed += sweep.removed;
        trimmed.entries = sweep.entries;
        trimmed.after = sweep.kept.saturating_add(top_bytes);
        if sweep.removed == 0 && sweep.tie.is_some() {
            break;
        }
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_stays_bounded_and_finds_the_boundary() {
        let mut h = Histogram::new(0, HIGHEST);
        for i in 0..(3 * BUCKETS as i128) {
            h.add(i * 1000, 10);
        }
        assert!(h.buckets.len() <= BUCKETS, "{}", h.buckets.len());
        let (start, end, before) = h.boundary(25).unwrap();
        assert_eq!(start, 0);
        assert!(end > 2000, "three entries share a bucket now: {end}");
        assert_eq!(before, 0);
        let total: u64 = h.buckets.values().sum();
        assert_eq!(total, 10 * 3 * BUCKETS as u64);
        assert_eq!(h.boundary(total + 1), None);
        let (start, _, before) = h.boundary(total).unwrap();
        assert!(start > 0 && before < total);
    }

    #[test]
    fn every_entry_counts_a_block() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("empty"), "").unwrap();
        let stat = nix::sys::stat::stat(&tmp.path().join("empty")).unwrap();
        assert_eq!(counted(&stat), BLOCK);
    }
}
