//! The page cache of a query node (`--cache-max-bytes`): fixed-size blocks of objects
//! read from the bucket, kept as files under the data directory's `cache/` and evicted
//! least recently used first once they pass the bound; the blocks used last are also held
//! in memory, so the many small reads of one column chunk (page headers, then pages) cost
//! a slice each.
//!
//! The cache starts empty at each start: a block written just before a crash may be torn,
//! and a cache is not worth an fsync per block.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

/// The size of a cached block: the unit of range reads from the bucket. Small enough that
/// a warm read of one page copies little from disk, large enough that a cold column
/// chunk is a few requests (reads ahead coalesce neighbouring blocks into one).
pub const BLOCK: u64 = 256 << 10;

/// Bytes of blocks held in memory at most, besides the disk cache.
pub const MEMORY_BYTES: usize = 64 << 20;

/// A block: the object (a hash of its key and version) and the block's index in it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BlockId {
    pub object: u64,
    pub index: u64,
}

impl BlockId {
    fn file_name(&self) -> String {
        format!("{:016x}-{}", self.object, self.index)
    }
}

/// Blocks on disk and in memory.
pub struct PageCache {
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Counts uses, so the least recently used block has the smallest tick.
    tick: u64,
    disk: HashMap<BlockId, (u64, u64)>,
    disk_bytes: u64,
    memory: HashMap<BlockId, (Bytes, u64)>,
    memory_bytes: usize,
}

impl PageCache {
    /// An empty cache in `dir` (whatever it held is removed) holding at most `max_bytes`
    /// on disk; 0 keeps nothing on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<PageCache> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if max_bytes > 0 {
            std::fs::create_dir_all(dir)?;
        }
        Ok(PageCache {
            dir: dir.to_path_buf(),
            max_bytes,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes the cache holds on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.lock().disk_bytes
    }

    /// Whether the block is held, in memory or on disk.
    pub fn contains(&self, id: BlockId) -> bool {
        let inner = self.lock();
        inner.memory.contains_key(&id) || inner.disk.contains_key(&id)
    }

    /// The block, from memory or disk.
    pub fn get(&self, id: BlockId) -> Option<Bytes> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let on_disk = match inner.disk.get_mut(&id) {
            Some((_, used)) => {
                *used = tick;
                true
            }
            None => false,
        };
        if let Some((bytes, used)) = inner.memory.get_mut(&id) {
            *used = tick;
            return Some(bytes.clone());
        }
        if !on_disk {
            return None;
        }
        drop(inner);
        match std::fs::read(self.dir.join(id.file_name())) {
            Ok(data) => {
                let bytes = Bytes::from(data);
                self.lock().remember(id, bytes.clone());
                Some(bytes)
            }
            Err(_) => {
                let mut inner = self.lock();
                if let Some((len, _)) = inner.disk.remove(&id) {
                    inner.disk_bytes -= len;
                }
                None
            }
        }
    }

    /// Keeps a block just read from the bucket.
    pub fn put(&self, id: BlockId, bytes: Bytes) {
        let len = bytes.len() as u64;
        if self.max_bytes > 0 && len <= self.max_bytes {
            let path = self.dir.join(id.file_name());
            let tmp = self.dir.join(format!(".{}", id.file_name()));
            let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
            if written.is_ok() {
                let gone = {
                    let mut inner = self.lock();
                    inner.tick += 1;
                    let tick = inner.tick;
                    if let Some((old, _)) = inner.disk.insert(id, (len, tick)) {
                        inner.disk_bytes -= old;
                    }
                    inner.disk_bytes += len;
                    inner.evict_disk(self.max_bytes)
                };
                for id in gone {
                    let _ = std::fs::remove_file(self.dir.join(id.file_name()));
                }
            } else {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        self.lock().remember(id, bytes);
    }
}

impl Inner {
    /// Holds `bytes` in memory, forgetting the least recently used blocks past the bound.
    fn remember(&mut self, id: BlockId, bytes: Bytes) {
        self.tick += 1;
        let len = bytes.len();
        if let Some((old, _)) = self.memory.insert(id, (bytes, self.tick)) {
            self.memory_bytes -= old.len();
        }
        self.memory_bytes += len;
        if self.memory_bytes > MEMORY_BYTES {
            let mut by_use: Vec<(u64, BlockId)> =
                self.memory.iter().map(|(id, (_, t))| (*t, *id)).collect();
            by_use.sort_unstable_by_key(|(t, _)| *t);
            for (_, id) in by_use {
                if self.memory_bytes <= MEMORY_BYTES * 3 / 4 {
                    break;
                }
                if let Some((b, _)) = self.memory.remove(&id) {
                    self.memory_bytes -= b.len();
                }
            }
        }
    }

    /// Forgets the least recently used blocks on disk until at most nine tenths of
    /// `max_bytes` are held (so eviction is not paid on every block); the blocks to
    /// delete.
    fn evict_disk(&mut self, max_bytes: u64) -> Vec<BlockId> {
        if self.disk_bytes <= max_bytes {
            return Vec::new();
        }
        let mut by_use: Vec<(u64, BlockId)> =
            self.disk.iter().map(|(id, (_, t))| (*t, *id)).collect();
        by_use.sort_unstable_by_key(|(t, _)| *t);
        let mut gone = Vec::new();
        for (_, id) in by_use {
            if self.disk_bytes <= max_bytes / 10 * 9 {
                break;
            }
            if let Some((len, _)) = self.disk.remove(&id) {
                self.disk_bytes -= len;
                gone.push(id);
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn block(object: u64, index: u64) -> BlockId {
        BlockId { object, index }
    }

    #[test]
    fn blocks_come_back_from_disk_and_the_least_recently_used_leave_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PageCache::open(&dir.path().join("cache"), 3000).unwrap();
        for i in 0..3 {
            cache.put(block(1, i), Bytes::from(vec![i as u8; 1000]));
        }
        assert_eq!(cache.disk_bytes(), 3000);
        // Block 0 is used again, so block 1 is the least recently used when 3 arrives.
        assert_eq!(cache.get(block(1, 0)).unwrap()[0], 0);
        cache.put(block(1, 3), Bytes::from(vec![3u8; 1000]));
        assert!(cache.disk_bytes() <= 2700, "{}", cache.disk_bytes());
        let on_disk = |i: u64| {
            dir.path()
                .join("cache")
                .join(block(1, i).file_name())
                .exists()
        };
        assert!(!on_disk(1), "the least recently used block stays");
        assert!(on_disk(0) && on_disk(3));
        // Memory still holds block 1; once forgotten there, it is gone for good.
        cache.lock().memory.clear();
        assert!(cache.get(block(1, 1)).is_none());
        assert_eq!(&cache.get(block(1, 3)).unwrap()[..], &[3u8; 1000][..]);
    }

    #[test]
    fn a_restart_starts_empty_and_zero_keeps_nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        PageCache::open(&path, 1 << 20)
            .unwrap()
            .put(block(7, 0), Bytes::from_static(b"abc"));
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 1);
        let again = PageCache::open(&path, 1 << 20).unwrap();
        assert!(again.get(block(7, 0)).is_none());
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0);
        let none = PageCache::open(&path, 0).unwrap();
        none.put(block(7, 0), Bytes::from_static(b"abc"));
        assert!(!path.exists());
        assert_eq!(none.disk_bytes(), 0);
        assert_eq!(
            &none.get(block(7, 0)).unwrap()[..],
            b"abc",
            "memory still holds it"
        );
    }
}
