//! A full disk keeps the newest data (issue 17): the exporter's buffer on a
//! real 1 MiB tmpfs, sampling 8 simulated GPUs at 50 Hz with its sink
//! unreachable, fills the file system by itself; it stays full for 30 s of
//! ticks (1 500 commits), then the file system grows and the buffer
//! recovers on its own.
//!
//! Checked: every tick of the full window is committed (none dropped), the
//! oldest batches are evicted and the newest kept (stored ids are contiguous
//! up to the newest), at most 5 log lines about the disk, recovery without a
//! restart, and the file passes `PRAGMA integrity_check` afterwards.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN): without it the test fails
//! saying so.

mod support;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aif_testbed::{free_port, metric_value, wait_until};
use support::Exporter;

/// A tmpfs mounted on a fresh directory; unmounted (lazily) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        mount_tmpfs(dir.path(), size, false).unwrap_or_else(|e| {
            panic!(
                "mounting a {size} tmpfs on {} failed: {e}; this test needs root \
                 (CAP_SYS_ADMIN) to make a real small file system",
                dir.path().display()
            )
        });
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Gives the file system more room (`mount -o remount,size=…`).
    fn grow(&self, size: &str) {
        mount_tmpfs(self.path(), size, true).expect("remount the tmpfs bigger");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let c = CString::new(self.path().as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: umount2(2) on a path we mounted.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_tmpfs(at: &Path, size: &str, remount: bool) -> std::io::Result<()> {
    let target = CString::new(at.as_os_str().as_encoded_bytes())?;
    let fstype = CString::new("tmpfs")?;
    let data = CString::new(format!("size={size},mode=0700"))?;
    let flags = if remount { libc::MS_REMOUNT } else { 0 };
    // SAFETY: valid C strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn free_bytes(p: &Path) -> u64 {
    gpu_metrics::buffer::free_bytes(p).expect("statvfs")
}

fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(text, name, labels).unwrap_or(0.0)
}

/// Log lines about the disk or dropped batches.
fn disk_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("disk") || l.contains("dropped") || l.contains("reserve")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn a_full_disk_evicts_the_oldest_keeps_the_newest_and_recovers_by_itself() {
    let fs = Tmpfs::mount("1m");
    let buffer: PathBuf = fs.path().join("buffer.db");
    let port = free_port();
    let listen = format!("127.0.0.1:{}", free_port());
    let logs = tempfile::tempdir().expect("tempdir");
    let mut exp = Exporter::start(
        logs.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "8",
            "--interval",
            "20ms",
            "--buffer",
            buffer.to_str().expect("utf-8"),
            "--buffer-max-bytes",
            "1MiB",
            // Nothing listens there: the sink never takes a batch.
            "--pushgateway",
            &format!("http://127.0.0.1:{port}"),
            "--instance",
            "df-test",
            "--listen",
            &listen,
        ],
    );
    let reserve = gpu_metrics::buffer::reserve_path(&buffer);
    assert!(
        wait_until(Duration::from_secs(10), || reserve.exists()),
        "the reserve {} is allocated at start",
        reserve.display()
    );

    // The buffer fills the file system by itself.
    assert!(
        wait_until(Duration::from_secs(120), || exp
            .log_text()
            .contains("disk full")),
        "the disk never filled: {} bytes free",
        free_bytes(fs.path())
    );
    let full_at = Instant::now();
    let m = exp.scrape();
    let committed_at_fill = counter(&m, "aif_exporter_samples_committed_total", &[]);
    let first_id_at_fill: i64 = rusqlite::Connection::open(&buffer)
        .and_then(|c| c.query_row("SELECT min(id) FROM batches", [], |r| r.get(0)))
        .expect("read the buffer while it runs");
    println!(
        "disk full after {committed_at_fill} commits; {} bytes free, reserve released: {}",
        free_bytes(fs.path()),
        !reserve.exists()
    );

    // 30 s of ticks at 50 Hz on the full disk, every one committed.
    let mut m = String::new();
    assert!(
        wait_until(Duration::from_secs(90), || {
            m = exp.scrape();
            counter(&m, "aif_exporter_samples_committed_total", &[]) >= committed_at_fill + 1500.0
        }),
        "1 500 ticks were not committed on the full disk: {m}"
    );
    let full_for = full_at.elapsed();
    let free_while_full = free_bytes(fs.path());
    let evicted_while_full = counter(
        &m,
        "aif_exporter_evicted_batches_total",
        &[("reason", "disk_full")],
    );
    assert!(
        free_while_full < 2 * 256 * 1024,
        "the file system was really full: {free_while_full} bytes free"
    );
    assert!(evicted_while_full > 0.0, "oldest batches evicted: {m}");

    // Space returns: the exporter notices by itself.
    let grown_at = Instant::now();
    fs.grow("8m");
    assert!(
        wait_until(Duration::from_secs(15), || exp
            .log_text()
            .contains("disk has room again")),
        "no recovery within 15 s of the file system growing"
    );
    let recovery = grown_at.elapsed();
    assert!(reserve.exists(), "the reserve is taken back");
    let before_stop = counter(&exp.scrape(), "aif_exporter_samples_committed_total", &[]);
    assert!(
        wait_until(Duration::from_secs(10), || counter(
            &exp.scrape(),
            "aif_exporter_samples_committed_total",
            &[]
        ) >= before_stop + 50.0),
        "commits go on after the recovery"
    );
    let m = exp.scrape();
    let taken = counter(&m, "aif_exporter_samples_total", &[]);
    let committed = counter(&m, "aif_exporter_samples_committed_total", &[]);
    let dropped = counter(
        &m,
        "aif_exporter_dropped_batches_total",
        &[("reason", "disk_full")],
    );
    assert!(exp.terminate().success());

    let log = exp.log_text();
    let lines = disk_lines(&log);
    println!(
        "full for {:.1} s; evicted {evicted_while_full} while full; dropped {dropped}; ticks taken {taken}, \
         committed {committed}; recovery {:.2} s after the file system grew; {} log lines about it:\n{}",
        full_for.as_secs_f64(),
        recovery.as_secs_f64(),
        lines.len(),
        lines.join("\n")
    );
    assert_eq!(dropped, 0.0, "no tick dropped: the oldest made room");
    assert!(
        committed >= taken - 1.0 && committed <= taken,
        "taken {taken} vs committed {committed}"
    );
    assert!(
        lines.len() <= 5,
        "at most 5 log lines about the full disk, got {}",
        lines.len()
    );

    let conn = rusqlite::Connection::open(&buffer).expect("open the buffer");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let (min, max, count): (i64, i64, i64) = conn
        .query_row("SELECT min(id), max(id), count(*) FROM batches", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("batch range");
    let head: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'batches'",
            [],
            |r| r.get(0),
        )
        .expect("head");
    println!(
        "stored batches {min}..={max} ({count}), head {head}, oldest at the fill {first_id_at_fill}"
    );
    assert_eq!(max, head, "the newest batch is kept");
    assert_eq!(count, max - min + 1, "stored ids are contiguous");
    assert!(
        min > first_id_at_fill,
        "the batches stored when the disk filled were evicted first ({min} > {first_id_at_fill})"
    );
    let persisted: i64 = conn
        .query_row(
            "SELECT value FROM counters WHERE name = 'evicted_disk_full'",
            [],
            |r| r.get(0),
        )
        .expect("eviction counter");
    assert!(persisted > 0);
    drop(conn);
    // The library opens it as a healthy buffer (not moved aside).
    let mut cfg = gpu_metrics::buffer::BufferConfig::new(buffer.clone(), ["pushgateway"]);
    cfg.max_bytes = 1 << 20;
    let buf = gpu_metrics::buffer::Buffer::open(cfg).expect("reopen");
    assert!(buf.recovered_from().is_none());
}
