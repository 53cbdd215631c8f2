//! A TCP transport for ureq agents (the load generator's and the Slurm REST client's) that costs fewer
//! system calls per request than ureq's own (measured there: 4 `ioctl`, 2
//! failing `recv`, 2 `setsockopt` around each request's one `send` and one
//! `recv`, which capped the request rate at a third of wrk's):
//!
//! - socket timeouts are set once, at connect, to `--timeout` (each read and
//!   write waits at most that long); ureq's shrinking per-request deadline
//!   would reset them on every read. The whole request is still bounded:
//!   the load generator checks the elapsed time while streaming.
//! - the liveness probe of a pooled connection is one
//!   `recv(MSG_PEEK | MSG_DONTWAIT)`, skipped when the connection was used less
//!   than [`PROBE_AFTER`] ago (a keep-alive close within that time shows as a
//!   failed request, as it would a moment later anyway).
//!
//! - after each request is sent and each read, TCP connections ask for
//!   immediate ACKs ([`quickack`]): a kept-alive connection would otherwise
//!   fall into delayed ACKs, and a server that writes an answer's head and
//!   body apart with Nagle on (Python's `http.server`) would hold the body
//!   ~40 ms for the ACK of the head.
//!
//! [`UnixConnector`] opens the same transport on a Unix socket (slurmrestd's
//! `unix:` endpoint, in the API's Slurm REST backend), probing every pooled
//! connection before reuse.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// A connection idle for less than this is reused without a probe.
pub const PROBE_AFTER: Duration = Duration::from_millis(1);

/// Opens [`LeanTransport`]s with socket timeouts of `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct LeanConnector {
    /// Socket read/write timeout and connect timeout (capped at 10 s).
    pub timeout: Duration,
}

impl Connector<()> for LeanConnector {
    type Out = LeanTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<LeanTransport>, ureq::Error> {
        let connect_timeout = self.timeout.min(Duration::from_secs(10));
        let mut last = None;
        for addr in details.addrs.iter() {
            match TcpStream::connect_timeout(addr, connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(self.timeout))?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    let config = details.config;
                    return Ok(Some(LeanTransport {
                        stream,
                        buffers: LazyBuffers::new(
                            config.input_buffer_size(),
                            config.output_buffer_size(),
                        ),
                        last_io: Instant::now(),
                        probe_after: PROBE_AFTER,
                        quickack: true,
                    }));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ureq::Error::Timeout(ureq::Timeout::Connect)
            }
            Some(e) => ureq::Error::Io(e),
            None => ureq::Error::HostNotFound,
        })
    }
}

/// Opens [`LeanTransport`]s to the Unix socket `path`, whatever the request
/// URL's host (give the agent a resolver that looks nothing up, such as
/// [`FixedResolver`]). A pooled connection is
/// always probed before reuse: the server may close it after any answer.
#[derive(Debug, Clone)]
pub struct UnixConnector {
    /// The socket.
    pub path: PathBuf,
    /// Socket read/write timeout.
    pub timeout: Duration,
}

impl Connector<()> for UnixConnector {
    type Out = LeanTransport<UnixStream>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<LeanTransport<UnixStream>>, ureq::Error> {
        let stream = UnixStream::connect(&self.path).map_err(|e| {
            ureq::Error::Io(std::io::Error::new(
                e.kind(),
                format!("connect {}: {e}", self.path.display()),
            ))
        })?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let config = details.config;
        Ok(Some(LeanTransport {
            stream,
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            last_io: Instant::now(),
            probe_after: Duration::ZERO,
            quickack: false,
        }))
    }
}

/// A plain stream connection (TCP, or a Unix socket) with fixed socket
/// timeouts.
#[derive(Debug)]
pub struct LeanTransport<S = TcpStream> {
    stream: S,
    buffers: LazyBuffers,
    last_io: Instant,
    /// Reuse without a probe when idle for less than this.
    probe_after: Duration,
    /// A TCP socket: ask for immediate ACKs ([`quickack`]).
    quickack: bool,
}

/// Asks Linux to acknowledge what arrives on the TCP socket `fd` at once
/// (`TCP_QUICKACK`). The kernel drops back to delayed ACKs on its own, so
/// callers set it again after every request and every read.
pub fn quickack(fd: std::os::fd::RawFd) {
    #[cfg(target_os = "linux")]
    {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a descriptor the caller owns, with a c_int
        // option value of the size passed; a failure changes nothing.
        let _ = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

impl<S> Transport for LeanTransport<S>
where
    S: Read + Write + AsRawFd + std::fmt::Debug + Send + Sync + 'static,
{
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let output = &self.buffers.output()[..amount];
        match self.stream.write_all(output) {
            Ok(()) => {
                if self.quickack {
                    quickack(self.stream.as_raw_fd());
                }
                self.last_io = Instant::now();
                Ok(())
            }
            Err(e) if timed_out(&e) => Err(ureq::Error::Timeout(timeout.reason)),
            Err(e) => Err(ureq::Error::Io(e)),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let input = self.buffers.input_append_buf();
        let n = loop {
            match self.stream.read(input) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => return Err(ureq::Error::Timeout(timeout.reason)),
                Err(e) => return Err(ureq::Error::Io(e)),
            }
        };
        self.buffers.input_appended(n);
        if n > 0 && self.quickack {
            quickack(self.stream.as_raw_fd());
        }
        self.last_io = Instant::now();
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        if self.last_io.elapsed() < self.probe_after {
            return true;
        }
        let mut byte = 0u8;
        // SAFETY: recv(2) on our own open socket (TCP or Unix) into a 1-byte
        // buffer we own.
        let r = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // Nothing to read (EAGAIN) is the only healthy answer: 0 is a close,
        // a byte is data nobody asked for.
        r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

/// The service's addresses, resolved once before the run: ureq's default
/// resolver starts a thread per request (to honour the timeout), which would
/// be in every latency and cap the request rate.
#[derive(Debug, Clone)]
pub struct FixedResolver(pub Vec<std::net::SocketAddr>);

impl ureq::unversioned::resolver::Resolver for FixedResolver {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for a in self.0.iter().take(16) {
            out.push(*a);
        }
        if self.0.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}
