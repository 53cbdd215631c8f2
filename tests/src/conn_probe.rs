//! Probing what clients can make a server hold: many idle connections, many
//! request heads that never end, and the server's threads, memory and open
//! files meanwhile (read from `/proc/PID`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Raises this process's soft `RLIMIT_NOFILE` to at least `want` (up to the
/// hard limit); children started afterwards inherit it. Returns the new soft
/// limit.
pub fn raise_nofile(want: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// Threads of process `pid` (entries of `/proc/PID/task`).
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident set size of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Opens `n` connections to `addr` that send nothing.
///
/// # Panics
/// When a connection cannot be opened.
pub fn open_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i} to {addr}: {e}"))
        })
        .collect()
}

/// Opens `n` connections to `addr` that send the start of a request head
/// for `path` and never finish it.
///
/// # Panics
/// When a connection cannot be opened or written.
pub fn open_slow_headers(addr: SocketAddr, n: usize, path: &str) -> Vec<TcpStream> {
    let start = format!("GET {path} HTTP/1.1\r\nHost: probe\r\nX-Slow: ");
    open_idle(addr, n)
        .into_iter()
        .map(|mut s| {
            s.write_all(start.as_bytes()).expect("write a partial head");
            s
        })
        .collect()
}

/// How a connection the server was to close ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// End of stream (or a reset), after these bytes (a final status line).
    Yes(Vec<u8>),
    /// Still open at the deadline.
    No,
}

/// Waits until `deadline` for each connection to be closed by the server,
/// collecting what it sent first (e.g. `HTTP/1.1 408 …`).
pub fn wait_closed(socks: &mut [TcpStream], deadline: Instant) -> Vec<Closed> {
    socks
        .iter_mut()
        .map(|s| {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Closed::No;
                }
                let _ = s.set_read_timeout(Some(left));
                match s.read(&mut buf) {
                    Ok(0) => return Closed::Yes(got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Closed::No;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Closed::Yes(got),
                }
            }
        })
        .collect()
}
