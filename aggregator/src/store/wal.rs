//! The write-ahead log: every accepted remote-write body, checksummed, fsynced before the
//! request is answered.
//!
//! Layout: `<data-dir>/wal/<seq>.wal`, an 8-byte magic then frames of
//! `[len u32][crc32 u32][payload]` (`telltale_model::frame`); the payload is the request body as received (snappy
//! block format, already validated), so accepting a request costs no re-encoding.
//!
//! Promises:
//! - When [`Wal::append`] returns `Ok`, the record is on stable storage (written and
//!   `fdatasync`ed): it survives SIGKILL and power loss.
//! - Concurrent appends share fsyncs (group commit): one writer thread takes every record
//!   waiting, writes them in one go, syncs once, and answers them all.
//! - [`replay`] returns every complete record in order; a torn or corrupt tail is cut off
//!   with one log line, and nothing after it is read.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use telltale_model::frame::{self, Frames};
use tracing::{error, warn};

const MAGIC: &[u8; 8] = b"TTWAL001";

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory or a segment cannot be used.
    #[error("WAL {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The writer thread is gone (the process is shutting down).
    #[error("WAL writer stopped")]
    Stopped,
    /// The log holds `--wal-max-bytes` already: its samples are not in the object store
    /// yet, and taking more could fill the disk.
    #[error("the WAL holds {bytes} bytes, at least --wal-max-bytes ({max}), because the object store does not hold its files yet; retry later")]
    Full {
        /// Bytes of the log's segments.
        bytes: u64,
        /// `--wal-max-bytes`.
        max: u64,
    },
}

type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

enum Msg {
    Append(Vec<u8>, Reply),
    /// Start a new segment; answer its sequence number.
    Rotate(tokio::sync::oneshot::Sender<Result<u64, String>>),
}

/// Handle to the log's writer thread.
#[derive(Debug, Clone)]
pub struct Wal {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Append(..) => "Append",
            Msg::Rotate(_) => "Rotate",
        })
    }
}

const CHECKPOINT: &str = "checkpoint";

/// The first segment still needed: everything before it is in Parquet files.
fn read_checkpoint(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(CHECKPOINT))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Records that segments before `seq` are no longer needed (their samples are in
/// fsynced Parquet files), then deletes them. The record is written atomically first, so
/// a crash in between never replays them again.
pub fn checkpoint(dir: &Path, seq: u64) -> Result<(), Error> {
    let tmp = dir.join(".checkpoint.tmp");
    let path = dir.join(CHECKPOINT);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(format!("{seq}\n").as_bytes())
            .map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    for s in segments(dir)? {
        if s < seq {
            let p = segment_path(dir, s);
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

struct Writer {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    seq: u64,
    bytes: u64,
    segment_bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.wal"))
}

/// Bytes of every segment in `dir` (0 for a log not yet made).
pub fn size(dir: &Path) -> u64 {
    segments(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| std::fs::metadata(segment_path(dir, s)).ok())
        .map(|m| m.len())
        .sum()
}

/// Sequence numbers of the segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        if let Some(seq) = name
            .to_string_lossy()
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

impl Writer {
    fn create(dir: &Path, seq: u64, segment_bytes: u64) -> Result<Writer, Error> {
        let path = segment_path(dir, seq);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(MAGIC).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        // The new name must survive a power cut too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Writer {
            dir: dir.to_owned(),
            file,
            path,
            seq,
            bytes: MAGIC.len() as u64,
            segment_bytes,
        })
    }

    /// Writes `buf` (whole frames) and syncs.
    fn commit(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.bytes >= self.segment_bytes {
            match Writer::create(&self.dir, self.seq + 1, self.segment_bytes) {
                Ok(next) => *self = next,
                Err(e) => {
                    warn!(error = %e, "cannot start a new WAL segment; appending to the current one")
                }
            }
        }
        let result = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.bytes += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut what may have been half written, so the log stays a sequence of
                // whole records; none of them was acknowledged.
                let _ = self.file.set_len(self.bytes);
                use std::io::Seek;
                let _ = self.file.seek(std::io::SeekFrom::Start(self.bytes));
                error!(path = %self.path.display(), error = %e, "WAL write failed; requests answered 503");
                Err(e)
            }
        }
    }
}

impl Wal {
    /// Opens the log in `dir` (created if missing) for appending after what [`replay`]
    /// read; a new segment is started. `on_commit(bytes, records)` is called after each
    /// fsync (for own metrics).
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        on_commit: impl Fn(u64, u64) + Send + 'static,
    ) -> Result<Wal, Error> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let seqs = segments(dir)?;
        let next = seqs.last().map_or(1, |s| s + 1).max(read_checkpoint(dir));
        let mut writer = Writer::create(dir, next, segment_bytes)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || {
                let mut buf = Vec::new();
                let mut held = None;
                loop {
                    let first = match held.take() {
                        Some(m) => m,
                        None => match rx.recv() {
                            Ok(m) => m,
                            Err(_) => return,
                        },
                    };
                    let first = match first {
                        Msg::Rotate(reply) => {
                            let next = writer.seq + 1;
                            let r = Writer::create(&writer.dir, next, writer.segment_bytes)
                                .map(|w| {
                                    writer = w;
                                    next
                                })
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                            continue;
                        }
                        Msg::Append(p, r) => (p, r),
                    };
                    buf.clear();
                    let mut replies = Vec::new();
                    let mut take = |(payload, reply): (Vec<u8>, Reply)| {
                        frame::put(&mut buf, &payload);
                        replies.push(reply);
                    };
                    take(first);
                    // Everything that arrived meanwhile shares this fsync (a rotation
                    // waits for the next round).
                    while let Ok(more) = rx.try_recv() {
                        match more {
                            Msg::Append(p, r) => take((p, r)),
                            rotate => {
                                held = Some(rotate);
                                break;
                            }
                        }
                    }
                    let result = writer.commit(&buf).map_err(|e| e.to_string());
                    if result.is_ok() {
                        on_commit(buf.len() as u64, replies.len() as u64);
                    }
                    for r in replies {
                        let _ = r.send(result.clone());
                    }
                }
            })
            .map_err(io_err(dir))?;
        Ok(Wal { tx })
    }

    /// Appends one record; returns once it is durable.
    pub async fn append(&self, payload: Vec<u8>) -> Result<(), Error> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Append(payload, reply))
            .map_err(|_| Error::Stopped)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Io {
                path: PathBuf::from("wal"),
                source: std::io::Error::other(e),
            }),
            Err(_) => Err(Error::Stopped),
        }
    }
}

impl Wal {
    /// Starts a new segment; returns its sequence number. Every record appended before
    /// this call is in an earlier segment.
    pub async fn rotate(&self) -> Result<u64, Error> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Rotate(reply))
            .map_err(|_| Error::Stopped)?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(Error::Io {
                path: PathBuf::from("wal"),
                source: std::io::Error::other(e),
            }),
            Err(_) => Err(Error::Stopped),
        }
    }
}

/// Reads every complete record in `dir` after the checkpoint, oldest first, calling `f`
/// with each payload.
/// A torn or corrupt tail is truncated with one log line. Returns the records read.
pub fn replay(dir: &Path, mut f: impl FnMut(&[u8])) -> Result<u64, Error> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut n = 0;
    let from = read_checkpoint(dir);
    for seq in segments(dir)?.into_iter().filter(|&s| s >= from) {
        let path = segment_path(dir, seq);
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            warn!(path = %path.display(), "not a WAL segment (bad magic); skipping it");
            continue;
        }
        let mut frames = Frames::new(&data, MAGIC.len());
        for (_, payload) in frames.by_ref() {
            f(payload);
            n += 1;
        }
        let at = frames.end();
        if let Some(why) = frames.torn() {
            warn!(path = %path.display(), offset = at, dropped_bytes = data.len() - at, why, "truncating the torn tail of a WAL segment");
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            file.set_len(at as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn appended_records_replay_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        use std::sync::atomic::{AtomicU64, Ordering};
        let counts = std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let c = counts.clone();
        let wal = Wal::open(dir.path(), 1 << 20, move |_, records| {
            c.0.fetch_add(records, Ordering::Relaxed);
            c.1.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let w = wal.clone();
            tasks.push(tokio::spawn(async move {
                w.append(i.to_le_bytes().to_vec()).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(counts.0.load(Ordering::Relaxed), 50);
        assert!(counts.1.load(Ordering::Relaxed) <= 50);
        drop(wal);
        let mut got = Vec::new();
        replay(dir.path(), |p| {
            got.push(u32::from_le_bytes(p.try_into().unwrap()))
        })
        .unwrap();
        got.sort_unstable();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        // Tear the last record of the newest non-empty segment.
        let seg = segment_path(dir.path(), 1);
        let len = std::fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let n = replay(dir.path(), |_| {}).unwrap();
        assert_eq!(n, 49);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len - 12);
        // A second replay finds a clean log.
        assert_eq!(replay(dir.path(), |_| {}).unwrap(), 49);
    }

    #[tokio::test]
    async fn a_checkpoint_removes_what_was_flushed_and_replay_skips_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 1 << 20, |_, _| {}).unwrap();
        wal.append(vec![1]).await.unwrap();
        let seq = wal.rotate().await.unwrap();
        wal.append(vec![2]).await.unwrap();
        checkpoint(dir.path(), seq).unwrap();
        drop(wal);
        let mut got = Vec::new();
        replay(dir.path(), |p| got.push(p[0])).unwrap();
        assert_eq!(got, vec![2]);
        assert_eq!(segments(dir.path()).unwrap(), vec![seq]);
    }

    #[tokio::test]
    async fn segments_rotate_and_a_reopened_log_appends_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 64, |_, _| {}).unwrap();
        for i in 0..10u8 {
            wal.append(vec![i; 40]).await.unwrap();
        }
        drop(wal);
        assert!(segments(dir.path()).unwrap().len() > 3);
        let wal = Wal::open(dir.path(), 64, |_, _| {}).unwrap();
        wal.append(vec![99; 3]).await.unwrap();
        drop(wal);
        let mut got = Vec::new();
        replay(dir.path(), |p| got.push(p[0])).unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99]);
    }
}
