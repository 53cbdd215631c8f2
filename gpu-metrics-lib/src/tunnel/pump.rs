//! The pump thread behind a forward: it owns one libssh2 session at a time
//! (non-blocking), multiplexes every forwarded connection with `poll(2)`, and
//! logs in again with backoff when the session dies.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel};

use super::{Handle, IDLE_POLL, Shared, TunnelOptions};
use crate::retry::{Backoff, random_seed};
use crate::ssh::{Connection, SshConfig, SshError, duration_ms, is_channel_error, is_eagain, poll};

/// Per-direction buffer of a forwarded connection.
const BUF_CAP: usize = 64 * 1024;
/// How long a closing channel may wait for the server's close.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// What a pump forwards.
pub(super) enum Mode {
    /// Accept on a local listener, open `direct-tcpip` to `remote_host:remote_port`.
    Local {
        listener: TcpListener,
        remote_host: String,
        remote_port: u16,
    },
    /// Ask the server to listen, pipe each accepted channel to `target`.
    Remote {
        bind_host: String,
        bind_port: u16,
        target: SocketAddr,
    },
}

/// Starts the pump thread; with `wait_for_first_login` the first login runs
/// here and its error is returned.
pub(super) fn spawn(
    config: SshConfig,
    mode: Mode,
    options: TunnelOptions,
    label: String,
    thread_name: &str,
) -> Result<Handle, SshError> {
    let io_err = |source| SshError::Io {
        host: config.host.clone(),
        port: config.port,
        op: "start tunnel thread",
        source,
    };
    let shared = Arc::new(Shared::default());
    let (waker, wake_rx) = UnixStream::pair().map_err(io_err)?;
    wake_rx.set_nonblocking(true).map_err(io_err)?;
    let mut pump = Pump {
        config: config.clone(),
        mode,
        backoff: Backoff::new(options.backoff, random_seed()),
        label,
        shared: Arc::clone(&shared),
        wake: wake_rx,
    };
    let first = if options.wait_for_first_login {
        let live = pump.login()?;
        // Up from the moment `start` returns, not from when the thread runs.
        shared.up.store(true, Ordering::SeqCst);
        Some(live)
    } else {
        None
    };
    let thread = std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || pump.run(first))
        .map_err(io_err)?;
    Ok(Handle {
        stats: super::TunnelStats { shared },
        waker,
        thread: Some(thread),
    })
}

struct Pump {
    config: SshConfig,
    mode: Mode,
    backoff: Backoff,
    label: String,
    shared: Arc<Shared>,
    wake: UnixStream,
}

/// A logged-in session and what runs on it.
struct Live {
    conn: Connection,
    /// An idle `session` channel whose reads drive libssh2's transport (so
    /// keepalive replies and a closed connection are seen even when no
    /// connection is forwarded). `None` where the server allows no session
    /// channels (`MaxSessions 0`).
    sentinel: Option<Channel>,
    listener: Option<ssh2::Listener>,
    pipes: Vec<Pipe>,
    closing: Vec<(Channel, Instant)>,
}

enum Outcome {
    Stopped,
    Died(SshError),
}

impl Pump {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn login(&mut self) -> Result<Live, SshError> {
        self.shared.login_attempts.fetch_add(1, Ordering::SeqCst);
        let result = self.try_login();
        if result.is_err() {
            self.shared.login_failures.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn try_login(&mut self) -> Result<Live, SshError> {
        let conn = Connection::establish(&self.config)?;
        let mut live = Live {
            sentinel: None,
            listener: None,
            pipes: Vec::new(),
            closing: Vec::new(),
            conn,
        };
        match &self.mode {
            Mode::Local { .. } => match live.conn.session.channel_session() {
                Ok(ch) => live.sentinel = Some(ch),
                Err(e) => {
                    log::debug!("tunnel: no idle session channel ({e}); relying on keepalives")
                }
            },
            Mode::Remote {
                bind_host,
                bind_port,
                ..
            } => {
                let known = self.shared.remote_port.load(Ordering::SeqCst);
                let want = if known != 0 { known } else { *bind_port };
                let (listener, bound) = live
                    .conn
                    .session
                    .channel_forward_listen(want, Some(bind_host), None)
                    .map_err(|source| {
                        if is_channel_error(&source) {
                            SshError::ForwardRefused {
                                host: self.config.host.clone(),
                                port: self.config.port,
                                what: format!("listen on {bind_host}:{want}"),
                                source,
                            }
                        } else {
                            live.conn.session_err("listen", source)
                        }
                    })?;
                let bound = if bound != 0 { bound } else { want };
                self.shared.remote_port.store(bound, Ordering::SeqCst);
                live.listener = Some(listener);
            }
        }
        live.conn.session.set_blocking(false);
        Ok(live)
    }

    fn run(mut self, mut first: Option<Live>) {
        let mut ever_up = false;
        while !self.stopping() {
            let live = match first.take() {
                Some(live) => live,
                None => match self.login() {
                    Ok(live) => live,
                    Err(e) => {
                        let delay = self.backoff.next_delay();
                        log::warn!(
                            "tunnel login failed: {} attempt={} delay={}ms error={e}",
                            self.label,
                            self.shared.login_attempts.load(Ordering::SeqCst),
                            delay.as_millis()
                        );
                        self.shared.set_last_error(e);
                        if self.wait_down(delay) {
                            break;
                        }
                        continue;
                    }
                },
            };
            if ever_up {
                self.shared.reconnects.fetch_add(1, Ordering::SeqCst);
            }
            ever_up = true;
            self.shared.up.store(true, Ordering::SeqCst);
            match &self.mode {
                Mode::Remote { .. } => log::info!(
                    "tunnel up: {} remote_port={}",
                    self.label,
                    self.shared.remote_port.load(Ordering::SeqCst)
                ),
                Mode::Local { .. } => log::info!("tunnel up: {}", self.label),
            }
            let since = Instant::now();
            let outcome = self.pump(live);
            self.shared.up.store(false, Ordering::SeqCst);
            match outcome {
                Outcome::Stopped => break,
                Outcome::Died(e) => {
                    if since.elapsed() >= self.backoff.policy().max {
                        self.backoff.reset();
                    }
                    let delay = self.backoff.next_delay();
                    log::warn!(
                        "tunnel down, reconnecting: {} attempt={} delay={}ms error={e}",
                        self.label,
                        self.shared.login_attempts.load(Ordering::SeqCst) + 1,
                        delay.as_millis()
                    );
                    self.shared.set_last_error(e);
                    if self.wait_down(delay) {
                        break;
                    }
                }
            }
        }
        self.shared.up.store(false, Ordering::SeqCst);
        log::info!("tunnel stopped: {}", self.label);
    }

    fn drain_waker(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Waits `delay` while the session is down, closing local connections at
    /// once (so clients fail fast). True when asked to stop.
    fn wait_down(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            if self.stopping() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let mut fds = vec![pollfd(self.wake.as_raw_fd(), libc::POLLIN)];
            if let Mode::Local { listener, .. } = &self.mode {
                fds.push(pollfd(listener.as_raw_fd(), libc::POLLIN));
            }
            if let Err(e) = poll(&mut fds, deadline - now) {
                log::debug!("tunnel: poll failed while down: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            self.drain_waker();
            if let Mode::Local { listener, .. } = &self.mode {
                while let Ok((stream, _)) = listener.accept() {
                    drop(stream);
                    self.shared
                        .refused_while_down
                        .fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Moves bytes until the session dies or a stop is requested.
    fn pump(&mut self, mut live: Live) -> Outcome {
        let mut scratch = vec![0u8; 32 * 1024];
        let keepalive = self.config.keepalive_interval.is_some();
        let mut next_keepalive = Instant::now();
        let mut busy = false;
        loop {
            // 1. Wait for something to do.
            let now = Instant::now();
            let mut timeout = if busy { Duration::ZERO } else { IDLE_POLL };
            if keepalive {
                timeout = timeout.min(next_keepalive.saturating_duration_since(now));
            }
            let mut fds = vec![pollfd(self.wake.as_raw_fd(), libc::POLLIN)];
            let reader = live.sentinel.is_some()
                || live.listener.is_some()
                || live
                    .pipes
                    .iter()
                    .any(|p| !p.remote_eof && p.down.len() < BUF_CAP);
            let mut ssh_events = if reader { libc::POLLIN } else { 0 };
            if matches!(
                live.conn.session.block_directions(),
                BlockDirections::Outbound | BlockDirections::Both
            ) {
                ssh_events |= libc::POLLOUT;
            }
            fds.push(pollfd(live.conn.fd, ssh_events));
            let listener_fd = match &self.mode {
                Mode::Local { listener, .. } => Some(listener.as_raw_fd()),
                Mode::Remote { .. } => None,
            };
            if let Some(fd) = listener_fd {
                fds.push(pollfd(fd, libc::POLLIN));
            }
            for p in &live.pipes {
                let mut ev = 0;
                if !p.local_eof && p.up.len() < BUF_CAP {
                    ev |= libc::POLLIN;
                }
                if !p.down.is_empty() {
                    ev |= libc::POLLOUT;
                }
                fds.push(pollfd(p.local.as_raw_fd(), ev));
            }
            if let Err(e) = poll(&mut fds, timeout) {
                return self.died(
                    live,
                    SshError::Io {
                        host: self.config.host.clone(),
                        port: self.config.port,
                        op: "poll",
                        source: e,
                    },
                );
            }
            if fds[0].revents != 0 {
                self.drain_waker();
            }
            if self.stopping() {
                self.shutdown(live, true);
                return Outcome::Stopped;
            }
            if fds[1].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 && !reader {
                return self.died(
                    live,
                    SshError::Io {
                        host: self.config.host.clone(),
                        port: self.config.port,
                        op: "read",
                        source: io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "connection closed by gateway",
                        ),
                    },
                );
            }
            busy = false;

            // 2. Drive the transport: accept remote channels, read the sentinel.
            match self.drive(&mut live, &mut scratch) {
                Ok(progress) => busy |= progress,
                Err(e) => return self.died(live, e),
            }

            // 3. New local connections.
            if let Some(fd) = listener_fd
                && fds.iter().any(|f| f.fd == fd && f.revents != 0)
            {
                match self.accept_local(&mut live) {
                    Ok(progress) => busy |= progress,
                    Err(e) => return self.died(live, e),
                }
            }

            // 4. Move bytes.
            let mut i = 0;
            while i < live.pipes.len() {
                let (progress, end) = live.pipes[i].step(&mut scratch);
                busy |= progress;
                match end {
                    None => i += 1,
                    Some(end) => {
                        let pipe = live.pipes.swap_remove(i);
                        self.shared.channels_active.fetch_sub(1, Ordering::SeqCst);
                        match end {
                            End::Finished => {
                                log::debug!("tunnel: connection {} finished", pipe.peer)
                            }
                            End::Local(e) => {
                                log::debug!("tunnel: connection {} local error: {e}", pipe.peer)
                            }
                            End::Channel(e) => {
                                if let Some(err) =
                                    ssh2::Error::last_session_error(&live.conn.session)
                                    && !is_channel_error(&err)
                                    && !is_eagain(&err)
                                {
                                    live.closing.push((pipe.channel, Instant::now()));
                                    return self
                                        .died(live, live_err(&self.config, "channel I/O", err));
                                }
                                log::debug!("tunnel: connection {} channel error: {e}", pipe.peer);
                            }
                        }
                        live.closing.push((pipe.channel, Instant::now()));
                    }
                }
            }

            // 5. Close finished channels politely.
            live.closing.retain_mut(|(ch, since)| match ch.close() {
                Ok(()) => false,
                Err(e) if is_eagain(&e) => since.elapsed() < CLOSE_GRACE,
                Err(_) => false,
            });

            // 6. Keepalive.
            if keepalive && Instant::now() >= next_keepalive {
                match live.conn.session.keepalive_send() {
                    Ok(secs) => {
                        next_keepalive =
                            Instant::now() + Duration::from_secs(u64::from(secs.max(1)))
                    }
                    Err(e) if is_eagain(&e) => {
                        next_keepalive = Instant::now() + Duration::from_millis(200)
                    }
                    Err(e) => {
                        let err = live.conn.session_err("keepalive", e);
                        return self.died(live, err);
                    }
                }
            }
        }
    }

    /// Reads what the transport has: remote listener accepts, sentinel reads.
    fn drive(&mut self, live: &mut Live, scratch: &mut [u8]) -> Result<bool, SshError> {
        let mut progress = false;
        if let Some(listener) = live.listener.as_mut()
            && let Mode::Remote { target, .. } = &self.mode
        {
            loop {
                match listener.accept() {
                    Ok(channel) => {
                        progress = true;
                        let connect_timeout =
                            self.config.connect_timeout.min(Duration::from_secs(5));
                        match TcpStream::connect_timeout(target, connect_timeout).and_then(|s| {
                            s.set_nonblocking(true)?;
                            let _ = s.set_nodelay(true);
                            Ok(s)
                        }) {
                            Ok(local) => {
                                self.shared.channels_opened.fetch_add(1, Ordering::SeqCst);
                                self.shared.channels_active.fetch_add(1, Ordering::SeqCst);
                                live.pipes
                                    .push(Pipe::new(local, channel, target.to_string()));
                            }
                            Err(e) => {
                                self.shared.channels_failed.fetch_add(1, Ordering::SeqCst);
                                log::warn!(
                                    "tunnel: {}: cannot connect to {target}: {e}",
                                    self.label
                                );
                                live.closing.push((channel, Instant::now()));
                            }
                        }
                    }
                    Err(e) if is_eagain(&e) => break,
                    Err(e) => return Err(live.conn.session_err("accept forwarded connection", e)),
                }
            }
        }
        if let Some(sentinel) = live.sentinel.as_mut() {
            match sentinel.read(scratch) {
                Ok(0) => {
                    if sentinel.eof() {
                        log::debug!("tunnel: server closed the idle session channel");
                        live.sentinel = None;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(match ssh2::Error::last_session_error(&live.conn.session) {
                        Some(err) if !is_eagain(&err) => live.conn.session_err("read", err),
                        _ => SshError::Io {
                            host: self.config.host.clone(),
                            port: self.config.port,
                            op: "read",
                            source: e,
                        },
                    });
                }
            }
        }
        Ok(progress)
    }

    /// Accepts every pending local connection and opens a channel for each.
    fn accept_local(&mut self, live: &mut Live) -> Result<bool, SshError> {
        let Mode::Local {
            listener,
            remote_host,
            remote_port,
        } = &self.mode
        else {
            return Ok(false);
        };
        let mut progress = false;
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(progress),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: not the session's fault; try later.
                    log::warn!("tunnel: {}: accept failed: {e}", self.label);
                    return Ok(progress);
                }
            };
            progress = true;
            let session = &live.conn.session;
            // Opening a channel is one round trip: do it blocking, bounded by
            // the connect timeout, then return to non-blocking pumping.
            session.set_blocking(true);
            session.set_timeout(duration_ms(self.config.connect_timeout));
            let opened = session.channel_direct_tcpip(
                remote_host,
                *remote_port,
                Some((&peer.ip().to_string(), peer.port())),
            );
            session.set_blocking(false);
            match opened {
                Ok(channel) => {
                    if let Err(e) = stream.set_nonblocking(true) {
                        log::debug!("tunnel: cannot make {peer} non-blocking: {e}");
                        live.closing.push((channel, Instant::now()));
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.shared.channels_opened.fetch_add(1, Ordering::SeqCst);
                    self.shared.channels_active.fetch_add(1, Ordering::SeqCst);
                    live.pipes
                        .push(Pipe::new(stream, channel, peer.to_string()));
                }
                Err(e) if is_channel_error(&e) => {
                    self.shared.channels_failed.fetch_add(1, Ordering::SeqCst);
                    log::warn!(
                        "tunnel: {}: gateway could not open direct-tcpip to {remote_host}:{remote_port}: {e}",
                        self.label
                    );
                    drop(stream);
                }
                Err(e) => {
                    drop(stream);
                    return Err(live.conn.session_err("open direct-tcpip channel", e));
                }
            }
        }
    }

    fn died(&mut self, live: Live, e: SshError) -> Outcome {
        self.shutdown(live, false);
        Outcome::Died(e)
    }

    /// Closes every connection and (when `graceful`) logs out.
    fn shutdown(&mut self, mut live: Live, graceful: bool) {
        let n = live.pipes.len() as u64;
        self.shared.channels_active.fetch_sub(n, Ordering::SeqCst);
        for p in live.pipes.drain(..) {
            let _ = p.local.shutdown(Shutdown::Both);
        }
        // Dropping channels and the listener talks to the server: bounded,
        // blocking calls rather than non-blocking ones that would leak.
        live.conn.session.set_blocking(true);
        live.conn
            .session
            .set_timeout(if graceful { 2000 } else { 500 });
        live.closing.clear();
        live.sentinel = None;
        live.listener = None;
        if graceful {
            live.conn.disconnect("tunnel stopped");
        }
    }
}

fn live_err(config: &SshConfig, op: &'static str, source: ssh2::Error) -> SshError {
    SshError::Session {
        host: config.host.clone(),
        port: config.port,
        op,
        source,
    }
}

fn pollfd(fd: std::os::fd::RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

enum End {
    Finished,
    Local(io::Error),
    Channel(io::Error),
}

/// One forwarded connection: a local TCP stream and its SSH channel.
struct Pipe {
    local: TcpStream,
    channel: Channel,
    peer: String,
    /// Local → channel, not yet written.
    up: Vec<u8>,
    /// Channel → local, not yet written.
    down: Vec<u8>,
    local_eof: bool,
    eof_sent: bool,
    remote_eof: bool,
    local_shut: bool,
}

impl Pipe {
    fn new(local: TcpStream, channel: Channel, peer: String) -> Self {
        Pipe {
            local,
            channel,
            peer,
            up: Vec::new(),
            down: Vec::new(),
            local_eof: false,
            eof_sent: false,
            remote_eof: false,
            local_shut: false,
        }
    }

    /// Moves what can move without blocking; `(progress, end)`.
    fn step(&mut self, scratch: &mut [u8]) -> (bool, Option<End>) {
        let mut progress = false;
        // Local → buffer.
        if !self.local_eof && self.up.len() < BUF_CAP {
            let room = scratch.len().min(BUF_CAP - self.up.len());
            match self.local.read(&mut scratch[..room]) {
                Ok(0) => {
                    self.local_eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.up.extend_from_slice(&scratch[..n]);
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return (progress, Some(End::Local(e))),
            }
        }
        // Buffer → channel.
        if let Err(e) = write_out(&mut self.up, &mut self.channel, &mut progress) {
            return (progress, Some(End::Channel(e)));
        }
        if self.local_eof && self.up.is_empty() && !self.eof_sent {
            match self.channel.send_eof() {
                Ok(()) => {
                    self.eof_sent = true;
                    progress = true;
                }
                Err(e) if is_eagain(&e) => {}
                // The far side may already have closed: nothing left to say.
                Err(_) => self.eof_sent = true,
            }
        }
        // Channel → buffer.
        if !self.remote_eof && self.down.len() < BUF_CAP {
            let room = scratch.len().min(BUF_CAP - self.down.len());
            match self.channel.read(&mut scratch[..room]) {
                Ok(0) => {
                    if self.channel.eof() {
                        self.remote_eof = true;
                        progress = true;
                    }
                }
                Ok(n) => {
                    self.down.extend_from_slice(&scratch[..n]);
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return (progress, Some(End::Channel(e))),
            }
        }
        // Buffer → local.
        if let Err(e) = write_out(&mut self.down, &mut self.local, &mut progress) {
            return (progress, Some(End::Local(e)));
        }
        if self.remote_eof && self.down.is_empty() && !self.local_shut {
            let _ = self.local.shutdown(Shutdown::Write);
            self.local_shut = true;
            progress = true;
        }
        if self.remote_eof && self.local_shut && self.local_eof && self.up.is_empty() {
            return (progress, Some(End::Finished));
        }
        (progress, None)
    }
}

/// Writes as much of `buf` to the non-blocking `w` as it takes now, removing
/// what was written from `buf` and setting `progress` when anything was.
///
/// # Errors
/// The write error, other than "would block".
fn write_out(buf: &mut Vec<u8>, w: &mut impl Write, progress: &mut bool) -> io::Result<()> {
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.drain(..n);
                *progress = true;
            }
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
