//! Sink semantics: cursors, deletion, superseding, restarts, threads.

use std::sync::Arc;

use super::*;
use crate::buffer::{BufferError, EvictReason};

#[test]
fn batch_is_deleted_only_when_every_sink_took_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["remote_write", "pushgateway"]);
    let mut buf = open(&cfg);
    let batches = realistic_batches(5, 1, 1_000);
    let ids: Vec<BatchId> = batches
        .iter()
        .map(|b| buf.append(b).expect("append"))
        .collect();
    assert_eq!(ids, (1..=5).map(BatchId).collect::<Vec<_>>());
    let mut rw = buf.reader("remote_write").expect("reader");
    let mut pg = buf.reader("pushgateway").expect("reader");

    assert_eq!(rw.ack_through(ids[2]).expect("ack"), 3);
    // pushgateway has not taken them: all five are still stored.
    assert_eq!(buf.stats().expect("stats").batches, 5);
    let got = pg.oldest(10).expect("oldest");
    assert_eq!(got.len(), 5);
    for ((id, b), (want_id, want)) in got.iter().zip(ids.iter().zip(&batches)) {
        assert_eq!(id, want_id);
        assert_same_batch(b, want);
    }
    assert_eq!(pg.ack_through(ids[1]).expect("ack"), 2);
    let s = buf.stats().expect("stats");
    assert_eq!((s.batches, s.first_id), (3, Some(ids[2])));
    assert_eq!(s.sinks[0].pending.batches, 2);
    assert_eq!(s.sinks[1].pending.batches, 3);
    assert_eq!(
        s.sinks[1].pending.oldest_timestamp_ms,
        Some(batches[2].timestamp_ms)
    );
    assert_eq!(pg.ack_through(ids[4]).expect("ack"), 3);
    assert_eq!(buf.stats().expect("stats").batches, 2);
    assert_eq!(rw.ack_through(ids[4]).expect("ack"), 2);
    let s = buf.stats().expect("stats");
    assert_eq!((s.batches, s.evicted.total()), (0, 0));
    assert_eq!(rw.pending().expect("pending").batches, 0);
}

#[test]
fn buffer_newest_and_ack_count_superseded_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = open(&config(dir.path(), &["pushgateway"]));
    let mut pg = buf.reader("pushgateway").expect("reader");
    assert!(pg.newest().expect("newest").is_none());
    let batches = realistic_batches(7, 2, 0);
    for b in &batches[..4] {
        buf.append(b).expect("append");
    }
    let (id, newest) = pg.newest().expect("newest").expect("one");
    assert_eq!(id, BatchId(4));
    assert_same_batch(&newest, &batches[3]);
    // Taking the newest covers 4 batches: 1 pushed, 3 superseded.
    assert_eq!(pg.ack_through(id).expect("ack"), 4);
    assert!(pg.newest().expect("newest").is_none());
    for b in &batches[4..] {
        buf.append(b).expect("append");
    }
    let (id, _) = pg.newest().expect("newest").expect("one");
    assert_eq!(pg.ack_through(id).expect("ack"), 3);
    // Acking again or lower covers nothing; the cursor does not move back.
    assert_eq!(pg.ack_through(id).expect("ack"), 0);
    assert_eq!(pg.ack_through(BatchId(2)).expect("ack"), 0);
    assert_eq!(buf.stats().expect("stats").batches, 0);
}

#[test]
fn buffer_restart_preserves_cursors_counters_and_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["a", "b"]);
    let batches = realistic_batches(6, 3, 0);
    {
        let mut buf = open(&cfg);
        for b in &batches[..4] {
            buf.append(b).expect("append");
        }
        buf.reader("a")
            .expect("reader")
            .ack_through(BatchId(3))
            .expect("ack");
        buf.reader("b")
            .expect("reader")
            .ack_through(BatchId(1))
            .expect("ack");
        crate::buffer::stats::count_eviction(buf.connection(), EvictReason::Cap, 7).expect("count");
    }
    let buf = open(&cfg);
    let s = buf.stats().expect("stats");
    assert_eq!(s.evicted.get(EvictReason::Cap), 7);
    assert_eq!(s.sinks[0].acked_through, BatchId(3));
    assert_eq!(s.sinks[1].acked_through, BatchId(1));
    assert_eq!(
        (s.first_id, s.last_id),
        (Some(BatchId(2)), Some(BatchId(4)))
    );
    let mut b = buf.reader("b").expect("reader");
    let got = b.oldest(10).expect("oldest");
    assert_eq!(
        got.iter().map(|(id, _)| id.0).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_same_batch(&got[0].1, &batches[1]);
    // Delete everything, restart: ids continue, never reused.
    b.ack_through(BatchId(4)).expect("ack");
    buf.reader("a")
        .expect("reader")
        .ack_through(BatchId(4))
        .expect("ack");
    drop(b);
    drop(buf);
    let mut buf = open(&cfg);
    assert_eq!(buf.stats().expect("stats").batches, 0);
    assert_eq!(buf.append(&batches[4]).expect("append"), BatchId(5));
}

#[test]
fn buffer_unconfigured_sink_does_not_block_deletion() {
    capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let batches = realistic_batches(3, 4, 0);
    {
        let mut buf = open(&config(dir.path(), &["keep", "gone"]));
        for b in &batches {
            buf.append(b).expect("append");
        }
        buf.reader("keep")
            .expect("reader")
            .ack_through(BatchId(2))
            .expect("ack");
    }
    let buf = open(&config(dir.path(), &["keep"]));
    // Batches 1 and 2 were only held back by "gone".
    let s = buf.stats().expect("stats");
    assert_eq!((s.batches, s.first_id), (1, Some(BatchId(3))));
    assert_eq!(s.sinks.len(), 1);
    let path = dir.path().join("buf.db").display().to_string();
    assert_eq!(
        logged(
            log::Level::Warn,
            &[&path, "\"gone\"", "no longer configured"]
        )
        .len(),
        1
    );
    assert!(matches!(
        buf.reader("gone"),
        Err(BufferError::UnknownSink { .. })
    ));
}

#[test]
fn buffer_new_sink_sees_the_whole_backlog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batches = realistic_batches(4, 5, 0);
    {
        let mut buf = open(&config(dir.path(), &["old"]));
        for b in &batches {
            buf.append(b).expect("append");
        }
        buf.reader("old")
            .expect("reader")
            .ack_through(BatchId(1))
            .expect("ack");
    }
    let buf = open(&config(dir.path(), &["old", "new"]));
    let mut new = buf.reader("new").expect("reader");
    let got = new.oldest(10).expect("oldest");
    assert_eq!(
        got.iter().map(|(id, _)| id.0).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(new.pending().expect("pending").batches, 3);
}

#[test]
fn buffer_ack_beyond_head_and_unknown_sink_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = open(&config(dir.path(), &["s"]));
    let mut r = buf.reader("s").expect("reader");
    match r.ack_through(BatchId(1)) {
        Err(BufferError::AckBeyondHead { id, head, .. }) => assert_eq!((id, head), (BatchId(1), 0)),
        other => panic!("expected AckBeyondHead, got {other:?}"),
    }
    buf.append(&realistic_batches(1, 6, 0)[0]).expect("append");
    assert_eq!(r.ack_through(BatchId(1)).expect("ack"), 1);
    assert!(matches!(
        r.ack_through(BatchId(2)),
        Err(BufferError::AckBeyondHead { head: 1, .. })
    ));
    assert!(matches!(buf.reader("t"), Err(BufferError::UnknownSink { sink }) if sink == "t"));
}

#[test]
fn buffer_reader_shares_one_arc_per_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = open(&config(dir.path(), &["s"]));
    for b in &realistic_batches(3, 7, 0) {
        buf.append(b).expect("append");
    }
    let mut r = buf.reader("s").expect("reader");
    let got = r.oldest(3).expect("oldest");
    let newest = r.newest().expect("newest").expect("one");
    for i in 0..got[0].1.samples.len() {
        assert!(Arc::ptr_eq(
            &got[0].1.samples[i].series,
            &got[2].1.samples[i].series
        ));
        assert!(Arc::ptr_eq(
            &got[1].1.samples[i].series,
            &newest.1.samples[i].series
        ));
    }
}

#[test]
fn buffer_reader_and_writer_work_from_different_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = open(&config(dir.path(), &["rw", "pg"]));
    let batches = realistic_batches(300, 8, 0);
    let expected = batches.clone();
    let mut rw = buf.reader("rw").expect("reader");
    let mut pg = buf.reader("pg").expect("reader");
    let rw_thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let got = rw.oldest(50).expect("oldest");
            match got.last() {
                Some((last, _)) => {
                    rw.ack_through(*last).expect("ack");
                }
                None => std::thread::yield_now(),
            }
            seen.extend(got);
        }
        for (i, (id, b)) in seen.iter().enumerate() {
            assert_eq!(id.0, i as i64 + 1);
            assert_same_batch(b, &expected[i]);
        }
        seen.len()
    });
    let pg_thread = std::thread::spawn(move || {
        let mut covered = 0;
        while covered < 300 {
            match pg.newest().expect("newest") {
                Some((id, _)) => covered += pg.ack_through(id).expect("ack"),
                None => std::thread::yield_now(),
            }
        }
        covered
    });
    for b in &batches {
        buf.append(b).expect("append");
    }
    assert_eq!(rw_thread.join().expect("rw thread"), 300);
    assert_eq!(pg_thread.join().expect("pg thread"), 300);
    let s = buf.stats().expect("stats");
    assert_eq!((s.batches, s.evicted.total()), (0, 0));
}

#[test]
fn buffer_reader_skips_a_damaged_batch_and_logs_it() {
    capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = open(&config(dir.path(), &["s"]));
    let batches = realistic_batches(3, 9, 0);
    for b in &batches {
        buf.append(b).expect("append");
    }
    buf.connection()
        .execute("UPDATE batches SET payload = x'05ff' WHERE id = 2", [])
        .expect("damage");
    let mut r = buf.reader("s").expect("reader");
    let got = r.oldest(10).expect("oldest");
    assert_eq!(got.iter().map(|(id, _)| id.0).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(r.skipped_corrupt(), 1);
    let path = dir.path().join("buf.db").display().to_string();
    assert_eq!(
        logged(log::Level::Error, &[&path, "skips batch 2"]).len(),
        1
    );
    // Acking past it covers it.
    assert_eq!(r.ack_through(BatchId(3)).expect("ack"), 3);
}

#[test]
fn buffer_decodes_special_values_bit_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = open(&config(dir.path(), &["s"]));
    let mut b = Batch::new(-5);
    let values = [
        0.0,
        -0.0,
        f64::NAN,
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE / 3.0,
        f64::MAX,
        -1e300,
        0.1 + 0.2,
        123.456,
        9_007_199_254_740_993.0,
    ];
    for (i, v) in values.iter().enumerate() {
        b.push(series("special", i as u32), *v);
    }
    // The same series twice in one batch, out of order.
    b.push(series("special", 3), 1.0);
    let s = Arc::new(Series::new("c", MetricKind::Counter, Labels::new()));
    b.push(Arc::clone(&s), 7.0);
    b.push(s, 8.0);
    buf.append(&b).expect("append");
    let got = buf
        .reader("s")
        .expect("reader")
        .newest()
        .expect("newest")
        .expect("one")
        .1;
    assert_same_batch(&got, &b);
}

#[test]
fn buffer_writer_and_readers_are_send() {
    fn is_send<T: Send>() {}
    is_send::<Buffer>();
    is_send::<SinkReader>();
}

#[test]
fn open_refuses_a_second_writer_on_the_same_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("b.db");
    let first = Buffer::open(BufferConfig::new(&path, ["pushgateway"])).expect("first");
    let err = Buffer::open(BufferConfig::new(&path, ["pushgateway"])).expect_err("second writer");
    assert!(matches!(err, BufferError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another writer"),
        "{err}"
    );
    drop(first);
    Buffer::open(BufferConfig::new(&path, ["pushgateway"])).expect("free again after drop");
}
