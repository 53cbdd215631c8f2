//! `poll(2)` helpers for non-blocking libssh2 sessions (command output and
//! the tunnel pump).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use ssh2::Session;

/// Waits until the SSH socket is ready in the direction libssh2 is blocked
/// on (readable by default), or `timeout`.
pub(crate) fn wait_socket(fd: RawFd, session: &Session, timeout: Duration) -> io::Result<()> {
    let mut events = libc::POLLIN;
    if matches!(
        session.block_directions(),
        ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
    ) {
        events |= libc::POLLOUT;
    }
    let mut fds = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    poll(&mut fds, timeout).map(|_| ())
}

/// `poll(2)` over `fds`, retried on EINTR; the number of ready descriptors.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
