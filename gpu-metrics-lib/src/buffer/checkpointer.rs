//! The checkpointer: WAL checkpoints off the sampling thread.
//!
//! SQLite's own `wal_autocheckpoint` runs the checkpoint inside the commit
//! that crosses the threshold: that commit copies the WAL into the main file
//! and fsyncs both before it returns, which for a sampler means one tick in
//! every few hundred waits for tens of milliseconds (measured while a sink
//! acked a day-long backlog: the late ticks were those commits). Here the
//! writer's connection has a WAL hook instead ([`WalHook`]):
//!
//! - after every commit the hook sees the WAL's frame count; at half the WAL
//!   limit ([`CapPlan::wal_pages`]) it wakes the checkpointer thread, which
//!   runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection. A passive
//!   checkpoint takes no write lock: the sampler goes on appending meanwhile,
//!   and the next write after a complete checkpoint restarts the WAL from its
//!   beginning (truncated to `journal_size_limit`);
//! - at the full limit, if the thread fell behind, the hook checkpoints inline
//!   exactly as SQLite's autocheckpoint would, so the cap's bound on the WAL
//!   (see the module documentation, *Size*) holds whatever the thread does.
//!
//! Readers keep `wal_autocheckpoint = 0` and, after a large ack (or the
//! first in 30 s), wake the same thread ([`CheckpointRequest`]): checkpoints
//! run in one place, never inside the write gate, one at a time.

use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, ffi};

use super::config::{BufferConfig, CapPlan};
use super::error::BufferError;
use super::schema;

/// Stack of the checkpointer thread: a checkpoint needs little.
const STACK_BYTES: usize = 256 << 10;

#[derive(Debug, Default)]
struct Signal {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while a background checkpoint runs; an inline one waits for it.
    running: Mutex<()>,
    /// Background checkpoints run so far.
    done: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    requested: bool,
    stop: bool,
}

impl Signal {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn request(&self) {
        let mut s = self.lock();
        if !s.requested {
            s.requested = true;
            self.wake.notify_one();
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }
}

/// Wakes the checkpointer thread; cheap to clone, harmless once the thread
/// has stopped.
#[derive(Clone)]
pub(crate) struct CheckpointRequest(Arc<Signal>);

impl CheckpointRequest {
    /// Asks for a background checkpoint (coalesced with one pending).
    pub(crate) fn request(&self) {
        self.0.request();
    }
}

/// The thread that runs passive checkpoints when the writer's hook asks.
/// Stopped and joined on drop.
pub(crate) struct Checkpointer {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection and starts its thread.
    pub(crate) fn start(config: &BufferConfig, plan: &CapPlan) -> Result<Self, BufferError> {
        let path = config.path.clone();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| BufferError::sqlite(&path, "open checkpointer", e))?;
        schema::configure(&conn, &path, config.durability, plan)?;
        let signal = Arc::new(Signal::default());
        let s = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("buffer-checkpoint".into())
            .stack_size(STACK_BYTES)
            .spawn(move || run(&conn, &path, &s))
            .map_err(|source| BufferError::Io {
                path: config.path.clone(),
                op: "start checkpointer thread",
                source,
            })?;
        Ok(Checkpointer {
            signal,
            thread: Some(thread),
        })
    }
}

impl Checkpointer {
    /// A handle that wakes this thread (for the readers, after large acks).
    pub(crate) fn requester(&self) -> CheckpointRequest {
        CheckpointRequest(Arc::clone(&self.signal))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, path: &Path, signal: &Signal) {
    // A full disk fails every checkpoint until the writer has made room
    // (`reserve.rs`): one WARN, the rest at debug until one succeeds.
    let mut full_logged = false;
    loop {
        {
            let mut s = signal.lock();
            while !s.requested && !s.stop {
                s = signal.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.requested = false;
        }
        let _running = signal.running.lock().unwrap_or_else(|p| p.into_inner());
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((busy, frames, copied)) => {
                full_logged = false;
                signal.done.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "buffer {}: checkpoint: {copied} of {frames} WAL frames copied{}",
                    path.display(),
                    if busy != 0 { " (busy)" } else { "" }
                );
            }
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
                if full_logged {
                    log::debug!(
                        "buffer {}: background checkpoint failed: {e}",
                        path.display()
                    );
                } else {
                    log::warn!(
                        "buffer {}: background checkpoint failed: {e} (further disk-full failures \
                         logged at debug until one succeeds)",
                        path.display()
                    );
                    full_logged = true;
                }
            }
            Err(e) => log::warn!(
                "buffer {}: background checkpoint failed: {e}",
                path.display()
            ),
        }
    }
}

/// What the writer connection's WAL hook needs: its thresholds and the
/// checkpointer to wake. Boxed by [`WalHook::install`] so that its address,
/// handed to SQLite, stays fixed; uninstalled on drop.
pub(crate) struct WalHook {
    db: *mut ffi::sqlite3,
    ctx: *mut HookContext,
}

struct HookContext {
    /// Frames at which the checkpointer is woken.
    soft: c_int,
    /// Frames at which the commit checkpoints inline (the WAL limit).
    hard: c_int,
    signal: Arc<Signal>,
    path: PathBuf,
    /// The WAL's frame count after the last commit.
    frames: AtomicI32,
    /// Checkpoints the hook ran inline.
    inline: AtomicU64,
}

// SAFETY: the raw pointers are the writer's own connection (owned by the same
// `Buffer`, which moves between threads as a whole) and a context only the
// hook reads; nothing is shared with another thread but the `Arc<Signal>`.
unsafe impl Send for WalHook {}

impl WalHook {
    /// Installs the hook on `conn` (the writer's connection), in the place of
    /// SQLite's autocheckpoint (which is this same hook, and off here).
    ///
    /// # Safety
    /// The returned value must be dropped before `conn` is closed.
    pub(crate) unsafe fn install(
        conn: &Connection,
        plan: &CapPlan,
        checkpointer: &Checkpointer,
        path: &Path,
    ) -> WalHook {
        let hard = c_int::try_from(plan.wal_pages())
            .unwrap_or(c_int::MAX)
            .max(2);
        let ctx = Box::into_raw(Box::new(HookContext {
            soft: hard / 2,
            hard,
            signal: Arc::clone(&checkpointer.signal),
            path: path.to_path_buf(),
            frames: AtomicI32::new(0),
            inline: AtomicU64::new(0),
        }));
        // SAFETY: `conn.handle()` is a live connection; `ctx` lives until
        // `drop`, which unregisters the hook first.
        let db = unsafe { conn.handle() };
        unsafe { ffi::sqlite3_wal_hook(db, Some(hook), ctx.cast()) };
        WalHook { db, ctx }
    }

    /// `(WAL frames after the last commit, inline checkpoints, background
    /// checkpoints)`, for tests.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (i32, u64, u64) {
        // SAFETY: `ctx` lives as long as `self`.
        let ctx = unsafe { &*self.ctx };
        (
            ctx.frames.load(Ordering::Relaxed),
            ctx.inline.load(Ordering::Relaxed),
            ctx.signal.done.load(Ordering::Relaxed),
        )
    }
}

impl Drop for WalHook {
    fn drop(&mut self) {
        // SAFETY: the connection is still open (see `install`); after
        // unregistering, SQLite no longer reads `ctx`.
        unsafe {
            ffi::sqlite3_wal_hook(self.db, None, std::ptr::null_mut());
            drop(Box::from_raw(self.ctx));
        }
    }
}

/// Called by SQLite after each commit on the writer's connection, with the
/// WAL's frame count. Never fails the commit (which has happened already).
unsafe extern "C" fn hook(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `ctx` is the `HookContext` installed with this hook.
    let ctx = unsafe { &*ctx.cast::<HookContext>() };
    ctx.frames.store(frames, Ordering::Relaxed);
    if frames >= ctx.hard {
        ctx.inline.fetch_add(1, Ordering::Relaxed);
        // The thread fell behind: bound the WAL here, as SQLite would. A
        // background checkpoint under way would make this one SQLITE_BUSY
        // (one checkpointer at a time) and, with commits going on, it may
        // not reach the WAL's end: wait for it, then checkpoint to the end
        // (this commit holds the write gate, so nothing appends meanwhile).
        let _running = ctx.signal.running.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: `db` and `name` are the ones SQLite passed in.
        let rc = unsafe { ffi::sqlite3_wal_checkpoint(db, name) };
        if rc != ffi::SQLITE_OK && rc != ffi::SQLITE_BUSY {
            log::warn!(
                "buffer {}: inline checkpoint at {frames} WAL frames failed (SQLite code {rc})",
                ctx.path.display()
            );
        } else {
            log::debug!(
                "buffer {}: inline checkpoint at {frames} WAL frames",
                ctx.path.display()
            );
        }
    } else if frames >= ctx.soft {
        ctx.signal.request();
    }
    ffi::SQLITE_OK
}
