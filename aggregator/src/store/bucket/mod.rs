//! The object store (`--object-store`): the durable copy of every file the store writes,
//! so that a lost machine loses nothing but its unflushed WAL's place in line.
//!
//! The WAL and the head stay on local disk. Every file under `data/` and `billing/` (see
//! [`layout::mirrored_files`]) is uploaded under the same key once it is complete (files
//! are renamed into place only when whole, and a multipart upload is visible only once
//! finished, so a reader never takes a partial object); an object whose file the store
//! deleted (compacted away, past retention) is deleted from the bucket, after the files
//! that replace it are uploaded. On start, files the bucket holds and the data directory
//! lacks are downloaded first: an aggregator on an empty directory comes back with
//! everything the bucket kept. A query node (`--read-only`) downloads no Parquet file: it
//! reads them in place ([`remote`]).
//!
//! While the bucket cannot be reached the store goes on: files stay on local disk, the WAL
//! segments they came from are kept (see `Store::bucket_loop`), uploads are retried with
//! backoff, and `telltale_aggregator_object_store_up` and one log line say so at each
//! change of state.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tracing::{info, warn};

use super::layout;
use crate::metrics::Metrics;

mod cache;
pub mod remote;
mod target;
#[cfg(test)]
mod tests;

use target::connect;
pub use target::{Error, Target};

/// How long a compaction lease holds: far longer than compacting a day takes.
const LEASE: Duration = Duration::from_secs(600);

/// How [`Bucket::follow`] brings the data directory in line with the bucket.
#[derive(Clone, Copy)]
enum Follow {
    /// A query node: the directory becomes what the bucket holds.
    ReadOnly,
    /// A replica among writers: other replicas' files come and go; its own stay.
    Replica,
}

/// Files at least this large are uploaded in parts.
const MULTIPART_FROM: u64 = 16 << 20;
/// The size of one part of a multipart upload (S3 wants at least 5 MiB).
const PART: usize = 8 << 20;

/// What the bucket is known to hold of a file: its length and, for the file uploaded or
/// downloaded, its modification time on local disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// What one [`Bucket::sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Files downloaded (the first sync after start).
    pub restored: usize,
    /// Files uploaded.
    pub uploaded: usize,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Objects deleted.
    pub deleted: usize,
}

/// What one [`Bucket::pull`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Files downloaded (new, or changed in the bucket).
    pub fetched: usize,
    /// Local files removed because the bucket no longer holds them.
    pub removed: usize,
}

/// What the bucket holds, as far as this process knows.
#[derive(Default)]
struct Known {
    /// Key to what was uploaded or downloaded under it.
    objects: HashMap<String, Stamp>,
    /// For [`Bucket::pull`]: key to the version of the object last downloaded (size and
    /// entity tag or modification time).
    fetched: HashMap<String, (u64, String)>,
    /// Whether the bucket was listed and what the data directory lacked downloaded.
    restored: bool,
    /// Whether the last operation worked (`None` before the first).
    up: Option<bool>,
}

/// The bucket a store keeps its files in.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// Where in the bucket the data directory's layout starts.
    prefix: Key,
    target: Target,
    data_dir: PathBuf,
    metrics: Metrics,
    known: tokio::sync::Mutex<Known>,
    /// This writer's name, when replicas share the bucket (`--replica`).
    replica: Option<String>,
    /// On a query node: Parquet files are read in place, placeholders standing for them.
    in_place: Option<Arc<remote::Remote>>,
}

impl Bucket {
    /// The bucket of `target` for the store in `data_dir`; nothing is asked of it yet.
    pub fn new(target: &Target, data_dir: &Path, metrics: Metrics) -> Result<Bucket, Error> {
        let (store, prefix) = connect(target)?;
        Ok(Bucket {
            store,
            prefix,
            target: target.clone(),
            data_dir: data_dir.to_path_buf(),
            metrics,
            known: Default::default(),
            replica: None,
            in_place: None,
        })
    }

    /// A query node's bucket: Parquet files are not downloaded but read in place, by
    /// range reads through a page cache of `cache_max_bytes` on local disk (see
    /// [`remote`]). Must be called inside the runtime that will run the client.
    pub fn read_in_place(mut self, cache_max_bytes: u64) -> Result<Bucket, Error> {
        let dir = layout::page_cache_dir(&self.data_dir);
        let remote = remote::Remote::install(
            self.store.clone(),
            self.prefix.clone(),
            &self.data_dir,
            &dir,
            cache_max_bytes,
            self.metrics.clone(),
        )
        .map_err(|source| Error::Io { path: dir, source })?;
        self.in_place = Some(remote);
        Ok(self)
    }

    /// Brings the object of `rel` to `path`: downloaded, or, read in place, a placeholder
    /// of its `version`.
    async fn take(
        &self,
        meta: &object_store::ObjectMeta,
        rel: &str,
        path: &Path,
    ) -> Result<(), Error> {
        if self.in_place.is_none() || !layout::immutable(rel) {
            self.download(&meta.location, rel, path).await?;
            self.metrics.object_store_restored.inc();
            return Ok(());
        }
        let marker = remote::Marker {
            rel: rel.to_owned(),
            size: meta.size,
            version: version(meta).1,
        };
        self.write(path, marker.encode().into()).await
    }

    /// The bucket shared with other replicas, this one named `replica`: each sync also
    /// takes their new files and lets go of files merged away, and compaction is
    /// coordinated through leases ([`Bucket::lease`]).
    pub fn with_replica(mut self, replica: &str) -> Bucket {
        self.replica = Some(replica.to_owned());
        self
    }

    /// This writer's name among replicas, if it is one.
    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    fn key(&self, rel: &str) -> Key {
        rel.split('/')
            .fold(self.prefix.clone(), |k, part| k.clone().join(part))
    }

    /// The key relative to the prefix, if `key` is under it.
    fn relative(&self, key: &Key) -> Option<String> {
        let parts: Vec<String> = key
            .prefix_match(&self.prefix)?
            .map(|p| p.as_ref().to_owned())
            .collect();
        Some(parts.join("/"))
    }

    fn failed(&self, op: &'static str, key: &str, source: object_store::Error) -> Error {
        Error::Store {
            op,
            key: key.to_owned(),
            source,
        }
    }

    /// Records whether the bucket answered, with a log line when that changes.
    fn set_up(&self, known: &mut Known, up: bool, why: Option<&Error>) {
        self.metrics.object_store_up.set(up as i64);
        if known.up == Some(up) {
            return;
        }
        known.up = Some(up);
        match why {
            None => info!(url = %self.target.url, "the object store answers"),
            Some(e) => {
                warn!(url = %self.target.url, error = %e, "the object store cannot be reached; files stay on local disk, the WAL keeps what they hold, and uploads are retried")
            }
        }
    }

    /// Downloads what the bucket holds and the data directory lacks (once), uploads every
    /// file the bucket lacks or holds an older copy of, then deletes the objects whose
    /// files are gone. Deletions wait until every upload worked, so a file that replaces
    /// others (a compaction) is in the bucket before they leave it.
    pub async fn sync(&self) -> Result<Synced, Error> {
        let mut known = self.known.lock().await;
        let done = self.sync_locked(&mut known).await;
        match &done {
            Ok(_) => self.set_up(&mut known, true, None),
            Err(e) => self.set_up(&mut known, false, Some(e)),
        }
        done
    }

    /// Downloads what the bucket holds and the data directory lacks, if not done yet
    /// (the first sync does it otherwise): before anything reads the data directory, so
    /// an aggregator on an empty one starts with everything the bucket kept.
    pub async fn restore(&self) -> Result<usize, Error> {
        let mut known = self.known.lock().await;
        if known.restored {
            return Ok(0);
        }
        let done = self.restore_locked(&mut known).await;
        match &done {
            Ok(_) => self.set_up(&mut known, true, None),
            Err(e) => self.set_up(&mut known, false, Some(e)),
        }
        done
    }

    async fn sync_locked(&self, known: &mut Known) -> Result<Synced, Error> {
        let mut out = Synced::default();
        if !known.restored {
            out.restored = self.restore_locked(known).await?;
        }
        let dir = self.data_dir.clone();
        let local = tokio::task::spawn_blocking(move || layout::mirrored_files(&dir))
            .await
            .unwrap_or_default();
        let pending: Vec<(&String, &PathBuf, Stamp)> = local
            .iter()
            .filter_map(|(key, path)| {
                let s = stamp(path)?;
                (known.objects.get(key) != Some(&s)).then_some((key, path, s))
            })
            .collect();
        self.metrics.object_store_pending.set(pending.len() as i64);
        for (left, (key, path, s)) in pending.iter().enumerate().rev() {
            match self.upload(key, path, s.len).await {
                Ok(()) => {
                    known.objects.insert((*key).clone(), *s);
                    out.uploaded += 1;
                    out.uploaded_bytes += s.len;
                }
                // Deleted since it was listed (compacted away): the next sync sees it gone.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.metrics.object_store_pending.set(left as i64);
        }
        let present: std::collections::HashSet<&str> =
            local.iter().map(|(k, _)| k.as_str()).collect();
        let gone: Vec<String> = known
            .objects
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .cloned()
            .collect();
        for key in gone {
            match self.store.delete(&self.key(&key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.failed("delete", &key, e)),
            }
            known.objects.remove(&key);
            self.metrics.object_store_deleted.inc();
            out.deleted += 1;
        }
        if self.replica.is_some() {
            let followed = self.follow(known, Follow::Replica).await?;
            out.restored += followed.fetched;
        }
        Ok(out)
    }

    /// For a read-only aggregator: makes the data directory what the bucket holds,
    /// downloading new and changed objects and removing files whose objects are gone
    /// (compacted away or retired by the aggregator that writes them). Never uploads.
    pub async fn pull(&self) -> Result<Pulled, Error> {
        let mut known = self.known.lock().await;
        let done = self.follow(&mut known, Follow::ReadOnly).await;
        match &done {
            Ok(_) => self.set_up(&mut known, true, None),
            Err(e) => self.set_up(&mut known, false, Some(e)),
        }
        done
    }

    /// The mirrored objects under the prefix: (key relative to it, local path, metadata).
    async fn list(&self) -> Result<Vec<(String, PathBuf, object_store::ObjectMeta)>, Error> {
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.failed("list", self.prefix.as_ref(), e))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let rel = self.relative(&meta.location)?;
                let path = layout::mirrored_path(&self.data_dir, &rel)?;
                Some((rel, path, meta))
            })
            .collect())
    }

    /// Brings the data directory in line with the bucket. A read-only node takes every
    /// new or changed object and drops every file the bucket lacks. A replica takes only
    /// the immutable files it has never had (other replicas' parts; never one it deleted
    /// and has not yet deleted from the bucket, never billing's frontier, which each
    /// replica keeps its own) and drops only files it knew the bucket held and no longer
    /// does (merged away by the replica that compacted their day); its own files not yet
    /// uploaded stay.
    async fn follow(&self, known: &mut Known, mode: Follow) -> Result<Pulled, Error> {
        let mut out = Pulled::default();
        let mut present = std::collections::HashSet::new();
        for (rel, path, meta) in self.list().await? {
            present.insert(rel.clone());
            let version = version(&meta);
            let take = match mode {
                Follow::ReadOnly => {
                    known.fetched.get(&rel) != Some(&version)
                        && !(layout::immutable(&rel)
                            && remote::stored_len(&path) == Some(meta.size))
                }
                Follow::Replica => {
                    layout::immutable(&rel)
                        && stamp(&path).is_none()
                        && !known.objects.contains_key(&rel)
                }
            };
            if take {
                self.take(&meta, &rel, &path).await?;
                out.fetched += 1;
                if let (Follow::Replica, Some(s)) = (mode, stamp(&path)) {
                    known.objects.insert(rel.clone(), s);
                }
            }
            known.fetched.insert(rel, version);
        }
        let dir = self.data_dir.clone();
        let local = tokio::task::spawn_blocking(move || layout::mirrored_files(&dir))
            .await
            .unwrap_or_default();
        for (key, path) in local {
            let drop = !present.contains(&key)
                && match mode {
                    Follow::ReadOnly => true,
                    Follow::Replica => layout::immutable(&key) && known.objects.contains_key(&key),
                };
            if drop && std::fs::remove_file(&path).is_ok() {
                known.fetched.remove(&key);
                known.objects.remove(&key);
                out.removed += 1;
            }
        }
        Ok(out)
    }

    /// Takes the lease on compacting `day`, unless another replica holds one younger than
    /// [`LEASE`]: a conditional create of [`layout::compaction_lease`], which one replica
    /// alone can win. A stale lease (its holder died) is deleted and the create tried
    /// once more.
    pub async fn lease(&self, day: i64) -> Result<bool, Error> {
        let rel = layout::compaction_lease(day);
        let key = self.key(&rel);
        let now = telltale_model::time::to_millis(SystemTime::now());
        let body = format!(
            "{} {}\n",
            self.replica.as_deref().unwrap_or("-"),
            now + LEASE.as_millis() as i64
        );
        for attempt in 0..2 {
            let put = self
                .store
                .put_opts(
                    &key,
                    PutPayload::from(body.clone().into_bytes()),
                    object_store::PutMode::Create.into(),
                )
                .await;
            match put {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) if attempt == 0 => {
                    let held = self
                        .store
                        .get(&key)
                        .await
                        .map_err(|e| self.failed("get", &rel, e))?
                        .bytes()
                        .await
                        .map_err(|e| self.failed("get", &rel, e))?;
                    let until = String::from_utf8_lossy(&held)
                        .split_whitespace()
                        .nth(1)
                        .and_then(|t| t.parse::<i64>().ok())
                        .unwrap_or(0);
                    if until > now {
                        return Ok(false);
                    }
                    match self.store.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.failed("delete", &rel, e)),
                    }
                }
                Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
                Err(e) => return Err(self.failed("lease", &rel, e)),
            }
        }
        Ok(false)
    }

    /// Gives the lease on compacting `day` back.
    pub async fn release(&self, day: i64) {
        let rel = layout::compaction_lease(day);
        if let Err(e) = self.store.delete(&self.key(&rel)).await {
            tracing::debug!(error = %e, lease = %rel, "the lease stays until it expires");
        }
    }

    /// Lists the bucket and downloads every mirrored file the data directory lacks.
    /// Immutable files present on both sides with the same length count as the bucket's;
    /// billing's frontier files are uploaded again (the local copy is the newer).
    async fn restore_locked(&self, known: &mut Known) -> Result<usize, Error> {
        let mut restored = 0;
        for (rel, path, meta) in self.list().await? {
            let mut s = stamp(&path);
            if s.is_none() {
                self.take(&meta, &rel, &path).await?;
                restored += 1;
                s = stamp(&path);
            }
            match s {
                Some(s) if s.len == meta.size && layout::immutable(&rel) => {
                    known.objects.insert(rel, s);
                }
                // Known to be there, in some other version: replaced by the next upload.
                _ => {
                    known.objects.insert(
                        rel,
                        Stamp {
                            len: meta.size,
                            modified: None,
                        },
                    );
                }
            }
        }
        known.restored = true;
        if restored > 0 {
            info!(files = restored, url = %self.target.url, "restored files from the object store");
        }
        Ok(restored)
    }

    /// Writes the object at `key` to `path`, through a temporary file renamed into place.
    async fn download(&self, key: &Key, rel: &str, path: &Path) -> Result<(), Error> {
        let bytes = self
            .store
            .get(key)
            .await
            .map_err(|e| self.failed("get", rel, e))?
            .bytes()
            .await
            .map_err(|e| self.failed("get", rel, e))?;
        self.write(path, bytes).await
    }

    /// [`write_whole`] on a blocking thread.
    async fn write(&self, path: &Path, bytes: bytes::Bytes) -> Result<(), Error> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || write_whole(&path, &bytes))
            .await
            .map_err(|e| Error::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Uploads the file at `path` (of `len` bytes) under `rel`: in one request, or in
    /// parts for a large file (an unfinished multipart upload is never visible).
    async fn upload(&self, rel: &str, path: &Path, len: u64) -> Result<(), Error> {
        let key = self.key(rel);
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if len < MULTIPART_FROM {
            let bytes = std::fs::read(path).map_err(io)?;
            let n = bytes.len() as u64;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| self.failed("put", rel, e))?;
            self.metrics.object_store_uploaded_bytes.inc_by(n);
        } else {
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| self.failed("start multipart upload", rel, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut file = std::fs::File::open(path).map_err(io)?;
            let mut buf = vec![0u8; PART];
            let mut n = 0u64;
            loop {
                let read = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(r) => r,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(io(e));
                    }
                };
                if let Err(e) = writer.wait_for_capacity(2).await {
                    // Best effort: the parts sent so far are not kept by the bucket (an
                    // upload never completed is never visible either way).
                    let _ = writer.abort().await;
                    return Err(self.failed("upload part", rel, e));
                }
                writer.write(&buf[..read]);
                n += read as u64;
            }
            writer
                .finish()
                .await
                .map_err(|e| self.failed("complete multipart upload", rel, e))?;
            self.metrics.object_store_uploaded_bytes.inc_by(n);
        }
        self.metrics.object_store_uploaded.inc();
        Ok(())
    }
}

/// An object's size and version (entity tag, or modification time without one).
fn version(meta: &object_store::ObjectMeta) -> (u64, String) {
    (
        meta.size,
        meta.e_tag
            .clone()
            .unwrap_or_else(|| meta.last_modified.to_rfc3339()),
    )
}

/// Writes `bytes` to `path` durably: a hidden temporary file in the same directory,
/// published as the store publishes its own files ([`super::partition::publish`]).
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = layout::temporary(dir, &name);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    super::partition::publish(&f, &tmp, path).map_err(io)
}
