//! aif: the connection reactor that replaces upstream's thread per connection.
//!
//! One thread owns the listener and every connection that is not being
//! answered: new ones, keep-alive ones between requests, and ones whose
//! request head is still arriving. It waits on all of them with `poll(2)`,
//! reads heads without blocking into a per-connection buffer (capped at
//! [`Limits::max_header_bytes`]), and hands a connection on only once its head
//! (and a `Content-Length` body of at most [`Limits::max_buffered_body`]) is
//! complete, so a client trickling a head or a small body holds no worker: as a [`Request`] pushed to the
//! server's queue, which the caller's worker threads pop. After the answer the
//! request's [`Ticket`] gives the connection back (keep-alive) or closes it.
//!
//! So a waiting connection costs a file descriptor and a few dozen bytes,
//! never a thread; idle connections close after [`Limits::idle_timeout`], a head
//! not complete [`Limits::header_timeout`] after its first byte gets 408, an
//! oversized head 431, a full request queue 503. At [`Limits::max_connections`]
//! the connection that has waited longest is closed to admit a new one (a new
//! one is refused only when every connection is being answered).
#![allow(unsafe_code)]

use std::io::{self, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::{Connection, Listener};
use crate::util::MessagesQueue;
use crate::{HTTPVersion, Header, Message, Method, Request};

/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What one client may hold. The defaults suit a small API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at once (waiting and being answered).
    pub max_connections: usize,
    /// Requests read and waiting for a worker; beyond, the next gets 503.
    pub max_pending_requests: usize,
    /// A connection without a started request head is closed after this.
    pub idle_timeout: Duration,
    /// A request head must be complete this long after its first byte (408).
    pub header_timeout: Duration,
    /// Request line plus headers, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// A `Content-Length` body up to this size is read by the reactor, with
    /// the head and within `header_timeout`; a larger one by the worker.
    pub max_buffered_body: usize,
    /// Socket read and write timeout while a worker reads a body or writes an answer.
    pub io_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_pending_requests: 256,
            idle_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_buffered_body: 1024,
            io_timeout: Duration::from_secs(30),
        }
    }
}

/// Connection counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted.
    pub accepted: u64,
    /// Waiting connections closed to admit a new one at `max_connections`.
    pub evicted: u64,
    /// New connections closed at once (every open one was being answered).
    pub refused: u64,
    /// Connections closed after `idle_timeout`.
    pub idle_closed: u64,
    /// Requests answered 408 (head not complete within `header_timeout`).
    pub header_timeouts: u64,
    /// Requests answered 431 (head over `max_header_bytes`).
    pub header_too_large: u64,
    /// Requests answered 503 (the request queue was full).
    pub overloaded: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    idle_closed: AtomicU64,
    header_timeouts: AtomicU64,
    header_too_large: AtomicU64,
    overloaded: AtomicU64,
}

/// A connection handed back after an answer.
struct Returned {
    stream: Connection,
    buf: Vec<u8>,
    peer: Option<SocketAddr>,
}

/// State shared by the reactor, the server handle and the tickets.
pub(crate) struct Shared {
    limits: Limits,
    messages: Arc<MessagesQueue<Message>>,
    returned: Mutex<Vec<Returned>>,
    wake_tx: UnixStream,
    waiting: AtomicUsize,
    in_flight: AtomicUsize,
    counters: Counters,
    pub(crate) close: AtomicBool,
}

impl Shared {
    /// Hands a connection whose `buf` holds a complete head (ending at `end`)
    /// to the workers as a request, or answers it with an error and closes it.
    fn dispatch(
        self: &Arc<Self>,
        stream: Connection,
        buf: Vec<u8>,
        peer: Option<SocketAddr>,
        end: usize,
    ) {
        let head = match parse_head(&buf[..end]) {
            Ok(h) => h,
            Err((status, reason)) => {
                log::debug!("http: {:?}: bad request head ({status})", peer);
                reject(stream, status, reason);
                return;
            }
        };
        if self.messages.len() >= self.limits.max_pending_requests {
            self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "http: {} requests queued: answering 503 to {:?}",
                self.limits.max_pending_requests,
                peer
            );
            reject(stream, 503, "Service Unavailable");
            return;
        }
        let io = Some(self.limits.io_timeout);
        if stream.set_nonblocking(false).is_err() || stream.set_timeouts(io).is_err() {
            return;
        }
        let mut data = buf;
        data.drain(..end);
        let leftover = Arc::new(Mutex::new(Leftover {
            data,
            pos: 0,
            deadline: Instant::now() + self.limits.header_timeout,
            io_timeout: self.limits.io_timeout,
        }));
        let conn = Arc::new(stream);
        let source = BodySource {
            leftover: Arc::clone(&leftover),
            conn: Arc::clone(&conn),
        };
        let writer = BufWriter::with_capacity(4096, SocketWriter(Arc::clone(&conn)));
        let request = crate::request::new_request(
            false,
            head.method,
            head.path,
            head.version,
            head.headers,
            peer,
            source,
            writer,
        );
        match request {
            Ok(rq) => {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                let ticket = Ticket {
                    conn: Some(conn),
                    leftover,
                    peer: peer,
                    keep_alive: head.keep_alive,
                    shared: Arc::clone(self),
                };
                self.messages
                    .push(Message::NewRequest(rq.with_ticket(ticket)));
            }
            Err(e) => log::debug!("http: {:?}: cannot read request: {e:?}", peer),
        }
    }

    pub(crate) fn wake(&self) {
        // A full pipe already holds a wake-up.
        let _ = (&self.wake_tx).write(&[1]);
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnectionStats {
            open: self.waiting.load(Ordering::Relaxed) + self.in_flight.load(Ordering::Relaxed),
            accepted: l(&c.accepted),
            evicted: l(&c.evicted),
            refused: l(&c.refused),
            idle_closed: l(&c.idle_closed),
            header_timeouts: l(&c.header_timeouts),
            header_too_large: l(&c.header_too_large),
            overloaded: l(&c.overloaded),
        }
    }
}

/// Bytes read past a request head, consumed before the socket.
struct Leftover {
    data: Vec<u8>,
    pos: usize,
    /// Reads from the socket fail after this: the body must arrive within
    /// `header_timeout` of its head, and after the answer what is left is
    /// drained for [`DRAIN_TIME`] at most.
    deadline: Instant,
    /// The socket read timeout outside the deadline.
    io_timeout: Duration,
}

/// How long a worker drains an unread body after the answer before it closes
/// the connection instead.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// A request's body source: the leftover bytes, then the socket.
struct BodySource {
    leftover: Arc<Mutex<Leftover>>,
    conn: Arc<Connection>,
}

impl Read for BodySource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        {
            let mut l = self.leftover.lock().unwrap_or_else(|p| p.into_inner());
            if l.pos < l.data.len() {
                let n = buf.len().min(l.data.len() - l.pos);
                buf[..n].copy_from_slice(&l.data[l.pos..l.pos + n]);
                l.pos += n;
                return Ok(n);
            }
            let left = l.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                ));
            }
            self.conn.set_read_timeout(Some(left.min(l.io_timeout)))?;
        }
        (&*self.conn).read(buf)
    }
}

/// A request's answer sink.
struct SocketWriter(Arc<Connection>);

impl Write for SocketWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Carried by a request from the reactor: gives the connection back when the
/// request is done (or lets it close).
pub(crate) struct Ticket {
    conn: Option<Arc<Connection>>,
    leftover: Arc<Mutex<Leftover>>,
    peer: Option<SocketAddr>,
    /// Whether the connection may serve another request.
    pub(crate) keep_alive: bool,
    shared: Arc<Shared>,
}

impl Ticket {
    /// The request is answered: what is left of its body may be drained for
    /// [`DRAIN_TIME`] at most, or not at all when `expecting_continue`.
    pub(crate) fn answered(&self, expecting_continue: bool) {
        let mut l = self.leftover.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        l.deadline = if expecting_continue {
            now
        } else {
            l.deadline.min(now + DRAIN_TIME)
        };
    }

    /// Called once the request's reader and writer are dropped.
    pub(crate) fn finish(mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.keep_alive || self.shared.close.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = Arc::try_unwrap(conn) else {
            return;
        };
        let mut buf = {
            let mut l = self.leftover.lock().unwrap_or_else(|p| p.into_inner());
            let pos = l.pos;
            let mut data = std::mem::take(&mut l.data);
            data.drain(..pos);
            data
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        if buf.is_empty() {
            let mut pfd = libc::pollfd {
                fd: stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one pollfd that lives across the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, LINGER_MS) } > 0;
            let limits = &self.shared.limits;
            let cap = limits.max_header_bytes + 4 + limits.max_buffered_body;
            if ready && !read_available(&stream, &mut buf, cap) {
                return;
            }
        }
        if !buf.is_empty() {
            match scan(&mut buf, &self.shared.limits) {
                Scan::Complete(end) => {
                    self.shared.dispatch(stream, buf, self.peer, end);
                    return;
                }
                Scan::TooLarge => {
                    self.shared
                        .counters
                        .header_too_large
                        .fetch_add(1, Ordering::Relaxed);
                    reject(stream, 431, "Request Header Fields Too Large");
                    return;
                }
                Scan::Incomplete => {}
            }
        }
        self.shared
            .returned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Returned {
                stream,
                buf,
                peer: self.peer,
            });
        self.shared.wake();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection the reactor waits on.
struct Waiting {
    stream: Connection,
    buf: Vec<u8>,
    peer: Option<SocketAddr>,
    /// When it is closed (idle) or answered 408 (head started).
    deadline: Instant,
    /// Since when it waits (the oldest is evicted first).
    since: Instant,
    head_started: bool,
}

/// What a waiting connection's buffer holds.
enum Scan {
    /// Need more bytes.
    Incomplete,
    /// The head ends at this offset (exclusive) and any small body is there.
    Complete(usize),
    /// The head is over the limit.
    TooLarge,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The body this head declares that is to be read with it (at most `limit`).
fn small_body_len(head: &[u8], limit: usize) -> usize {
    let Ok(text) = std::str::from_utf8(head) else {
        return 0;
    };
    let mut cl = None;
    for line in text.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if k.eq_ignore_ascii_case("Transfer-Encoding") || k.eq_ignore_ascii_case("Expect") {
            return 0;
        }
        if k.eq_ignore_ascii_case("Connection") && v.to_ascii_lowercase().contains("upgrade") {
            return 0;
        }
        if k.eq_ignore_ascii_case("Content-Length") {
            cl = v.trim().parse::<usize>().ok();
        }
    }
    match cl {
        Some(n) if n <= limit => n,
        _ => 0,
    }
}

fn scan(buf: &mut Vec<u8>, limits: &Limits) -> Scan {
    // RFC 9112 §2.2: ignore empty lines before a request line.
    let blank = buf
        .chunks(2)
        .take_while(|c| *c == b"\r\n")
        .count()
        .min(buf.len() / 2);
    if blank > 0 {
        buf.drain(..blank * 2);
    }
    let look = buf.len().min(limits.max_header_bytes + 4);
    match find_head_end(&buf[..look]) {
        Some(end) => {
            let body = small_body_len(&buf[..end], limits.max_buffered_body);
            if buf.len() >= end + body {
                Scan::Complete(end)
            } else {
                Scan::Incomplete
            }
        }
        None if buf.len() > limits.max_header_bytes => Scan::TooLarge,
        None => Scan::Incomplete,
    }
}

/// Reads what a non-blocking connection has into `buf`, up to `cap` bytes in
/// all. `false` when the peer closed or the connection failed.
fn read_available(stream: &Connection, buf: &mut Vec<u8>, cap: usize) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        let room = cap.saturating_sub(buf.len()).min(chunk.len());
        if room == 0 {
            return true;
        }
        match (&*stream).read(&mut chunk[..room]) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if n < room {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// After an answer, how long (ms) a worker waits for the client's next
/// request on a keep-alive connection before giving the connection back to
/// the reactor: a client that sends at once (a benchmark, a scraper's next
/// request) skips a thread hop and a poll round.
const LINGER_MS: libc::c_int = 1;

/// Writes a final status on a non-blocking socket (best effort) and closes it.
fn reject(stream: Connection, status: u16, reason: &str) {
    let text =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = (&stream).write(text.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

pub(crate) fn parse_http_version(version: &str) -> Option<HTTPVersion> {
    match version {
        "HTTP/1.0" => Some(HTTPVersion(1, 0)),
        "HTTP/1.1" => Some(HTTPVersion(1, 1)),
        "HTTP/2.0" => Some(HTTPVersion(2, 0)),
        "HTTP/3.0" => Some(HTTPVersion(3, 0)),
        _ => None,
    }
}

pub(crate) fn parse_request_line(line: &str) -> Option<(Method, String, HTTPVersion)> {
    let mut parts = line.split(' ');
    let method = parts.next().and_then(|w| w.parse().ok())?;
    let path = parts.next().filter(|p| !p.is_empty())?.to_owned();
    let version = parts.next().and_then(parse_http_version)?;
    if parts.next().is_some() {
        return None;
    }
    Some((method, path, version))
}

/// A parsed head, or the status to answer with.
struct Head {
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    keep_alive: bool,
}

fn parse_head(head: &[u8]) -> Result<Head, (u16, &'static str)> {
    const BAD: (u16, &str) = (400, "Bad Request");
    if !head.is_ascii() {
        return Err(BAD);
    }
    let text = std::str::from_utf8(&head[..head.len() - 4]).map_err(|_| BAD)?;
    let mut lines = text.split("\r\n");
    let (method, path, version) = parse_request_line(lines.next().ok_or(BAD)?).ok_or(BAD)?;
    if version > (1, 1) {
        return Err((505, "HTTP Version Not Supported"));
    }
    let mut headers = Vec::new();
    for line in lines {
        // Obsolete line folding (RFC 9112 §5.2) and bare CRs: refused.
        if line.starts_with([' ', '\t']) || line.contains('\r') {
            return Err(BAD);
        }
        headers.push(Header::from_str(line.trim()).map_err(|_| BAD)?);
    }
    fn find<'h>(headers: &'h [Header], name: &'static str) -> impl Iterator<Item = &'h Header> {
        headers.iter().filter(move |h| h.field.equiv(name))
    }
    let chunked = find(&headers, "Transfer-Encoding").next().is_some();
    let lengths: Vec<&str> = find(&headers, "Content-Length")
        .map(|h| h.value.as_str())
        .collect();
    if chunked && !lengths.is_empty() {
        return Err(BAD);
    }
    match lengths.as_slice() {
        [] => {}
        [one] if one.trim().parse::<usize>().is_ok() => {}
        _ => return Err(BAD),
    }
    if let Some(e) = find(&headers, "Expect").next() {
        if !e.value.as_str().eq_ignore_ascii_case("100-continue") {
            return Err((417, "Expectation Failed"));
        }
    }
    let connection = find(&headers, "Connection")
        .next()
        .map(|h| h.value.as_str().to_ascii_lowercase());
    let keep_alive = !chunked
        && match connection.as_deref() {
            Some(v) if v.contains("close") || v.contains("upgrade") => false,
            Some(v) if version == (1, 0) => v.contains("keep-alive"),
            None if version == (1, 0) => false,
            _ => true,
        };
    Ok(Head {
        method,
        path,
        version,
        headers,
        keep_alive,
    })
}

/// The reactor: owns the listener and every waiting connection.
pub(crate) struct Reactor {
    listener: Listener,
    wake_rx: UnixStream,
    limits: Limits,
    shared: Arc<Shared>,
    messages: Arc<MessagesQueue<Message>>,
    waiting: Vec<Waiting>,
    accept_paused_until: Option<Instant>,
}

impl Reactor {
    pub(crate) fn new(
        listener: Listener,
        limits: Limits,
        messages: Arc<MessagesQueue<Message>>,
    ) -> io::Result<(Reactor, Arc<Shared>)> {
        listener.set_nonblocking(true)?;
        // std listens with a backlog of 128: a burst of connects beyond it
        // waits for a SYN retransmit (1 s) while the reactor catches up.
        // listen(2) again on a listening socket only changes the backlog.
        let backlog = limits.max_connections.clamp(1024, 4096) as libc::c_int;
        // SAFETY: listen(2) on a socket this listener owns.
        if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
            log::warn!(
                "http: cannot raise the listen backlog to {backlog}: {}",
                io::Error::last_os_error()
            );
        }
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            limits: limits.clone(),
            messages: Arc::clone(&messages),
            returned: Mutex::new(Vec::new()),
            wake_tx,
            waiting: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            counters: Counters::default(),
            close: AtomicBool::new(false),
        });
        Ok((
            Reactor {
                listener,
                wake_rx,
                limits,
                shared: Arc::clone(&shared),
                messages,
                waiting: Vec::new(),
                accept_paused_until: None,
            },
            shared,
        ))
    }

    fn sync_count(&self) {
        self.shared
            .waiting
            .store(self.waiting.len(), Ordering::Relaxed);
    }

    pub(crate) fn run(mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        while !self.shared.close.load(Ordering::Relaxed) {
            let now = Instant::now();
            let accepting = self.accept_paused_until.is_none_or(|t| t <= now);
            if accepting {
                self.accept_paused_until = None;
            }
            fds.clear();
            let pfd = |fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(pfd(if accepting {
                self.listener.as_raw_fd()
            } else {
                -1
            }));
            fds.push(pfd(self.wake_rx.as_raw_fd()));
            fds.extend(self.waiting.iter().map(|w| pfd(w.stream.as_raw_fd())));
            let next = self
                .waiting
                .iter()
                .map(|w| w.deadline)
                .chain(self.accept_paused_until)
                .min();
            let timeout_ms: libc::c_int = match next {
                None => -1,
                Some(t) => {
                    let d = t.saturating_duration_since(now);
                    // Round up so a deadline is past when poll returns.
                    (d.as_millis() as u64 + 1).min(60_000) as libc::c_int
                }
            };
            // SAFETY: `fds` is a live, exclusively borrowed slice of pollfd
            // structs and its exact length is passed.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("http: poll failed: {e}");
                    std::thread::sleep(ACCEPT_PAUSE);
                }
                continue;
            }
            if self.shared.close.load(Ordering::Relaxed) {
                break;
            }
            // 1. Waiting connections with data, in reverse so swap_remove
            // only moves already-handled entries.
            for i in (0..self.waiting.len()).rev() {
                if fds[2 + i].revents != 0 {
                    self.read_waiting(i);
                }
            }
            // 2. Deadlines.
            let now = Instant::now();
            for i in (0..self.waiting.len()).rev() {
                if self.waiting[i].deadline <= now {
                    let w = self.waiting.swap_remove(i);
                    if w.head_started {
                        self.shared
                            .counters
                            .header_timeouts
                            .fetch_add(1, Ordering::Relaxed);
                        log::debug!("http: {:?}: request head timed out (408)", w.peer);
                        reject(w.stream, 408, "Request Timeout");
                    } else {
                        self.shared
                            .counters
                            .idle_closed
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // 3. Connections handed back after an answer.
            if fds[1].revents != 0 {
                let mut sink = [0u8; 64];
                while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            }
            let returned = std::mem::take(
                &mut *self
                    .shared
                    .returned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            for r in returned {
                let now = Instant::now();
                let head_started = !r.buf.is_empty();
                self.waiting.push(Waiting {
                    stream: r.stream,
                    buf: r.buf,
                    peer: r.peer,
                    deadline: now
                        + if head_started {
                            self.limits.header_timeout
                        } else {
                            self.limits.idle_timeout
                        },
                    since: now,
                    head_started,
                });
                let i = self.waiting.len() - 1;
                if head_started {
                    // A pipelined request may be complete already.
                    self.advance(i);
                }
            }
            // 4. New connections.
            if accepting && fds[0].revents != 0 {
                self.accept_some();
            }
            self.sync_count();
        }
        log::debug!("http: reactor stopped");
    }

    fn accept_some(&mut self) {
        for _ in 0..256 {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    self.shared
                        .counters
                        .accepted
                        .fetch_add(1, Ordering::Relaxed);
                    let open = self.waiting.len() + self.shared.in_flight.load(Ordering::Relaxed);
                    if open >= self.limits.max_connections {
                        let oldest = self
                            .waiting
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, w)| w.since)
                            .map(|(i, _)| i);
                        match oldest {
                            Some(i) => {
                                let w = self.waiting.swap_remove(i);
                                self.shared.counters.evicted.fetch_add(1, Ordering::Relaxed);
                                log::debug!(
                                    "http: {} connections open: closing {:?}, waiting longest",
                                    open,
                                    w.peer
                                );
                                if w.head_started {
                                    reject(w.stream, 503, "Service Unavailable");
                                }
                            }
                            None => {
                                self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                                log::debug!("http: {open} connections all busy: refusing {peer:?}");
                                continue;
                            }
                        }
                    }
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let now = Instant::now();
                    self.waiting.push(Waiting {
                        stream,
                        buf: Vec::new(),
                        peer,
                        deadline: now + self.limits.idle_timeout,
                        since: now,
                        head_started: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let errno = e.raw_os_error();
                    if matches!(
                        errno,
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) {
                        log::warn!(
                            "http: cannot accept: {e}; pausing {} ms",
                            ACCEPT_PAUSE.as_millis()
                        );
                        self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                        return;
                    }
                    // ECONNABORTED and the like concern one client only.
                    log::debug!("http: accept: {e}");
                }
            }
        }
    }

    /// Reads what a waiting connection has and acts on it.
    fn read_waiting(&mut self, i: usize) {
        let cap = self.limits.max_header_bytes + 4 + self.limits.max_buffered_body;
        let w = &mut self.waiting[i];
        if !read_available(&w.stream, &mut w.buf, cap) {
            self.waiting.swap_remove(i);
            return;
        }
        self.advance(i);
    }

    /// Decides on a waiting connection from its buffer: wait, reject or hand on.
    fn advance(&mut self, i: usize) {
        let w = &mut self.waiting[i];
        match scan(&mut w.buf, &self.limits) {
            Scan::Incomplete => {
                if !w.buf.is_empty() && !w.head_started {
                    w.head_started = true;
                    w.deadline = Instant::now() + self.limits.header_timeout;
                }
            }
            Scan::TooLarge => {
                let w = self.waiting.swap_remove(i);
                self.shared
                    .counters
                    .header_too_large
                    .fetch_add(1, Ordering::Relaxed);
                log::debug!("http: {:?}: request head over the limit (431)", w.peer);
                reject(w.stream, 431, "Request Header Fields Too Large");
            }
            Scan::Complete(end) => {
                let w = self.waiting.swap_remove(i);
                self.dispatch(w, end);
            }
        }
    }

    fn dispatch(&mut self, w: Waiting, end: usize) {
        self.shared.dispatch(w.stream, w.buf, w.peer, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 64,
            ..Limits::default()
        }
    }

    #[test]
    fn scan_waits_for_the_head_and_a_small_body() {
        let l = limits();
        let mut b = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        assert!(matches!(scan(&mut b, &l), Scan::Incomplete));
        assert!(b.starts_with(b"GET"), "leading blank line dropped");
        b.extend_from_slice(b"\r\n");
        assert!(matches!(scan(&mut b, &l), Scan::Complete(27)));
        let mut p = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab".to_vec();
        assert!(matches!(scan(&mut p, &l), Scan::Incomplete));
        p.push(b'c');
        assert!(matches!(scan(&mut p, &l), Scan::Complete(_)));
        let mut big = vec![b'a'; 65];
        assert!(matches!(scan(&mut big, &l), Scan::TooLarge));
    }

    #[test]
    fn heads_are_parsed_strictly() {
        let ok = parse_head(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert!(ok.keep_alive);
        assert_eq!(ok.path, "/x");
        let close = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!close.keep_alive);
        assert!(!parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        for bad in [
            &b"GET / HTTP/1.1 x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n folded\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad).err().map(|e| e.0), Some(400), "{bad:?}");
        }
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n").err().map(|e| e.0),
            Some(505)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n")
                .err()
                .map(|e| e.0),
            Some(417)
        );
    }
}
