//! The size cap, the disk-full path and the on-disk size per sample.

use super::*;
use crate::buffer::{BufferError, CAP_SLACK_BYTES, EvictReason, MIN_MAX_BYTES};

#[test]
fn cap_of_1mib_without_acks_holds_and_counts_every_eviction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &["down"]);
    cfg.max_bytes = 1 << 20;
    let n = 4000;
    let batches = realistic_batches(n, 21, 1_700_000_000_000);
    let mut buf = open(&cfg);
    let mut largest = 0;
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(
            buf.append(b).expect("append never fails at the cap"),
            BatchId(i as i64 + 1)
        );
        let size = file_set(&cfg.path);
        largest = largest.max(size);
        assert!(
            size <= cfg.max_bytes + CAP_SLACK_BYTES,
            "after {} appends the file set is {size} bytes, cap {} + slack {CAP_SLACK_BYTES}",
            i + 1,
            cfg.max_bytes
        );
    }
    let s = buf.stats().expect("stats");
    eprintln!(
        "1 MiB cap: {} of {n} batches kept, largest file set {largest} bytes, evicted {}",
        s.batches, s.evicted.cap
    );
    assert!(s.evicted.cap > 0, "the cap was reached");
    assert_eq!(
        s.evicted.cap,
        n as u64 - s.batches,
        "every batch gone was counted"
    );
    assert_eq!(s.evicted.get(EvictReason::DiskFull), 0);
    assert_eq!(s.last_id, Some(BatchId(n as i64)));
    assert_eq!(s.first_id, Some(BatchId(n as i64 - s.batches as i64 + 1)));
    assert!(
        s.batches > 500,
        "a 1 MiB cap holds a useful backlog: {}",
        s.batches
    );
    assert_eq!(s.sinks[0].pending.batches, s.batches);
    // The sink sees exactly the newest `batches`, intact.
    let mut r = buf.reader("down").expect("reader");
    let got = read_all(&mut r);
    assert_eq!(got.len() as u64, s.batches);
    let first = n - got.len();
    for (k, (id, b)) in got.iter().enumerate() {
        assert_eq!(id.0 as usize, first + k + 1);
        assert_same_batch(b, &batches[first + k]);
    }
    drop(r);
    drop(buf);
    assert_eq!(integrity_check(&cfg.path), "ok");
    let buf = open(&cfg);
    assert_eq!(
        buf.stats().expect("stats").evicted.cap,
        s.evicted.cap,
        "counter persisted"
    );
}

#[test]
fn buffer_draining_gives_space_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &["s"]);
    cfg.max_bytes = 2 << 20;
    let batches = realistic_batches(2200, 22, 0);
    let mut buf = open(&cfg);
    for b in &batches[..2000] {
        buf.append(b).expect("append");
    }
    let full = file_set(&cfg.path);
    let mut r = buf.reader("s").expect("reader");
    r.ack_through(buf.head()).expect("ack");
    for b in &batches[2000..] {
        buf.append(b).expect("append");
    }
    let (pages, free) = super::super::writer::page_counts(buf.connection()).expect("pages");
    assert!(
        pages * 4096 < full / 2,
        "after a drain the file shrinks: {pages} pages ({free} free), was {full} bytes"
    );
}

#[test]
fn buffer_evicts_the_oldest_and_keeps_appending_when_the_file_cannot_grow() {
    capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["s"]);
    let mut buf = open(&cfg);
    let batches = realistic_batches(400, 23, 0);
    for b in &batches[..50] {
        buf.append(b).expect("append");
    }
    // Freeze the file at its current size: SQLite then reports SQLITE_FULL,
    // as on a full disk.
    let pages: i64 = buf
        .connection()
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .expect("page_count");
    buf.connection()
        .pragma_update(None, "max_page_count", pages)
        .expect("max_page_count");
    for (i, b) in batches[50..].iter().enumerate() {
        if let Err(e) = buf.append(b) {
            panic!("append {} failed on the frozen file: {e}", 50 + i);
        }
    }
    let s = buf.stats().expect("stats");
    assert!(s.evicted.disk_full > 0, "{s:?}");
    let path = cfg.path.display().to_string();
    // One WARN per episode (a slow machine may see the free-space probe end
    // one, as the file system itself has room).
    assert!(!logged(log::Level::Warn, &[&path, "disk full"]).is_empty());
    // The newest are kept, ids stay contiguous.
    let got = read_all(&mut buf.reader("s").expect("reader"));
    assert!(got.windows(2).all(|w| w[1].0.0 == w[0].0.0 + 1));
    assert_eq!(got.len() as u64, s.batches);
    assert_eq!(got.last().map(|g| g.0), Some(buf.head()));
    assert!(got.len() < 400, "the oldest were evicted");
}

#[test]
fn buffer_refuses_batches_that_cannot_fit_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &["s"]);
    cfg.max_bytes = MIN_MAX_BYTES;
    let mut buf = open(&cfg);
    let mut b = Batch::new(0);
    let s = series("big", 0);
    for i in 0..20_000u64 {
        b.push(Arc::clone(&s), f64::from_bits(0x4000_0000_0000_0000 | i));
    }
    assert!(matches!(
        buf.append(&b),
        Err(BufferError::BatchTooLarge { .. })
    ));
    assert_eq!(
        buf.append(&realistic_batches(1, 24, 0)[0]).expect("append"),
        BatchId(1)
    );
}

#[test]
fn bytes_per_sample_on_disk_is_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["s"]);
    let batches = realistic_batches(3600, 25, 1_700_000_000_000);
    let samples: usize = batches.iter().map(Batch::len).sum();
    let mut buf = open(&cfg);
    for b in &batches {
        buf.append(b).expect("append");
    }
    drop(buf);
    let bytes = file_set(&cfg.path);
    let per_sample = bytes as f64 / samples as f64;
    eprintln!(
        "3600 batches, {samples} samples: {bytes} bytes on disk, {per_sample:.2} bytes/sample"
    );
    assert!(per_sample <= 32.0, "{per_sample} bytes per sample");
}

#[test]
fn wal_is_checkpointed_off_the_sampling_thread_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &["down"]);
    cfg.max_bytes = 1 << 20; // WAL limit 128 KiB: 32 frames, the thread woken at 16
    let batches = realistic_batches(400, 23, 1_700_000_000_000);
    let mut buf = open(&cfg);
    let mut it = batches.iter();
    // Append until the WAL passes half its limit: that commit wakes the thread.
    while buf.wal_counts().0 < 16 {
        buf.append(it.next().expect("enough batches"))
            .expect("append");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while buf.wal_counts().2 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint within 30 s: {:?}",
            buf.wal_counts()
        );
        std::thread::yield_now();
    }
    // The checkpoint was complete (nothing appended meanwhile), so the next
    // commit writes from the WAL's start again.
    buf.append(it.next().expect("enough batches"))
        .expect("append");
    let (frames, inline, background) = buf.wal_counts();
    assert!(
        frames < 16,
        "WAL restarted after the checkpoint: {frames} frames"
    );
    assert_eq!(inline, 0, "no commit checkpointed inline");
    assert!(background >= 1);
    drop(buf);
    assert_eq!(integrity_check(&cfg.path), "ok");
}
