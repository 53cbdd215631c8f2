//! The disk reserve and the disk-full episode: room held on the buffer's file
//! system so that a full disk can still evict the oldest batches and keep the
//! newest.
//!
//! # Design note
//!
//! SQLite needs free space to delete: a `DELETE` writes WAL frames, and a
//! checkpoint writes the main file, growing it by the pages the WAL added.
//! On a full file system both fail, so without room held in advance a full
//! disk drops every new tick while the oldest batches stay: the opposite of
//! "evict the oldest".
//!
//! - **Reserve.** At open the writer allocates `NAME.reserve`
//!   ([`reserve_path`]) with `posix_fallocate`: `wal_limit + append_margin`
//!   bytes of the cap plan (192 KiB ..= 8 MiB), enough for the WAL to reach
//!   its bound and for the checkpoint to copy it into the main file. It lies
//!   outside the cap's file set: the buffer's disk use is at most
//!   `max_bytes + CAP_SLACK_BYTES + reserve`.
//! - **Episode.** The first append that fails with `SQLITE_FULL` starts a
//!   disk-full episode: the reserve is deleted (its room goes to the WAL and
//!   the checkpoint), the oldest batches are evicted (reason `disk_full`) and
//!   the append is retried. While the episode lasts, every append first
//!   evicts the oldest batches until the main file's free list holds the new
//!   batch (so the main file never grows and the WAL cycles in place), and
//!   gives no pages back to the file system.
//! - **Recovery.** Once a second, while the episode lasts, the writer reads
//!   the file system's free space (`statvfs`); when it holds twice the
//!   reserve, the reserve is allocated again and the episode ends.
//! - **Logging.** One `WARN` when the episode starts, one `INFO` when it
//!   ends, and in between at most one summary line every
//!   [`SUMMARY_EVERY`] (batches evicted and dropped, bytes free).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most often a disk-full episode logs its summary line.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// How often an episode checks whether the file system has room again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The reserve file of the buffer at `db`: `NAME.reserve`.
pub fn reserve_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".reserve");
    PathBuf::from(name)
}

/// Bytes available to an unprivileged writer on the file system holding
/// `path` (`statvfs`: `f_bavail × f_frsize`).
///
/// # Errors
/// The `statvfs` error (a missing directory, a path with a NUL byte).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // `fsblkcnt_t` and `c_ulong` are 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let (avail, frsize) = (st.f_bavail as u64, st.f_frsize as u64);
    Ok(avail.saturating_mul(frsize))
}

/// The reserve file: held (allocated on disk) or released.
#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
    held: bool,
}

impl Reserve {
    /// Allocates the reserve next to `db` (an existing one of the right size
    /// is kept). `held` is false when the file system has no room for it;
    /// other I/O errors too are reported, not fatal: the buffer works
    /// without a reserve, it only cannot evict on a full disk.
    pub(crate) fn take(db: &Path, bytes: u64) -> (Reserve, Option<io::Error>) {
        let mut r = Reserve {
            path: reserve_path(db),
            bytes,
            held: false,
        };
        let err = r.allocate().err();
        (r, err)
    }

    /// Its size in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the reserve is allocated on disk.
    #[cfg(test)]
    pub(crate) fn held(&self) -> bool {
        self.held
    }

    /// (Re)allocates the file; on failure nothing is left behind.
    pub(crate) fn allocate(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        let len = libc::off_t::try_from(self.bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "reserve too large"))?;
        // SAFETY: a valid open descriptor; offsets are in range.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != 0 {
            drop(file);
            let _ = std::fs::remove_file(&self.path);
            self.held = false;
            return Err(io::Error::from_raw_os_error(rc));
        }
        file.set_len(self.bytes)?;
        self.held = true;
        Ok(())
    }

    /// Deletes the file, giving its room to the buffer. True if it was held.
    pub(crate) fn release(&mut self) -> bool {
        if !self.held {
            return false;
        }
        self.held = false;
        match std::fs::remove_file(&self.path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => {
                log::warn!(
                    "buffer reserve {}: cannot delete it: {e}",
                    self.path.display()
                );
                false
            }
        }
    }
}

/// A disk-full episode: from the first `SQLITE_FULL` to the reserve's
/// return.
#[derive(Debug)]
pub(crate) struct Episode {
    pub(crate) since: Instant,
    last_summary: Instant,
    last_probe: Instant,
    /// Batches evicted and appends dropped during the whole episode.
    pub(crate) evicted: u64,
    pub(crate) dropped: u64,
    evicted_at_summary: u64,
    dropped_at_summary: u64,
}

impl Episode {
    pub(crate) fn start() -> Episode {
        let now = Instant::now();
        Episode {
            since: now,
            last_summary: now,
            last_probe: now,
            evicted: 0,
            dropped: 0,
            evicted_at_summary: 0,
            dropped_at_summary: 0,
        }
    }

    /// Whether to check the free space now (at most once per
    /// `PROBE_EVERY`).
    pub(crate) fn probe_due(&mut self) -> bool {
        if self.last_probe.elapsed() < PROBE_EVERY {
            return false;
        }
        self.last_probe = Instant::now();
        true
    }

    /// `(evicted, dropped)` since the last summary, when one is due.
    pub(crate) fn summary_due(&mut self) -> Option<(u64, u64)> {
        if self.last_summary.elapsed() < SUMMARY_EVERY {
            return None;
        }
        self.last_summary = Instant::now();
        let d = (
            self.evicted - self.evicted_at_summary,
            self.dropped - self.dropped_at_summary,
        );
        self.evicted_at_summary = self.evicted;
        self.dropped_at_summary = self.dropped;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_allocated_released_and_taken_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("b.db");
        let (mut r, err) = Reserve::take(&db, 64 << 10);
        assert!(err.is_none(), "{err:?}");
        assert!(r.held());
        let path = reserve_path(&db);
        assert_eq!(std::fs::metadata(&path).expect("reserve").len(), 64 << 10);
        assert!(r.release());
        assert!(!path.exists());
        assert!(!r.release(), "releasing twice frees nothing");
        r.allocate().expect("again");
        assert!(r.held() && path.exists());
    }

    #[test]
    fn free_bytes_reads_the_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).expect("statvfs") > 0);
        assert!(free_bytes(&dir.path().join("missing/dir")).is_err());
    }
}
