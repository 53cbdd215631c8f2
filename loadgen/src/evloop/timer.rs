//! A precise wake-up for an event loop: `poll`'s own timeout has whole
//! milliseconds (rounded up), which would make every open-loop request up to
//! a millisecond late, and that lateness is in its latency (measured from
//! the due time). On Linux a `timerfd` (nanoseconds, `CLOCK_MONOTONIC` like
//! [`Instant`]) registered in the poll wakes the loop at the due time; where
//! there is none, [`Timer::new`] fails and the loop falls back to `poll`'s
//! timeout.
//!
//! Invariant: at most one wake-up is armed; arming again replaces it.

use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

/// A one-shot timer whose expiry makes its token readable.
#[derive(Debug)]
pub struct Timer {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    armed: Option<Instant>,
}

impl Timer {
    /// A timer registered in `registry` under `token`.
    ///
    /// # Errors
    /// The OS error (or `Unsupported` off Linux).
    #[cfg(target_os = "linux")]
    pub fn new(registry: &Registry, token: Token) -> std::io::Result<Timer> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create takes no pointers; a negative result is an error.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        Ok(Timer { fd, armed: None })
    }

    /// Off Linux: no timer.
    ///
    /// # Errors
    /// Always `Unsupported`.
    #[cfg(not(target_os = "linux"))]
    pub fn new(_registry: &Registry, _token: Token) -> std::io::Result<Timer> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// Wakes the loop at `at` (at once when it is past); false when the
    /// timer could not be armed.
    pub fn arm(&mut self, at: Instant) -> bool {
        if self.armed == Some(at) {
            return true;
        }
        let after = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        if self.set(after) {
            self.armed = Some(at);
            true
        } else {
            self.armed = None;
            false
        }
    }

    /// Called when its token was readable: the wake-up is spent.
    pub fn fired(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut n = 0u64;
            // SAFETY: reads at most 8 bytes into `n`, which is 8 bytes long.
            let _ = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut n as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
        self.armed = None;
    }

    #[cfg(target_os = "linux")]
    fn set(&mut self, after: Duration) -> bool {
        use std::os::fd::AsRawFd;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        rc == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn set(&mut self, _after: Duration) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_timer_wakes_the_poll_at_its_time() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut t = Timer::new(poll.registry(), Token(7)).unwrap();
        let at = Instant::now() + Duration::from_micros(2500);
        assert!(t.arm(at));
        let mut woke = None;
        while woke.is_none() {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            if events.iter().any(|e| e.token() == Token(7)) {
                woke = Some(Instant::now());
            }
        }
        t.fired();
        let woke = woke.unwrap();
        assert!(woke >= at, "woke before its time");
        // Re-armed after firing, it fires again.
        assert!(t.arm(Instant::now()));
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == Token(7)));
    }
}
