//! A corrupt or unreadable file at start is moved aside and a fresh buffer starts.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::*;

/// A buffer file with `n` realistic batches, closed (checkpointed).
fn filled(dir: &Path, n: usize) -> BufferConfig {
    let cfg = config(dir, &["s"]);
    let mut buf = open(&cfg);
    for b in &realistic_batches(n, 11, 0) {
        buf.append(b).expect("append");
    }
    drop(buf);
    assert!(
        !super::super::schema::sidecar(&cfg.path, "-wal").exists(),
        "closed cleanly"
    );
    cfg
}

/// Opens, expects the file to have been moved aside, checks the moved file,
/// the log line and that the fresh buffer works. Returns the moved path.
fn expect_moved_aside(cfg: &BufferConfig, original: &[u8], reasons: &[&str]) -> PathBuf {
    capture_logs();
    let mut buf = open(cfg);
    let moved = buf.recovered_from().expect("moved aside").to_path_buf();
    let name = moved
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let ts = name
        .strip_prefix("buf.db.corrupt-")
        .expect("NAME.corrupt-<ts>");
    assert!(ts.parse::<u64>().is_ok(), "unix timestamp in {name}");
    assert_eq!(moved.parent(), cfg.path.parent());
    assert!(
        std::fs::read(&moved).expect("moved file") == original,
        "moved unchanged"
    );
    let path = cfg.path.display().to_string();
    let moved_s = moved.display().to_string();
    let lines: Vec<String> = logged(log::Level::Error, &[&path, &moved_s])
        .into_iter()
        .filter(|l| reasons.iter().any(|r| l.contains(r)))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one error line naming path, target and one of {reasons:?}; logged: {:?}",
        logged(log::Level::Error, &[&path])
    );
    // The fresh buffer is empty and works.
    let s = buf.stats().expect("stats");
    assert_eq!((s.batches, s.evicted.total()), (0, 0));
    let b = &realistic_batches(1, 12, 0)[0];
    assert_eq!(buf.append(b).expect("append"), BatchId(1));
    let mut r = buf.reader("s").expect("reader");
    assert_same_batch(&r.newest().expect("newest").expect("one").1, b);
    drop(r);
    drop(buf);
    assert_eq!(integrity_check(&cfg.path), "ok");
    assert!(
        open(cfg).recovered_from().is_none(),
        "the fresh file is fine"
    );
    moved
}

#[test]
fn open_moves_aside_file_when_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["s"]);
    let mut state = 0x1234_5678u64;
    let garbage: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(&cfg.path, &garbage).expect("write");
    std::fs::write(
        super::super::schema::sidecar(&cfg.path, "-wal"),
        b"junk wal",
    )
    .expect("write");
    expect_moved_aside(&cfg, &garbage, &["not a SQLite database"]);
    // SQLite discards a WAL whose header is invalid (it holds no commit); the
    // fresh buffer must not have inherited it.
    let wal = super::super::schema::sidecar(&cfg.path, "-wal");
    assert!(std::fs::read(&wal).map_or(true, |w| w != b"junk wal"));
}

#[test]
fn open_moves_aside_file_when_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = filled(dir.path(), 600);
    let bytes = std::fs::read(&cfg.path).expect("read");
    let cut = bytes.len() / 2 + 100;
    std::fs::write(&cfg.path, &bytes[..cut]).expect("truncate");
    expect_moved_aside(&cfg, &bytes[..cut], &["malformed", "quick_check failed"]);
}

#[test]
fn open_moves_aside_file_when_foreign_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["s"]);
    {
        let conn = rusqlite::Connection::open(&cfg.path).expect("open");
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'x');")
            .expect("foreign schema");
    }
    let bytes = std::fs::read(&cfg.path).expect("read");
    expect_moved_aside(&cfg, &bytes, &["foreign schema"]);
}

#[test]
fn open_moves_aside_file_when_schema_version_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = filled(dir.path(), 3);
    {
        let conn = rusqlite::Connection::open(&cfg.path).expect("open");
        conn.pragma_update(None, "user_version", 99)
            .expect("version");
        conn.pragma_update(None, "journal_mode", "DELETE")
            .expect("checkpoint");
    }
    let bytes = std::fs::read(&cfg.path).expect("read");
    expect_moved_aside(&cfg, &bytes, &["schema version 99"]);
}

#[test]
fn open_moves_aside_file_when_page_corrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = filled(dir.path(), 600);
    let len = std::fs::metadata(&cfg.path).expect("meta").len();
    let pages = len / 4096;
    assert!(pages > 20, "{pages} pages");
    let page = pages / 2;
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&cfg.path)
            .expect("open");
        f.seek(SeekFrom::Start(page * 4096)).expect("seek");
        f.write_all(&[0xA5; 12]).expect("flip header bytes");
    }
    let bytes = std::fs::read(&cfg.path).expect("read");
    expect_moved_aside(&cfg, &bytes, &["malformed", "quick_check failed"]);
}

#[test]
fn open_moves_aside_file_when_header_too_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = filled(dir.path(), 3);
    let bytes = std::fs::read(&cfg.path).expect("read");
    std::fs::write(&cfg.path, &bytes[..40]).expect("truncate");
    expect_moved_aside(&cfg, &bytes[..40], &["not a SQLite database", "malformed"]);
}

#[test]
fn buffer_open_accepts_an_empty_file_and_a_missing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["s"]);
    std::fs::write(&cfg.path, b"").expect("empty file");
    let mut buf = open(&cfg);
    assert!(buf.recovered_from().is_none());
    buf.append(&realistic_batches(1, 13, 0)[0]).expect("append");
    let mut nested = config(&dir.path().join("a/b"), &[]);
    nested.max_bytes = super::super::MIN_MAX_BYTES;
    assert!(open(&nested).recovered_from().is_none());
}

#[test]
fn buffer_move_aside_takes_wal_and_shm_along() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("buf.db");
    let sidecar = super::super::schema::sidecar;
    std::fs::write(&path, b"main").expect("write");
    std::fs::write(sidecar(&path, "-wal"), b"wal").expect("write");
    std::fs::write(sidecar(&path, "-shm"), b"shm").expect("write");
    let first = super::super::schema::move_aside(&path).expect("move");
    std::fs::write(&path, b"again").expect("write");
    let second = super::super::schema::move_aside(&path).expect("move");
    assert_ne!(
        first, second,
        "a second corruption in the same second gets its own name"
    );
    assert_eq!(std::fs::read(&first).expect("main"), b"main");
    assert_eq!(std::fs::read(sidecar(&first, "-wal")).expect("wal"), b"wal");
    assert_eq!(std::fs::read(sidecar(&first, "-shm")).expect("shm"), b"shm");
    assert_eq!(std::fs::read(&second).expect("main"), b"again");
    assert!(!path.exists() && !sidecar(&path, "-wal").exists() && !sidecar(&path, "-shm").exists());
}
