//! One HTTP/1.1 keep-alive connection of an event loop, as a state machine
//! driven by readiness events:
//!
//! `Closed` → (request) connect → `Connecting` → `Writing` the request →
//! `Reading` the status line, headers and body (by `Content-Length`,
//! chunked, or to the close) → the request is finished → `Idle` (kept
//! alive) or `Closed` (the server closed it, or the answer was not
//! delimited) → the next request reuses or reconnects.
//!
//! What the bytes mean is [`Exchange`]'s, which does no I/O (and is tested
//! with byte slices split anywhere); [`Conn`] only moves bytes between the
//! socket and it. A request on a kept-alive connection that the server had
//! closed meanwhile (no byte of an answer came) is sent again once on a new
//! connection, as an HTTP client does.

use std::io::{ErrorKind as Io, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::http::{Parsed, Response};
use crate::stream::{Step, Stream};
use crate::tokenizer::Tokenizer;
use crate::workload::{Api, ErrorKind, Outcome};

/// Longest SSE line kept (a longer one breaks the stream).
const MAX_LINE: usize = 8 * 1024 * 1024;

/// Where an exchange stands after some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The answer needs more bytes.
    More,
    /// The request is over; `reusable`: the connection may carry the next.
    Ended {
        /// The connection is at a response boundary and kept alive.
        reusable: bool,
    },
}

/// One request's answer being read, without I/O: the HTTP framing, and for
/// a successful OpenAI answer its SSE lines fed to [`Stream`] as they
/// complete (each timed when its last byte was read).
#[derive(Debug)]
pub struct Exchange<'t> {
    api: Api,
    sent: Instant,
    tokenizer: Option<&'t Tokenizer>,
    response: Response,
    stream: Option<Stream<'t>>,
    line: Vec<u8>,
    step: Step,
    out: Outcome,
    got_bytes: bool,
}

impl<'t> Exchange<'t> {
    /// The answer to a request of `api` measured from `sent` (`head_request`:
    /// a HEAD, whose answer has no body).
    pub fn new(
        api: Api,
        head_request: bool,
        sent: Instant,
        tokenizer: Option<&'t Tokenizer>,
    ) -> Exchange<'t> {
        Exchange {
            api,
            sent,
            tokenizer,
            response: Response::new(head_request),
            stream: None,
            line: Vec::new(),
            step: Step::More,
            out: Outcome::default(),
            got_bytes: false,
        }
    }

    /// True once any byte of the answer came.
    pub fn got_bytes(&self) -> bool {
        self.got_bytes
    }

    /// Reads `bytes`, which arrived at `now`.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Progress {
        if !bytes.is_empty() {
            self.got_bytes = true;
        }
        let Exchange {
            api,
            sent,
            tokenizer,
            response,
            stream,
            line,
            step,
            out,
            ..
        } = self;
        let (api, sent, tokenizer) = (*api, *sent, *tokenizer);
        let mut body = |status: u16, data: &[u8]| {
            if status >= 400 || !api.is_openai() || *step != Step::More {
                return;
            }
            let s = stream.get_or_insert_with(|| Stream::counting(api, sent, tokenizer));
            sse(s, line, data, now, out, step);
        };
        let parsed = response.feed(bytes, &mut body);
        match parsed {
            Err(_) => {
                let kind = if self.response.has_head() {
                    ErrorKind::StreamBroken
                } else {
                    ErrorKind::Transport
                };
                self.fail(kind);
                Progress::Ended { reusable: false }
            }
            Ok(_) if self.step == Step::Failed => Progress::Ended { reusable: false },
            Ok(Parsed::More) => Progress::More,
            Ok(Parsed::Complete { left }) => {
                self.flush_line(now);
                Progress::Ended {
                    reusable: left == 0 && self.response.keep_alive(),
                }
            }
        }
    }

    /// The connection closed at `now`: the answer ends here.
    pub fn eof(&mut self, now: Instant) -> Progress {
        match self.response.eof() {
            Ok(()) => self.flush_line(now),
            Err(_) if !self.response.has_head() => self.fail(ErrorKind::Transport),
            // Cut short inside the body (after `[DONE]` it does not matter).
            Err(_) => self.fail(ErrorKind::StreamBroken),
        }
        Progress::Ended { reusable: false }
    }

    /// The request failed with `kind` (unless its stream was complete
    /// already, or another failure came first).
    pub fn fail(&mut self, kind: ErrorKind) {
        if self.step == Step::Done || self.out.error.is_some() {
            return;
        }
        self.out.error = Some(kind);
    }

    /// A last line without its newline, at the end of the body.
    fn flush_line(&mut self, now: Instant) {
        if self.line.is_empty() || self.step != Step::More {
            return;
        }
        if let Some(s) = self.stream.as_mut() {
            let line = std::mem::take(&mut self.line);
            match std::str::from_utf8(&line) {
                Ok(text) => self.step = s.line(text, now, &mut self.out),
                Err(_) => {
                    self.out.error = Some(ErrorKind::StreamBroken);
                    self.step = Step::Failed;
                }
            }
        }
    }

    /// The outcome, the request having ended at `now`.
    pub fn finish(self, now: Instant) -> Outcome {
        let mut out = self.out;
        let status = self.response.status();
        out.status = status;
        match status {
            Some(s) if s < 400 && self.api.is_openai() => {
                let stream = self
                    .stream
                    .unwrap_or_else(|| Stream::counting(self.api, self.sent, self.tokenizer));
                stream.finish(&mut out);
            }
            Some(s) => {
                out.e2el = now.saturating_duration_since(self.sent);
                if s >= 400 {
                    out.error = Some(ErrorKind::HttpStatus);
                }
            }
            None => {
                out.e2el = now.saturating_duration_since(self.sent);
                if out.error.is_none() {
                    out.error = Some(ErrorKind::Transport);
                }
            }
        }
        out
    }
}

/// Splits `data` into lines, feeding each complete one to the stream.
fn sse(
    s: &mut Stream<'_>,
    line: &mut Vec<u8>,
    mut data: &[u8],
    now: Instant,
    out: &mut Outcome,
    step: &mut Step,
) {
    while !data.is_empty() && *step == Step::More {
        let (piece, complete) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..=i], true),
            None => (data, false),
        };
        data = &data[piece.len()..];
        line.extend_from_slice(piece);
        if line.len() > MAX_LINE {
            out.error = Some(ErrorKind::StreamBroken);
            *step = Step::Failed;
            return;
        }
        if !complete {
            return;
        }
        *step = match std::str::from_utf8(line) {
            Ok(text) => s.line(text, now, out),
            Err(_) => {
                out.error = Some(ErrorKind::StreamBroken);
                Step::Failed
            }
        };
        line.clear();
    }
}

/// One request a connection carries.
#[derive(Debug)]
pub struct Job<'t> {
    /// Request number (its body is `n mod bodies`).
    pub n: u64,
    /// Which prebuilt request it sends.
    pub index: usize,
    /// What latency is measured from: the send (closed loop) or the due
    /// time (open loop).
    pub sent: Instant,
    /// Open loop: due to the send.
    pub wait: Option<Duration>,
    /// When it times out.
    pub deadline: Instant,
    exchange: Exchange<'t>,
    written: usize,
    addr: usize,
    retried: bool,
    head_request: bool,
}

impl<'t> Job<'t> {
    /// Request `n` sending prebuilt request `index`, measured from `sent`,
    /// timed out at `deadline`.
    pub fn new(
        api: Api,
        head_request: bool,
        tokenizer: Option<&'t Tokenizer>,
        (n, index): (u64, usize),
        sent: Instant,
        wait: Option<Duration>,
        deadline: Instant,
    ) -> Job<'t> {
        Job {
            n,
            index,
            sent,
            wait,
            deadline,
            exchange: Exchange::new(api, head_request, sent, tokenizer),
            written: 0,
            addr: 0,
            retried: false,
            head_request,
        }
    }
}

/// A finished request.
#[derive(Debug)]
pub struct Finished {
    /// What it measured.
    pub outcome: Outcome,
    /// Its request number.
    pub n: u64,
    /// Which prebuilt request it sent.
    pub index: usize,
    /// What its latency is measured from.
    pub sent: Instant,
    /// Its wait for a connection (open loop).
    pub wait: Option<Duration>,
}

/// What a connection needs from its loop while it runs.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The loop's poll registry.
    pub registry: &'a Registry,
    /// This connection's token.
    pub token: Token,
    /// The service's addresses, tried in order.
    pub addrs: &'a [SocketAddr],
    /// The prebuilt requests.
    pub requests: &'a [Vec<u8>],
    /// The loop's read buffer.
    pub buf: &'a mut [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Connecting,
    Writing,
    Reading,
    Idle,
}

/// One keep-alive connection and the request it carries, if any.
#[derive(Debug)]
pub struct Conn<'t> {
    sock: Option<TcpStream>,
    state: State,
    /// Requests finished on the current socket.
    served: u64,
    job: Option<Job<'t>>,
}

impl Default for Conn<'_> {
    fn default() -> Self {
        Conn {
            sock: None,
            state: State::Closed,
            served: 0,
            job: None,
        }
    }
}

impl<'t> Conn<'t> {
    /// True while it carries a request.
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// Starts `job` (the connection must be free); the request may finish at once.
    pub fn start(&mut self, job: Job<'t>, ctx: &mut Ctx<'_>) -> Option<Finished> {
        self.job = Some(job);
        if self.state == State::Idle {
            self.state = State::Writing;
        }
        self.drive(ctx)
    }

    /// A readiness event came.
    pub fn ready(&mut self, ctx: &mut Ctx<'_>) -> Option<Finished> {
        self.drive(ctx)
    }

    /// Ends a request past its deadline as a timeout (closing the connection).
    pub fn expire(&mut self, now: Instant, registry: &Registry) -> Option<Finished> {
        let due = self.job.as_ref().is_some_and(|j| now >= j.deadline);
        if !due {
            return None;
        }
        if let Some(j) = self.job.as_mut() {
            j.exchange.fail(ErrorKind::Timeout);
        }
        self.end(false, now, registry)
    }

    fn close(&mut self, registry: &Registry) {
        if let Some(mut s) = self.sock.take() {
            let _ = registry.deregister(&mut s);
        }
        self.state = State::Closed;
        self.served = 0;
    }

    /// Ends the current request; `reusable`: keep the connection.
    fn end(&mut self, reusable: bool, now: Instant, registry: &Registry) -> Option<Finished> {
        let job = self.job.take()?;
        if reusable {
            self.served += 1;
            self.state = State::Idle;
        } else {
            self.close(registry);
        }
        Some(Finished {
            outcome: job.exchange.finish(now),
            n: job.n,
            index: job.index,
            sent: job.sent,
            wait: job.wait,
        })
    }

    /// An I/O failure of the request: sent again once on a new connection
    /// when it was a reused one and no answer had begun, else its end.
    fn io_failed(&mut self, e: &std::io::Error, ctx: &mut Ctx<'_>) -> Option<Finished> {
        let reused = self.served > 0;
        let Some(job) = self.job.as_mut() else {
            self.close(ctx.registry);
            return None;
        };
        if reused && !job.retried && !job.exchange.got_bytes() {
            job.retried = true;
            job.written = 0;
            job.exchange = Exchange::new(
                job.exchange.api,
                job.head_request,
                job.sent,
                job.exchange.tokenizer,
            );
            self.close(ctx.registry);
            return self.drive(ctx);
        }
        let kind = match e.kind() {
            Io::ConnectionRefused
            | Io::AddrNotAvailable
            | Io::NotConnected
            | Io::HostUnreachable
            | Io::NetworkUnreachable
                if self.served == 0 && !job.exchange.got_bytes() =>
            {
                ErrorKind::Connect
            }
            Io::TimedOut => ErrorKind::Timeout,
            _ if job.exchange.response.has_head() => ErrorKind::StreamBroken,
            _ => ErrorKind::Transport,
        };
        job.exchange.fail(kind);
        self.end(false, Instant::now(), ctx.registry)
    }

    /// A connect attempt failed: the next address, or a connect error.
    fn connect_failed(&mut self, ctx: &mut Ctx<'_>) -> Option<Finished> {
        self.close(ctx.registry);
        let job = self.job.as_mut()?;
        job.addr += 1;
        if job.addr < ctx.addrs.len() {
            return self.drive(ctx);
        }
        job.exchange.fail(ErrorKind::Connect);
        self.end(false, Instant::now(), ctx.registry)
    }

    /// Makes every step the socket allows now.
    fn drive(&mut self, ctx: &mut Ctx<'_>) -> Option<Finished> {
        loop {
            match self.state {
                State::Closed => {
                    let job = self.job.as_ref()?;
                    let Some(&addr) = ctx.addrs.get(job.addr) else {
                        return self.connect_failed(ctx);
                    };
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        return self.connect_failed(ctx);
                    };
                    if ctx
                        .registry
                        .register(&mut s, ctx.token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        return self.connect_failed(ctx);
                    }
                    let _ = s.set_nodelay(true);
                    self.sock = Some(s);
                    self.served = 0;
                    self.state = State::Connecting;
                }
                State::Connecting => {
                    let s = self.sock.as_ref()?;
                    if !matches!(s.take_error(), Ok(None)) {
                        return self.connect_failed(ctx);
                    }
                    match s.peer_addr() {
                        Ok(_) => self.state = State::Writing,
                        Err(e) if e.kind() == Io::NotConnected => return None,
                        Err(_) => return self.connect_failed(ctx),
                    }
                }
                State::Writing => {
                    let (s, job) = (self.sock.as_mut()?, self.job.as_mut()?);
                    let req = ctx.requests.get(job.index).map_or(&[][..], Vec::as_slice);
                    while job.written < req.len() {
                        match s.write(&req[job.written..]) {
                            Ok(0) => {
                                let e = std::io::Error::from(Io::WriteZero);
                                return self.io_failed(&e, ctx);
                            }
                            Ok(n) => job.written += n,
                            Err(e) if e.kind() == Io::WouldBlock => return None,
                            Err(e) if e.kind() == Io::Interrupted => {}
                            Err(e) => return self.io_failed(&e, ctx),
                        }
                    }
                    quickack(s);
                    self.state = State::Reading;
                }
                State::Reading => {
                    let (s, job) = (self.sock.as_mut()?, self.job.as_mut()?);
                    let read = s.read(ctx.buf);
                    if matches!(read, Ok(n) if n > 0) {
                        quickack(s);
                    }
                    match read {
                        Ok(0) => {
                            if self.served > 0 && !job.retried && !job.exchange.got_bytes() {
                                let e = std::io::Error::from(Io::ConnectionReset);
                                return self.io_failed(&e, ctx);
                            }
                            job.exchange.eof(Instant::now());
                            return self.end(false, Instant::now(), ctx.registry);
                        }
                        Ok(n) => {
                            let now = Instant::now();
                            let data = ctx.buf.get(..n).unwrap_or_default();
                            if let Progress::Ended { reusable } = job.exchange.feed(data, now) {
                                return self.end(reusable, now, ctx.registry);
                            }
                        }
                        Err(e) if e.kind() == Io::WouldBlock => return None,
                        Err(e) if e.kind() == Io::Interrupted => {}
                        Err(e) => return self.io_failed(&e, ctx),
                    }
                }
                State::Idle => {
                    // Between requests: only a close (or junk) can come.
                    let s = self.sock.as_mut()?;
                    match s.read(ctx.buf) {
                        Err(e) if e.kind() == Io::WouldBlock => return None,
                        Err(e) if e.kind() == Io::Interrupted => {}
                        _ => {
                            self.close(ctx.registry);
                            return None;
                        }
                    }
                }
            }
        }
    }
}

/// `TCP_QUICKACK` on `s` ([`gpu_metrics::transport::quickack`]): a
/// kept-alive connection would otherwise go into delayed-ACK mode, and a
/// server that writes an answer's head and body in two segments with Nagle
/// on would wait up to 40 ms for the ACK of the first.
fn quickack(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    gpu_metrics::transport::quickack(s.as_raw_fd());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `job` on `conn` to its end over real sockets (`poll` waits at
    /// most 10 s a turn).
    fn drive<'t>(
        conn: &mut Conn<'t>,
        job: Job<'t>,
        poll: &mut mio::Poll,
        events: &mut mio::Events,
        addrs: &[std::net::SocketAddr],
        requests: &[Vec<u8>],
        buf: &mut [u8],
    ) -> Finished {
        let mut done = conn.start(
            job,
            &mut Ctx {
                registry: poll.registry(),
                token: Token(0),
                addrs,
                requests,
                buf,
            },
        );
        while done.is_none() {
            poll.poll(events, Some(Duration::from_secs(10))).unwrap();
            done = conn.ready(&mut Ctx {
                registry: poll.registry(),
                token: Token(0),
                addrs,
                requests,
                buf,
            });
        }
        done.unwrap()
    }

    fn sse_answer() -> Vec<u8> {
        let mut body = String::new();
        for i in 0..3 {
            body.push_str(&format!(
                "data: {{\"choices\": [{{\"index\": 0, \"text\": \"t{i} \"}}]}}\n\n"
            ));
        }
        body.push_str(
            "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 2, \"completion_tokens\": 3}}\n\n",
        );
        body.push_str("data: [DONE]\n\n");
        // Chunks that cut lines in the middle.
        let mut wire =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for piece in body.as_bytes().chunks(7) {
            wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    /// Feeds `wire` in pieces cut at `cuts`; the progress and the outcome.
    fn run(api: Api, wire: &[u8], cuts: &[usize]) -> (Progress, Outcome) {
        let t0 = Instant::now();
        let mut x = Exchange::new(api, false, t0, None);
        let mut last = 0;
        let mut p = Progress::More;
        for &c in cuts.iter().chain(std::iter::once(&wire.len())) {
            let c = c.clamp(last, wire.len());
            p = x.feed(&wire[last..c], Instant::now());
            last = c;
            if p != Progress::More {
                break;
            }
        }
        (p, x.finish(Instant::now()))
    }

    #[test]
    fn a_stream_split_anywhere_gives_the_same_outcome() {
        let wire = sse_answer();
        for a in 0..wire.len() {
            for b in [a + 1, a + 2, a + 13, wire.len() - 1] {
                let (p, o) = run(Api::Completions, &wire, &[a, b]);
                assert_eq!(p, Progress::Ended { reusable: true }, "cut {a}/{b}");
                assert_eq!(o.error, None, "cut {a}/{b}: {o:?}");
                assert_eq!(o.output_tokens, 3, "cut {a}/{b}");
                assert_eq!(o.input_tokens, Some(2), "cut {a}/{b}");
                assert_eq!(o.status, Some(200));
                assert!(o.ttft.is_some());
            }
        }
    }

    #[test]
    fn a_stream_without_done_is_broken_and_an_error_status_is_drained() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 49\r\n\r\ndata: {\"choices\": [{\"index\": 0, \"text\": \"x\"}]}\n\n\n";
        let (p, o) = run(Api::Chat, wire, &[40]);
        assert_eq!(p, Progress::Ended { reusable: true });
        assert_eq!(o.error, Some(ErrorKind::StreamBroken));
        let wire = b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\n\r\nbusy!";
        let (p, o) = run(Api::Chat, wire, &[20, 41]);
        assert_eq!(p, Progress::Ended { reusable: true });
        assert_eq!(
            (o.error, o.status),
            (Some(ErrorKind::HttpStatus), Some(503))
        );
        let (p, o) = run(
            Api::Http,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            &[3],
        );
        assert_eq!(p, Progress::Ended { reusable: true });
        assert_eq!((o.error, o.status), (None, Some(200)));
    }

    #[test]
    fn an_error_event_or_junk_ends_the_stream_at_once() {
        let wire =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11\r\ndata: {\"error\": 1}\r\n";
        let (p, o) = run(Api::Completions, wire, &[50, 60]);
        assert_eq!(p, Progress::Ended { reusable: false });
        assert_eq!(o.error, Some(ErrorKind::StreamBroken));
        let (p, o) = run(
            Api::Http,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            &[],
        );
        assert_eq!(p, Progress::Ended { reusable: false });
        assert_eq!(o.error, Some(ErrorKind::StreamBroken));
        let (p, o) = run(Api::Http, b"FTP nonsense\r\n\r\n", &[]);
        assert_eq!(p, Progress::Ended { reusable: false });
        assert_eq!(o.error, Some(ErrorKind::Transport));
    }

    #[test]
    fn eof_cuts_a_body_short_but_ends_one_delimited_by_the_close() {
        let t0 = Instant::now();
        let mut x = Exchange::new(Api::Http, false, t0, None);
        assert_eq!(x.feed(b"HTTP/1.1 200 OK\r\n\r\nsome", t0), Progress::More);
        assert_eq!(x.eof(t0), Progress::Ended { reusable: false });
        assert_eq!(x.finish(t0).error, None);
        let mut x = Exchange::new(Api::Http, false, t0, None);
        x.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsome", t0);
        x.eof(t0);
        assert_eq!(x.finish(t0).error, Some(ErrorKind::StreamBroken));
        let mut x = Exchange::new(Api::Chat, false, t0, None);
        x.eof(t0);
        assert_eq!(x.finish(t0).error, Some(ErrorKind::Transport));
        // A timeout after `[DONE]` is no failure.
        let wire = sse_answer();
        let done_at = wire.len() - 5;
        let mut x = Exchange::new(Api::Completions, false, t0, None);
        assert_eq!(x.feed(&wire[..done_at], t0), Progress::More);
        x.fail(ErrorKind::Timeout);
        assert_eq!(x.finish(t0).error, None);
    }

    #[test]
    fn a_connection_carries_requests_and_reconnects_after_a_close() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Two answers on the first connection, written in odd pieces, then a
        // close; one answer on the second.
        let server = std::thread::spawn(move || {
            for answers in [2, 1] {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                for _ in 0..answers {
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                        line.clear();
                    }
                    for piece in [
                        &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
                        b"ngth: 2\r\n\r",
                        b"\nok",
                    ] {
                        w.write_all(piece).unwrap();
                        w.flush().unwrap();
                    }
                }
            }
        });
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        let requests = vec![b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()];
        let addrs = [addr];
        let mut buf = vec![0u8; 4096];
        let mut conn = Conn::default();
        let mut served = 0;
        for n in 0..3 {
            let now = Instant::now();
            let job = Job::new(
                Api::Http,
                false,
                None,
                (n, 0),
                now,
                None,
                now + Duration::from_secs(10),
            );
            let f = drive(
                &mut conn,
                job,
                &mut poll,
                &mut events,
                &addrs,
                &requests,
                &mut buf,
            );
            assert_eq!(
                (f.n, f.outcome.error, f.outcome.status),
                (n, None, Some(200))
            );
            served += 1;
        }
        assert_eq!(served, 3);
        server.join().unwrap();
    }

    #[test]
    fn a_refused_connect_is_a_connect_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        let requests = vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()];
        let addrs = [port];
        let mut buf = vec![0u8; 1024];
        let now = Instant::now();
        let mut conn = Conn::default();
        let job = Job::new(
            Api::Http,
            false,
            None,
            (0, 0),
            now,
            None,
            now + Duration::from_secs(10),
        );
        let f = drive(
            &mut conn,
            job,
            &mut poll,
            &mut events,
            &addrs,
            &requests,
            &mut buf,
        );
        assert_eq!(f.outcome.error, Some(ErrorKind::Connect));
        assert!(!conn.busy());
    }
}
