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
//! everything the bucket kept.
//!
//! While the bucket cannot be reached the store goes on: files stay on local disk, the WAL
//! segments they came from are kept (see `Store::bucket_loop`), uploads are retried with
//! backoff, and `telltale_aggregator_object_store_up` and one log line say so at each
//! change of state.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, RetryConfig,
    WriteMultipart,
};
use tracing::{info, warn};

use super::layout;
use crate::metrics::Metrics;

/// Files at least this large are uploaded in parts.
const MULTIPART_FROM: u64 = 16 << 20;
/// The size of one part of a multipart upload (S3 wants at least 5 MiB).
const PART: usize = 8 << 20;

/// Where the bucket is and how to reach it: `--object-store` and its
/// `--object-store-option key=value` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///dir`.
    pub url: String,
    /// Settings of the object store client, as `object_store` names them (`region`,
    /// `endpoint`, `allow_http`, `timeout`, ...).
    pub options: Vec<(String, String)>,
}

impl fmt::Debug for Target {
    /// The URL and the option names; values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.options.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("options", &keys)
            .finish()
    }
}

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--object-store` or one of its options is not usable.
    #[error("--object-store {url}: {message}")]
    Config {
        /// The URL given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// An operation on the bucket failed.
    #[error("object store: {op} {key}: {source}")]
    Store {
        /// What was tried.
        op: &'static str,
        /// On which key.
        key: String,
        /// Why it failed.
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

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
        })
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
        Ok(out)
    }

    /// For a read-only aggregator: makes the data directory what the bucket holds,
    /// downloading new and changed objects and removing files whose objects are gone
    /// (compacted away or retired by the aggregator that writes them). Never uploads.
    pub async fn pull(&self) -> Result<Pulled, Error> {
        let mut known = self.known.lock().await;
        let done = self.pull_locked(&mut known).await;
        match &done {
            Ok(_) => self.set_up(&mut known, true, None),
            Err(e) => self.set_up(&mut known, false, Some(e)),
        }
        done
    }

    async fn pull_locked(&self, known: &mut Known) -> Result<Pulled, Error> {
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.failed("list", self.prefix.as_ref(), e))?;
        let mut out = Pulled::default();
        let mut present = std::collections::HashSet::new();
        for meta in listed {
            let Some(rel) = self.relative(&meta.location) else {
                continue;
            };
            let Some(path) = layout::mirrored_path(&self.data_dir, &rel) else {
                continue;
            };
            let version = (
                meta.size,
                meta.e_tag
                    .clone()
                    .unwrap_or_else(|| meta.last_modified.to_rfc3339()),
            );
            let fresh = known.fetched.get(&rel) == Some(&version)
                || (layout::immutable(&rel) && stamp(&path).is_some_and(|s| s.len == meta.size));
            if !fresh {
                self.download(&meta.location, &rel, &path).await?;
                out.fetched += 1;
                self.metrics.object_store_restored.inc();
            }
            known.fetched.insert(rel.clone(), version);
            present.insert(rel);
        }
        let dir = self.data_dir.clone();
        let local = tokio::task::spawn_blocking(move || layout::mirrored_files(&dir))
            .await
            .unwrap_or_default();
        for (key, path) in local {
            if !present.contains(&key) && std::fs::remove_file(&path).is_ok() {
                known.fetched.remove(&key);
                out.removed += 1;
            }
        }
        Ok(out)
    }

    /// Lists the bucket and downloads every mirrored file the data directory lacks.
    /// Immutable files present on both sides with the same length count as the bucket's;
    /// billing's frontier files are uploaded again (the local copy is the newer).
    async fn restore_locked(&self, known: &mut Known) -> Result<usize, Error> {
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.failed("list", self.prefix.as_ref(), e))?;
        let mut restored = 0;
        for meta in listed {
            let Some(rel) = self.relative(&meta.location) else {
                continue;
            };
            let Some(path) = layout::mirrored_path(&self.data_dir, &rel) else {
                continue;
            };
            let mut s = stamp(&path);
            if s.is_none() {
                self.download(&meta.location, &rel, &path).await?;
                restored += 1;
                self.metrics.object_store_restored.inc();
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

/// Writes `bytes` to `path` durably: a hidden temporary file in the same directory,
/// fsynced, renamed into place.
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
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Client defaults: a bucket that does not answer fails an operation within about a
/// minute (the store retries it later), instead of `object_store`'s three.
fn client_defaults() -> (ClientOptions, RetryConfig) {
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    (client, retry)
}

/// The store and key prefix of `target`. S3, GCS and Azure settings come from their
/// usual environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then from the options;
/// an option the client does not know is an error naming it.
fn connect(target: &Target) -> Result<(Arc<dyn ObjectStore>, Key), Error> {
    let bad = |message: String| Error::Config {
        url: target.url.clone(),
        message,
    };
    let url = url::Url::parse(&target.url).map_err(|e| bad(e.to_string()))?;
    const SCHEMES: &str =
        "use s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir";
    let (scheme, prefix) = ObjectStoreScheme::parse(&url)
        .map_err(|_| bad(format!("not an object store URL: {SCHEMES}")))?;
    fn built<T: ObjectStore>(
        r: object_store::Result<T>,
        bad: impl Fn(String) -> Error,
    ) -> Result<Arc<dyn ObjectStore>, Error> {
        Ok(Arc::new(r.map_err(|e| bad(e.to_string()))?))
    }
    let (client, retry) = client_defaults();
    // The HTTPS client's cryptography: ring, as everywhere else in Telltale (a provider
    // installed before is kept).
    let _ = rustls::crypto::ring::default_provider().install_default();
    macro_rules! configured {
        ($builder:expr, $key:ty, $env:literal) => {{
            let mut b = $builder
                .with_client_options(client)
                .with_retry(retry)
                .with_url(target.url.clone());
            let from_env = std::env::vars().filter(|(k, _)| k.starts_with($env));
            for (k, v) in from_env {
                if let Ok(key) = k.to_ascii_lowercase().parse::<$key>() {
                    b = b.with_config(key, v);
                }
            }
            for (k, v) in &target.options {
                let key = k
                    .to_ascii_lowercase()
                    .parse::<$key>()
                    .map_err(|_| bad(format!("unknown option {k:?}")))?;
                b = b.with_config(key, v.clone());
            }
            b
        }};
    }
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => {
            if let Some((k, _)) = target.options.first() {
                return Err(bad(format!("option {k:?} does not apply to file://")));
            }
            let dir = url
                .to_file_path()
                .map_err(|()| bad("not a local directory".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
            let store = built(LocalFileSystem::new_with_prefix(&dir), bad)?;
            return Ok((store, Key::default()));
        }
        ObjectStoreScheme::AmazonS3 => built(
            configured!(AmazonS3Builder::new(), AmazonS3ConfigKey, "AWS_").build(),
            bad,
        )?,
        ObjectStoreScheme::GoogleCloudStorage => built(
            configured!(GoogleCloudStorageBuilder::new(), GoogleConfigKey, "GOOGLE_").build(),
            bad,
        )?,
        ObjectStoreScheme::MicrosoftAzure => built(
            configured!(MicrosoftAzureBuilder::new(), AzureConfigKey, "AZURE_").build(),
            bad,
        )?,
        _ => return Err(bad(format!("not an object store URL: {SCHEMES}"))),
    };
    Ok((store, prefix))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target(url: &str, options: &[(&str, &str)]) -> Target {
        Target {
            url: url.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn bad_targets_are_named() {
        for (t, words) in [
            (target("not a url", &[]), "not a url"),
            (target("ftp://x/y", &[]), "use s3://"),
            (
                target("s3://b/p", &[("no_such_option", "1")]),
                "unknown option \"no_such_option\"",
            ),
        ] {
            let e = connect(&t).err().unwrap().to_string();
            assert!(e.contains(words), "{e}");
        }
        let (_, prefix) = connect(&target("s3://bucket/some/prefix", &[("region", "x")])).unwrap();
        assert_eq!(prefix.as_ref(), "some/prefix");
        let debug = format!("{:?}", target("s3://b", &[("secret_access_key", "hush")]));
        assert!(!debug.contains("hush"), "{debug}");
    }

    /// A file:// bucket: files land under their keys, a fresh data directory gets them
    /// back, and files deleted locally leave the bucket.
    #[tokio::test]
    async fn files_go_up_come_back_and_leave() {
        let root = tempfile::tempdir().unwrap();
        let bucket_dir = root.path().join("bucket");
        let t = target(&format!("file://{}", bucket_dir.display()), &[]);
        let first = root.path().join("first");
        let files = [
            "data/day=2026-01-01/part-1-0.parquet",
            "data/day=2026-01-01/part-2-0.parquet",
            "billing/settled",
        ];
        for f in files {
            let p = first.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f.as_bytes()).unwrap();
        }
        // Large enough to go up in parts.
        let big_key = "data/day=2026-01-02/part-9-import0.parquet";
        let big: Vec<u8> = (0..MULTIPART_FROM as usize + PART + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::create_dir_all(first.join("data/day=2026-01-02")).unwrap();
        std::fs::write(first.join(big_key), &big).unwrap();
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        let b = Bucket::new(&t, &first, metrics.clone()).unwrap();
        let s = b.sync().await.unwrap();
        assert_eq!((s.restored, s.uploaded, s.deleted), (0, 4, 0));
        for f in files {
            assert_eq!(std::fs::read(bucket_dir.join(f)).unwrap(), f.as_bytes());
        }
        assert!(std::fs::read(bucket_dir.join(big_key)).unwrap() == big);
        assert_eq!(b.sync().await.unwrap(), Synced::default());
        // A compaction: one file replaces both.
        let merged = "data/day=2026-01-01/part-3-c2.parquet";
        std::fs::write(first.join(merged), b"merged").unwrap();
        for f in &files[..2] {
            std::fs::remove_file(first.join(f)).unwrap();
        }
        let s = b.sync().await.unwrap();
        assert_eq!((s.uploaded, s.deleted), (1, 2));
        assert!(!bucket_dir.join(files[0]).exists());
        assert_eq!(metrics.object_store_up.get(), 1);

        // The lost machine: an empty directory gets everything back.
        let second = root.path().join("second");
        let b2 = Bucket::new(&t, &second, metrics).unwrap();
        let s = b2.sync().await.unwrap();
        assert_eq!((s.restored, s.uploaded, s.deleted), (3, 1, 0));
        assert_eq!(std::fs::read(second.join(merged)).unwrap(), b"merged");
        assert!(std::fs::read(second.join(big_key)).unwrap() == big);
        assert_eq!(
            std::fs::read(second.join("billing/settled")).unwrap(),
            b"billing/settled"
        );
    }
}
