//! Many concurrent SSE streams against a stub whose timings are known: what
//! the load generator holds them with (threads, peak RSS) and how close its
//! TTFT and ITL come to the truth.
//!
//! `cargo bench -p aif-loadgen --bench streams [-- STREAMS TIMING_STREAMS SECONDS]`
//! (defaults 10000, 2000, 20). It starts the stub here, in Rust on [`mio`]
//! (one event loop, every token due at an absolute time from the request's
//! arrival, so the server is not the limit), then runs the release
//! `aif-loadgen --engine events`:
//! 1. `STREAMS` clients, closed loop, long streams: the most threads and the
//!    peak RSS (`VmHWM`) of the process, read from `/proc` while it runs;
//! 2. `TIMING_STREAMS` clients: median TTFT and ITL against the stub's
//!    first-token delay and token interval, and the stub's own lateness
//!    (how late its writes left), so the error is not blamed on the wrong
//!    side.
//!
//! Prints one line per figure; the process exits 1 when a run fails. Only
//! 127.0.0.1.

use std::collections::{BinaryHeap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// The stub's first token comes this long after the request arrived.
const FIRST: Duration = Duration::from_millis(100);

/// Then one token every this long.
const EVERY: Duration = Duration::from_millis(50);

const LISTENER: Token = Token(usize::MAX);

/// The stub's precise wake-up (the load generator's own timerfd): `poll`'s
/// whole milliseconds would make every first token up to 1 ms late.
const TIMER: Token = Token(usize::MAX - 1);

/// One connection of the stub.
struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The answer in progress: (arrival, tokens sent, tokens in all).
    answer: Option<(Instant, u64, u64)>,
}

/// The stub: SSE answers of `tokens` tokens to every POST, keep-alive.
struct Stub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Sum and count of write lateness (µs) and its maximum.
    late_sum_us: Arc<AtomicU64>,
    late_n: Arc<AtomicU64>,
    late_max_us: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    fn start(tokens: u64) -> std::io::Result<Stub> {
        let mut listener =
            TcpListener::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let late_sum_us = Arc::new(AtomicU64::new(0));
        let late_n = Arc::new(AtomicU64::new(0));
        let late_max_us = Arc::new(AtomicU64::new(0));
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let (s, sum, n, max) = (
            Arc::clone(&stop),
            Arc::clone(&late_sum_us),
            Arc::clone(&late_n),
            Arc::clone(&late_max_us),
        );
        let thread = std::thread::spawn(move || serve(poll, listener, tokens, &s, &sum, &n, &max));
        Ok(Stub {
            addr,
            stop,
            late_sum_us,
            late_n,
            late_max_us,
            thread: Some(thread),
        })
    }

    /// Mean and max lateness of the stub's writes, ms; resets them.
    fn lateness_ms(&self) -> (f64, f64) {
        let n = self.late_n.swap(0, Ordering::AcqRel).max(1);
        let sum = self.late_sum_us.swap(0, Ordering::AcqRel);
        let max = self.late_max_us.swap(0, Ordering::AcqRel);
        (sum as f64 / n as f64 / 1000.0, max as f64 / 1000.0)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut poll: Poll,
    listener: TcpListener,
    tokens: u64,
    stop: &AtomicBool,
    late_sum: &AtomicU64,
    late_n: &AtomicU64,
    late_max: &AtomicU64,
) {
    let mut events = Events::with_capacity(4096);
    let mut timer = aif_loadgen::evloop::timer::Timer::new(poll.registry(), TIMER).ok();
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next_id = 0usize;
    // (due, connection): a min-heap through Reverse.
    let mut due: BinaryHeap<std::cmp::Reverse<(Instant, usize)>> = BinaryHeap::new();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let next = due.peek().map(|d| d.0.0);
        let armed = match (&mut timer, next) {
            (Some(t), Some(at)) => t.arm(at),
            _ => false,
        };
        let timeout = match next {
            Some(_) if armed => Duration::from_millis(100),
            Some(at) => at.saturating_duration_since(now),
            None => Duration::from_millis(100),
        }
        .min(Duration::from_millis(100));
        if poll.poll(&mut events, Some(timeout)).is_err() {
            continue;
        }
        for ev in &events {
            if ev.token() == TIMER {
                if let Some(t) = &mut timer {
                    t.fired();
                }
                continue;
            }
            if ev.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let id = next_id;
                    next_id += 1;
                    if poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(id),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        conns.insert(
                            id,
                            Conn {
                                stream,
                                inbuf: Vec::new(),
                                out: Vec::new(),
                                answer: None,
                            },
                        );
                    }
                }
                continue;
            }
            let id = ev.token().0;
            let Some(c) = conns.get_mut(&id) else {
                continue;
            };
            let mut closed = false;
            let mut buf = [0u8; 16384];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            begin_answer(c, id, tokens, &mut due);
            if closed || flush(c).is_err() {
                let _ = poll.registry().deregister(&mut c.stream);
                conns.remove(&id);
            }
        }
        // Tokens due by now.
        let now = Instant::now();
        while let Some(std::cmp::Reverse((at, id))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            let Some(c) = conns.get_mut(&id) else {
                continue;
            };
            let Some((arrived, sent, all)) = c.answer else {
                continue;
            };
            let late = now.saturating_duration_since(at).as_micros() as u64;
            late_sum.fetch_add(late, Ordering::Relaxed);
            late_n.fetch_add(1, Ordering::Relaxed);
            late_max.fetch_max(late, Ordering::Relaxed);
            let data = format!("data: {{\"choices\":[{{\"index\":0,\"text\":\"t{sent} \"}}]}}\n\n");
            c.out
                .extend_from_slice(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes());
            let sent = sent + 1;
            if sent == all {
                let usage = format!(
                    "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":{all}}}}}\n\n"
                );
                for d in [usage.as_str(), "data: [DONE]\n\n"] {
                    c.out
                        .extend_from_slice(format!("{:x}\r\n{d}\r\n", d.len()).as_bytes());
                }
                c.out.extend_from_slice(b"0\r\n\r\n");
                c.answer = None;
            } else {
                c.answer = Some((arrived, sent, all));
                due.push(std::cmp::Reverse((
                    arrived + FIRST + EVERY * sent as u32,
                    id,
                )));
            }
            if flush(c).is_err() {
                let _ = poll.registry().deregister(&mut c.stream);
                conns.remove(&id);
            }
            // A request already read behind the finished answer.
            if let Some(c) = conns.get_mut(&id) {
                begin_answer(c, id, tokens, &mut due);
            }
        }
    }
}

/// Starts the answer to a complete request waiting in `c`'s input (none
/// while an answer is in progress): the head now, the first token due
/// [`FIRST`] after the request's arrival.
fn begin_answer(
    c: &mut Conn,
    id: usize,
    tokens: u64,
    due: &mut BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
) {
    if c.answer.is_some() {
        return;
    }
    let Some(len) = complete_request(&c.inbuf) else {
        return;
    };
    c.inbuf.drain(..len);
    let arrived = Instant::now();
    c.answer = Some((arrived, 0, tokens));
    c.out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    due.push(std::cmp::Reverse((arrived + FIRST, id)));
}

/// The length of the first complete request (head and body) in `buf`.
fn complete_request(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).ok()?;
    let len: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    (buf.len() >= head + len).then_some(head + len)
}

fn flush(c: &mut Conn) -> std::io::Result<()> {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `field` of `/proc/PID/status` in its unit (kB for memory), if readable.
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One run of `clients` streams for `seconds`; returns the result JSON and
/// the most threads and the peak RSS (MiB) seen.
fn run(stub: &Stub, clients: usize, seconds: u64, tokens: u64) -> (serde_json::Value, u64, f64) {
    let dir = std::env::temp_dir().join(format!("aif-streams-{}-{clients}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let result = dir.join("r.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aif-loadgen"))
        .args([
            "--url",
            &format!("http://{}", stub.addr),
            "--engine",
            "events",
        ])
        .args(["--workload", "completions", "--prompt", "x"])
        .args(["--max-tokens", &tokens.to_string()])
        .args(["--concurrency", &clients.to_string()])
        .args([
            "--duration",
            &format!("{seconds}s"),
            "--progress-every",
            "0",
        ])
        .args(["--timeout", "120s"])
        .arg("--result-file")
        .arg(&result)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start aif-loadgen: {e}"));
    let pid = child.id();
    let (mut threads, mut hwm_kb) = (0, 0);
    loop {
        if let Some(t) = proc_status(pid, "Threads") {
            threads = threads.max(t);
        }
        if let Some(h) = proc_status(pid, "VmHWM") {
            hwm_kb = hwm_kb.max(h);
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    eprintln!("aif-loadgen exited with {status}");
                    std::process::exit(1);
                }
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("wait: {e}"),
        }
    }
    let text = std::fs::read_to_string(&result).unwrap_or_else(|e| panic!("result: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("result: {e}"));
    (v, threads, hwm_kb as f64 / 1024.0)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let streams = args.first().copied().unwrap_or(10_000) as usize;
    let timing = args.get(1).copied().unwrap_or(2_000) as usize;
    let seconds = args.get(2).copied().unwrap_or(20);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Raise the descriptor limit to what the streams need (both ends here).
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }

    // 1. Many streams: tokens for longer than the run, so every client holds
    // its stream the whole time.
    let long = seconds * 1000 / EVERY.as_millis() as u64 + 10;
    let stub = Stub::start(long).unwrap_or_else(|e| panic!("stub: {e}"));
    let (r, threads, rss) = run(&stub, streams, seconds, long);
    let (late_mean, late_max) = stub.lateness_ms();
    println!(
        "streams {streams}: threads max {threads} (limit cores + 4 = {}), peak RSS {rss:.1} MiB (limit 64), clients {}, completed {}, incomplete {}; stub lateness mean {late_mean:.3} ms max {late_max:.3} ms",
        cores + 4,
        r["clients"],
        r["completed"],
        r["incomplete"]
    );
    drop(stub);

    // 2. Timing: short streams, many requests.
    let tokens = 20;
    let stub = Stub::start(tokens).unwrap_or_else(|e| panic!("stub: {e}"));
    let (r, threads, rss) = run(&stub, timing, seconds, tokens);
    let (late_mean, late_max) = stub.lateness_ms();
    let ms = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let (ttft, itl) = (ms("median_ttft_ms"), ms("median_itl_ms"));
    let (want_ttft, want_itl) = (FIRST.as_secs_f64() * 1e3, EVERY.as_secs_f64() * 1e3);
    println!(
        "timing {timing} streams: completed {}, median TTFT {ttft:.3} ms (stub {want_ttft} ms, error {:+.3} ms), median ITL {itl:.3} ms (stub {want_itl} ms, error {:+.3} ms), p99 ITL {:.3} ms; stub lateness mean {late_mean:.3} ms max {late_max:.3} ms; threads max {threads}, peak RSS {rss:.1} MiB",
        r["completed"],
        ttft - want_ttft,
        itl - want_itl,
        ms("p99_itl_ms"),
    );
}
