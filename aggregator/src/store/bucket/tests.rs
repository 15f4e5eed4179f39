//! The bucket against a `file://` store: uploads, restores, deletions, multipart.

#![allow(clippy::unwrap_used)]

use super::*;

fn target(url: &str) -> Target {
    Target {
        url: url.into(),
        options: Vec::new(),
    }
}

/// A file:// bucket: files land under their keys, a fresh data directory gets them
/// back, and files deleted locally leave the bucket.
#[tokio::test]
async fn files_go_up_come_back_and_leave() {
    let root = tempfile::tempdir().unwrap();
    let bucket_dir = root.path().join("bucket");
    let t = target(&format!("file://{}", bucket_dir.display()));
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

/// A day's compaction lease: one replica at a time; given back, another takes it; a
/// lease whose holder died (past its expiry) is taken over.
#[tokio::test]
async fn one_replica_at_a_time_holds_a_day_s_lease() {
    let root = tempfile::tempdir().unwrap();
    let bucket_dir = root.path().join("bucket");
    let t = target(&format!("file://{}", bucket_dir.display()));
    let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
    let a = Bucket::new(&t, &root.path().join("a"), metrics.clone())
        .unwrap()
        .with_replica("a");
    let b = Bucket::new(&t, &root.path().join("b"), metrics)
        .unwrap()
        .with_replica("b");
    assert!(a.lease(5).await.unwrap());
    assert!(!b.lease(5).await.unwrap(), "held by a");
    assert!(!a.lease(5).await.unwrap(), "not even a takes it twice");
    assert!(b.lease(6).await.unwrap(), "another day is free");
    a.release(5).await;
    assert!(b.lease(5).await.unwrap());
    // A holder that died long ago: its lease expired at 1 ms after the epoch.
    let stale = bucket_dir.join(layout::compaction_lease(7));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, "gone 1\n").unwrap();
    assert!(a.lease(7).await.unwrap());
    assert!(std::fs::read_to_string(&stale).unwrap().starts_with("a "));
}

/// Replicas on one bucket: each takes the other's parts, lets go of parts the compacting
/// replica merged away (taking the merged file), and keeps its own new files and its own
/// billing frontier.
#[tokio::test]
async fn replicas_take_each_others_parts_and_let_go_of_merged_ones() {
    let root = tempfile::tempdir().unwrap();
    let t = target(&format!("file://{}", root.path().join("bucket").display()));
    let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let a = Bucket::new(&t, &da, metrics.clone())
        .unwrap()
        .with_replica("a");
    let b = Bucket::new(&t, &db, metrics).unwrap().with_replica("b");
    let put = |dir: &Path, key: &str, text: &str| {
        let p = dir.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let day = "data/day=2026-01-01";
    let (a1, b1) = (
        format!("{day}/part-1-0-ra.parquet"),
        format!("{day}/part-2-0-rb.parquet"),
    );
    put(&da, &a1, "a1");
    put(&da, "billing/settled", "frontier of a");
    a.sync().await.unwrap();
    put(&db, &b1, "b1");
    put(&db, "billing/settled", "frontier of b");
    let s = b.sync().await.unwrap();
    assert_eq!((s.uploaded, s.restored), (2, 1));
    assert_eq!(std::fs::read_to_string(db.join(&a1)).unwrap(), "a1");
    assert_eq!(
        std::fs::read_to_string(db.join("billing/settled")).unwrap(),
        "frontier of b"
    );
    a.sync().await.unwrap();
    assert_eq!(std::fs::read_to_string(da.join(&b1)).unwrap(), "b1");

    // A compacts the day: one merged file replaces both parts.
    let merged = format!("{day}/part-3-c2-ra.parquet");
    put(&da, &merged, "a1 b1");
    std::fs::remove_file(da.join(&a1)).unwrap();
    std::fs::remove_file(da.join(&b1)).unwrap();
    let s = a.sync().await.unwrap();
    assert_eq!((s.uploaded, s.deleted), (1, 2));
    // B meanwhile flushed a new part of its own.
    let b2 = format!("{day}/part-4-1-rb.parquet");
    put(&db, &b2, "b2");
    b.sync().await.unwrap();
    let mut files: Vec<String> = layout::mirrored_files(&db)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("data/"))
        .collect();
    files.sort();
    assert_eq!(files, vec![merged.clone(), b2.clone()]);
    assert_eq!(std::fs::read_to_string(db.join(&merged)).unwrap(), "a1 b1");
}
