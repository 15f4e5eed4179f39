//! Reading the bucket's Parquet files in place (a query node, `--read-only`): instead of
//! downloading a file, the node writes a small placeholder under the file's name (a
//! [`Marker`]: its key, size and version), so listing, retention and the query cache see
//! the file as they would on local disk. Opening it ([`Source::open`], which every read of
//! the store goes through) gives a reader that fetches only the byte ranges Parquet asks
//! for (the footer, the page index, the pages of the wanted row groups and columns) in
//! [`BLOCK`]-sized blocks, kept in the [`PageCache`].
//!
//! A placeholder names the data directory's [`Remote`], found by path in a registry the
//! query node fills once at start: the store's readers are plain functions of a path, and
//! a placeholder read by a process without the bucket is an error naming the file.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use object_store::path::Path as Key;
use object_store::ObjectStore;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use super::cache::{BlockId, PageCache, BLOCK};
use crate::metrics::Metrics;

/// How much of a file's end [`Source::prefetch_footer`] reads at once (a quarter of a
/// smaller file): the footer, metadata and page index of a day of 10,000 series at 15 s
/// take 2.4 MiB.
const TAIL: u64 = 4 << 20;

/// Files up to this size are read whole when their footer is.
const SMALL: u64 = 2 << 20;

/// The first line of a placeholder; a Parquet file starts with `PAR1`.
const MAGIC: &str = "telltale remote object\n";

/// What a placeholder says: the object's key (relative to the bucket's prefix), size and
/// version (entity tag or modification time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The key, relative to the bucket's prefix (the file's path under the data directory).
    pub rel: String,
    /// The object's length in bytes.
    pub size: u64,
    /// Its entity tag (or modification time): a new version is a new object to the cache.
    pub version: String,
}

impl Marker {
    /// The placeholder at `path`, if that file is one.
    pub fn read(path: &Path) -> Option<Marker> {
        let mut head = [0u8; MAGIC.len()];
        let mut f = std::fs::File::open(path).ok()?;
        f.read_exact(&mut head).ok()?;
        if head != MAGIC.as_bytes() {
            return None;
        }
        let mut rest = String::new();
        f.take(64 << 10).read_to_string(&mut rest).ok()?;
        Marker::parse(&rest)
    }

    fn parse(text: &str) -> Option<Marker> {
        let mut lines = text.lines();
        let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ');
        Some(Marker {
            rel: field("key")?.to_owned(),
            size: field("size")?.parse().ok()?,
            version: field("version")?.to_owned(),
        })
    }

    /// The placeholder's text, as [`Marker::read`] parses it.
    pub fn encode(&self) -> String {
        format!(
            "{MAGIC}key {}\nsize {}\nversion {}\n",
            self.rel,
            self.size,
            self.version.replace('\n', " ")
        )
    }

    /// The block cache's name for this version of the object (FNV-1a of key and version).
    fn object_id(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.rel.bytes().chain([0]).chain(self.version.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

/// The length of the file at `path` as the store sees it: a placeholder's object size, or
/// the file's own length.
pub fn stored_len(path: &Path) -> Option<u64> {
    match Marker::read(path) {
        Some(m) => Some(m.size),
        None => std::fs::metadata(path).ok().map(|m| m.len()),
    }
}

/// A data directory whose placeholders are read from a bucket.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    data_dir: PathBuf,
    cache: PageCache,
    /// The runtime the object store client runs on; reads come from blocking threads.
    runtime: tokio::runtime::Handle,
    metrics: Metrics,
}

static REMOTES: RwLock<Vec<Arc<Remote>>> = RwLock::new(Vec::new());

impl Remote {
    /// Reads placeholders under `data_dir` from `store` (keys under `prefix`), through a
    /// page cache of `cache_max_bytes` in `cache_dir`, and registers itself for
    /// [`Source::open`]. Must be called inside the runtime the client is to run on.
    pub(super) fn install(
        store: Arc<dyn ObjectStore>,
        prefix: Key,
        data_dir: &Path,
        cache_dir: &Path,
        cache_max_bytes: u64,
        metrics: Metrics,
    ) -> std::io::Result<Arc<Remote>> {
        let remote = Arc::new(Remote {
            store,
            prefix,
            data_dir: data_dir.to_path_buf(),
            cache: PageCache::open(cache_dir, cache_max_bytes)?,
            runtime: tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?,
            metrics,
        });
        let mut all = REMOTES.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|r| r.data_dir != remote.data_dir);
        all.push(remote.clone());
        Ok(remote)
    }

    /// The remote of the data directory holding `path`.
    fn of(path: &Path) -> Option<Arc<Remote>> {
        let all = REMOTES.read().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .filter(|r| path.starts_with(&r.data_dir))
            .max_by_key(|r| r.data_dir.as_os_str().len())
            .cloned()
    }

    /// Reads `ranges` of the object at `key` (concurrently, nearby ones in one request),
    /// waiting on this thread.
    fn fetch(&self, key: &Key, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, object_store::Error> {
        let began = std::time::Instant::now();
        self.metrics.object_store_reads.inc_by(ranges.len() as u64);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (store, object, wanted) = (self.store.clone(), key.clone(), ranges.to_vec());
        self.runtime.spawn(async move {
            let _ = tx.send(store.get_ranges(&object, &wanted).await);
        });
        let parts = rx.recv().unwrap_or_else(|_| {
            Err(object_store::Error::Generic {
                store: "telltale",
                source: "the runtime stopped during a read".into(),
            })
        })?;
        for (range, bytes) in ranges.iter().zip(&parts) {
            if bytes.len() as u64 != range.end - range.start {
                return Err(object_store::Error::Generic {
                    store: "telltale",
                    source: format!(
                        "asked for bytes {range:?}, got {}: the object changed or was cut short",
                        bytes.len()
                    )
                    .into(),
                });
            }
            self.metrics
                .object_store_read_bytes
                .inc_by(bytes.len() as u64);
        }
        tracing::debug!(%key, ?ranges, ms = began.elapsed().as_millis() as u64, "read from the object store");
        Ok(parts)
    }
}

/// A file of the store, opened for reading: on local disk, or an object read in place.
pub enum Source {
    /// A file on local disk.
    Local(std::fs::File),
    /// A placeholder's object.
    Remote(RemoteFile),
}

impl Source {
    /// Opens the file at `path`; a placeholder gives its object.
    pub fn open(path: &Path) -> std::io::Result<Source> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(path)?;
        // A Parquet file costs one small read here; only a placeholder is parsed.
        let mut head = [0u8; MAGIC.len()];
        let placeholder = file.read_exact_at(&mut head, 0).is_ok() && head == MAGIC.as_bytes();
        let Some(marker) = placeholder.then(|| Marker::read(path)).flatten() else {
            return Ok(Source::Local(file));
        };
        let remote = Remote::of(path).ok_or_else(|| {
            std::io::Error::other(format!(
                "{} stands for {} in an object store, and this process reads none",
                path.display(),
                marker.rel
            ))
        })?;
        let key = marker
            .rel
            .split('/')
            .fold(remote.prefix.clone(), |k, part| k.join(part));
        Ok(Source::Remote(RemoteFile(Arc::new(Object {
            id: marker.object_id(),
            remote,
            key,
            marker,
        }))))
    }

    /// Whether the file is read in place from the object store.
    pub fn is_remote(&self) -> bool {
        matches!(self, Source::Remote(_))
    }

    /// Fetches ahead, in one round of concurrent requests, the blocks of `ranges` the
    /// page cache lacks (nothing on local disk): what a reader is about to ask for page by
    /// page. At most half the page cache's memory is fetched ahead, so what is fetched
    /// first is still there when read; a failure is left to the reads to report.
    pub fn prefetch(&self, ranges: &[Range<u64>]) {
        if let Source::Remote(r) = self {
            r.prefetch(ranges);
        }
    }

    /// Fetches ahead the file's footer, metadata and the page index before them, in one
    /// request where they fit in the last [`TAIL`] bytes (a file up to [`SMALL`] is read
    /// whole), else in a second one for what the footer's length says the metadata spans,
    /// with [`TAIL`] before it for the page index. Requests, not bytes, are what a cold
    /// read from a bucket pays most for.
    pub fn prefetch_footer(&self) {
        let Source::Remote(r) = self else {
            return;
        };
        let size = r.size();
        let tail = if size <= SMALL {
            size
        } else {
            TAIL.min(size / 4)
        };
        r.prefetch(std::slice::from_ref(&(size - tail..size)));
        let Ok(end) = self.get_bytes(size.saturating_sub(8), 8.min(size as usize)) else {
            return;
        };
        if end.len() == 8 {
            let meta = u64::from(u32::from_le_bytes([end[0], end[1], end[2], end[3]]));
            if 8 + meta > tail {
                let span = size.saturating_sub(8 + meta + TAIL)..size;
                r.prefetch(std::slice::from_ref(&span));
            }
        }
    }
}

/// Fetches ahead the footers of the files at `paths` that are read in place, several
/// files at once (a query over 90 days opens 90 footers before it reads a page).
pub fn prefetch_footers(paths: &[PathBuf]) {
    // Only a data directory read from a bucket can hold placeholders: a store on local
    // disk opens nothing here.
    let remote: Vec<Source> = paths
        .iter()
        .filter(|p| Remote::of(p).is_some())
        .filter_map(|p| Source::open(p).ok())
        .filter(Source::is_remote)
        .collect();
    let per = remote.len().div_ceil(FOOTERS_AT_ONCE).max(1);
    std::thread::scope(|scope| {
        for share in remote.chunks(per) {
            scope.spawn(move || share.iter().for_each(Source::prefetch_footer));
        }
    });
}

/// Footers fetched at once by [`prefetch_footers`].
const FOOTERS_AT_ONCE: usize = 4;

/// An object read in place, by blocks through the page cache.
#[derive(Clone)]
pub struct RemoteFile(Arc<Object>);

struct Object {
    remote: Arc<Remote>,
    key: Key,
    marker: Marker,
    id: u64,
}

impl RemoteFile {
    fn size(&self) -> u64 {
        self.0.marker.size
    }

    fn failed(&self, e: impl std::fmt::Display) -> ParquetError {
        ParquetError::General(format!(
            "reading {} from the object store: {e}",
            self.0.marker.rel
        ))
    }

    fn id(&self, index: u64) -> BlockId {
        BlockId {
            object: self.0.id,
            index,
        }
    }

    /// See [`Source::prefetch`].
    fn prefetch(&self, ranges: &[Range<u64>]) {
        let size = self.size();
        let cache = &self.0.remote.cache;
        let mut blocks: Vec<u64> = ranges
            .iter()
            .filter(|r| r.start < r.end.min(size))
            .flat_map(|r| r.start / BLOCK..=(r.end.min(size) - 1) / BLOCK)
            .collect();
        blocks.sort_unstable();
        blocks.dedup();
        let budget = (super::cache::MEMORY_BYTES as u64 / 2 / BLOCK) as usize;
        let missing: Vec<u64> = blocks
            .into_iter()
            .filter(|&i| !cache.contains(self.id(i)))
            .take(budget)
            .collect();
        // Runs of consecutive blocks, one range each.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for i in missing {
            match runs.last_mut() {
                Some((_, end)) if *end == i => *end = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        if runs.is_empty() {
            return;
        }
        let ranges: Vec<Range<u64>> = runs
            .iter()
            .map(|&(a, b)| a * BLOCK..(b * BLOCK).min(size))
            .collect();
        match self.0.remote.fetch(&self.0.key, &ranges) {
            Ok(parts) => {
                for (&(first, _), got) in runs.iter().zip(parts) {
                    self.keep(first, &got);
                }
                let metrics = &self.0.remote.metrics;
                metrics
                    .object_store_cache_misses
                    .inc_by(runs.iter().map(|(a, b)| b - a).sum());
                metrics
                    .object_store_cache_bytes
                    .set(cache.disk_bytes() as i64);
            }
            Err(e) => tracing::debug!(error = %e, key = %self.0.marker.rel, "prefetch failed"),
        }
    }

    /// Puts `got`, read from the start of block `first`, in the cache block by block;
    /// the blocks.
    fn keep(&self, first: u64, got: &Bytes) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut lo = 0;
        while lo < got.len() {
            let hi = (lo + BLOCK as usize).min(got.len());
            let block = got.slice(lo..hi);
            let index = first + (lo as u64 / BLOCK);
            self.0.remote.cache.put(self.id(index), block.clone());
            out.push(block);
            lo = hi;
        }
        out
    }

    /// The blocks `first..=last`, each from the cache or, in one request per run of
    /// blocks the cache lacks, from the bucket.
    fn blocks(&self, first: u64, last: u64) -> Result<Vec<Bytes>, ParquetError> {
        let cache = &self.0.remote.cache;
        let metrics = &self.0.remote.metrics;
        let mut out: Vec<Option<Bytes>> = (first..=last).map(|i| cache.get(self.id(i))).collect();
        let hits = out.iter().filter(|b| b.is_some()).count();
        metrics.object_store_cache_hits.inc_by(hits as u64);
        metrics
            .object_store_cache_misses
            .inc_by((out.len() - hits) as u64);
        let mut i = 0;
        while i < out.len() {
            if out[i].is_some() {
                i += 1;
                continue;
            }
            let run = out[i..].iter().take_while(|b| b.is_none()).count();
            let start = (first + i as u64) * BLOCK;
            let end = ((first + (i + run) as u64) * BLOCK).min(self.size());
            let got = self
                .0
                .remote
                .fetch(&self.0.key, std::slice::from_ref(&(start..end)))
                .map_err(|e| self.failed(e))?
                .pop()
                .unwrap_or_default();
            let kept = self.keep(first + i as u64, &got);
            for (slot, block) in out[i..i + run].iter_mut().zip(kept) {
                *slot = Some(block);
            }
            i += run;
        }
        metrics
            .object_store_cache_bytes
            .set(cache.disk_bytes() as i64);
        Ok(out.into_iter().flatten().collect())
    }
}

impl Length for Source {
    fn len(&self) -> u64 {
        match self {
            Source::Local(f) => f.len(),
            Source::Remote(r) => r.size(),
        }
    }
}

impl ChunkReader for Source {
    type T = SourceRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<SourceRead> {
        match self {
            Source::Local(f) => f.get_read(start).map(SourceRead::Local),
            Source::Remote(r) => Ok(SourceRead::Remote {
                file: r.clone(),
                pos: start,
                block: None,
            }),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let r = match self {
            Source::Local(f) => return f.get_bytes(start, length),
            Source::Remote(r) => r,
        };
        let end = start + length as u64;
        if end > r.size() {
            return Err(ParquetError::EOF(format!(
                "{} holds {} bytes, asked for {start}..{end}",
                r.0.marker.rel,
                r.size()
            )));
        }
        if length == 0 {
            return Ok(Bytes::new());
        }
        let (first, last) = (start / BLOCK, (end - 1) / BLOCK);
        let blocks = r.blocks(first, last)?;
        let offset = (start - first * BLOCK) as usize;
        if let [one] = blocks.as_slice() {
            return Ok(one.slice(offset..offset + length));
        }
        let mut out = BytesMut::with_capacity(length);
        for b in &blocks {
            out.extend_from_slice(b);
        }
        Ok(out.freeze().slice(offset..offset + length))
    }
}

/// A reader from an offset of a [`Source`].
pub enum SourceRead {
    /// From a local file.
    Local(std::io::BufReader<std::fs::File>),
    /// From an object, block by block.
    Remote {
        /// The object.
        file: RemoteFile,
        /// The next byte to read.
        pos: u64,
        /// The block read last: its index and bytes.
        block: Option<(u64, Bytes)>,
    },
}

impl Read for SourceRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (file, pos, block) = match self {
            SourceRead::Local(r) => return r.read(buf),
            SourceRead::Remote { file, pos, block } => (file, pos, block),
        };
        if *pos >= file.size() || buf.is_empty() {
            return Ok(0);
        }
        let index = *pos / BLOCK;
        if block.as_ref().map(|(i, _)| *i) != Some(index) {
            let got = file
                .blocks(index, index)
                .map_err(std::io::Error::other)?
                .pop()
                .unwrap_or_default();
            *block = Some((index, got));
        }
        let data = block.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
        let at = (*pos - index * BLOCK) as usize;
        let n = buf.len().min(data.len().saturating_sub(at));
        if n == 0 {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&data[at..at + n]);
        *pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_marker_reads_back_and_a_parquet_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-1.parquet");
        let m = Marker {
            rel: "data/day=2026-01-01/part-1.parquet".into(),
            size: 12345,
            version: "\"etag-1\"".into(),
        };
        std::fs::write(&path, m.encode()).unwrap();
        assert_eq!(Marker::read(&path), Some(m.clone()));
        assert_eq!(stored_len(&path), Some(12345));
        std::fs::write(&path, b"PAR1 not a marker").unwrap();
        assert_eq!(Marker::read(&path), None);
        assert_eq!(stored_len(&path), Some(17));
        let other = Marker {
            version: "\"etag-2\"".into(),
            ..m.clone()
        };
        assert_ne!(
            m.object_id(),
            other.object_id(),
            "a new version is a new object"
        );
    }

    #[test]
    fn a_marker_without_an_object_store_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-1.parquet");
        let m = Marker {
            rel: "data/day=2026-01-01/part-1.parquet".into(),
            size: 10,
            version: "v".into(),
        };
        std::fs::write(&path, m.encode()).unwrap();
        let Err(e) = Source::open(&path) else {
            panic!("a placeholder opened without its bucket")
        };
        assert!(e.to_string().contains("part-1.parquet"), "{e}");
    }
}
