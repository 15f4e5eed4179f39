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
