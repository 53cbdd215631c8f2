//! Servers the load-generator tests start on 127.0.0.1: plain HTTP/1.1 with
//! keep-alive, one thread per connection, counting every request it parsed;
//! optionally a one-time stall, or OpenAI-compatible SSE streaming with
//! configured timings (each token due at an absolute time from the request's
//! arrival, so sleep overshoot does not accumulate).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the server answers.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// `200 ok` at once.
    Plain,
    /// Every request arriving within `stall` after request number `at` is
    /// held until the stall ends (a server pause, as a GC or a swap would cause).
    StallOnce { at: u64, stall: Duration },
    /// `200 ok` with its head and body in two writes and Nagle's algorithm
    /// on, as Python's `http.server` answers: the body leaves only once the
    /// head is acknowledged, so a client that delays its ACKs waits ~40 ms.
    SplitWrites,
    /// One request at a time (others queue), each taking `service`: a
    /// server whose capacity is exactly `1 / service` requests per second
    /// (each answer is due at an absolute time, so overheads do not add up).
    Serial { service: Duration },
    /// Every answer has this status and the body `nope`.
    Status(u16),
    /// SSE: the first token `first` after the request arrived, then one every
    /// `every`, `tokens` in all; usage when `stream_options.include_usage`.
    Stream {
        first: Duration,
        every: Duration,
        tokens: u64,
    },
}

/// A running test server.
pub struct TestServer {
    pub port: u16,
    pub count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let stall_until = Arc::new(Mutex::new(None::<Instant>));
        let serial = Arc::new(Mutex::new(None::<Instant>));
        {
            let count = Arc::clone(&count);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let count = Arc::clone(&count);
                    let stall_until = Arc::clone(&stall_until);
                    let serial = Arc::clone(&serial);
                    std::thread::spawn(move || {
                        serve(conn, behaviour, &count, &stall_until, &serial)
                    });
                }
            });
        }
        TestServer { port, count, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request: (path, body), or `None` at the end of the connection.
pub fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    let mut path = String::new();
    let mut len = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if path.is_empty() {
            path = l.split(' ').nth(1).unwrap_or("").to_string();
        } else if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// Sleeps until `t`: the last 2 ms yielding instead of sleeping, so the
/// token leaves on time even when a woken thread would wait for a CPU.
fn sleep_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        if t - now > Duration::from_millis(2) {
            std::thread::sleep(t - now - Duration::from_millis(2));
        } else {
            std::thread::yield_now();
        }
    }
}

fn chunk(w: &mut TcpStream, data: &str) -> std::io::Result<()> {
    write!(w, "{:x}\r\n{data}\r\n", data.len())?;
    w.flush()
}

fn serve(
    conn: TcpStream,
    b: Behaviour,
    count: &AtomicU64,
    stall_until: &Mutex<Option<Instant>>,
    serial: &Mutex<Option<Instant>>,
) {
    if !matches!(b, Behaviour::SplitWrites) {
        let _ = conn.set_nodelay(true);
    }
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    while let Some((_, body)) = read_request(&mut r) {
        let arrived = Instant::now();
        let n = count.fetch_add(1, Ordering::AcqRel) + 1;
        match b {
            Behaviour::Plain => {}
            Behaviour::SplitWrites => {
                let head =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n";
                if w.write_all(head).is_err() || w.write_all(b"ok").is_err() {
                    return;
                }
                continue;
            }
            Behaviour::Status(code) => {
                let head = format!("HTTP/1.1 {code} Nope\r\nContent-Length: 4\r\n\r\nnope");
                if w.write_all(head.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            Behaviour::Serial { service } => {
                let done = {
                    let mut free = serial.lock().unwrap_or_else(|e| e.into_inner());
                    let done = free.map_or(arrived, |f| f.max(arrived)) + service;
                    *free = Some(done);
                    done
                };
                sleep_until(done);
            }
            Behaviour::StallOnce { at, stall } => {
                let until = {
                    let mut s = stall_until.lock().unwrap();
                    if n == at {
                        *s = Some(arrived + stall);
                    }
                    *s
                };
                if let Some(u) = until {
                    sleep_until(u);
                }
            }
            Behaviour::Stream {
                first,
                every,
                tokens,
            } => {
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let usage = req["stream_options"]["include_usage"] == true;
                let chat = req.get("messages").is_some();
                let prompt_words = if chat {
                    req["messages"][0]["content"].as_str().unwrap_or("")
                } else {
                    req["prompt"].as_str().unwrap_or("")
                }
                .split_whitespace()
                .count();
                if w
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                for i in 0..tokens {
                    sleep_until(arrived + first + every * i as u32);
                    let event = if chat {
                        serde_json::json!({"choices": [{"index": 0, "delta": {"content": format!("t{i} ")}}]})
                    } else {
                        serde_json::json!({"choices": [{"index": 0, "text": format!("t{i} ")}]})
                    };
                    if chunk(&mut w, &format!("data: {event}\n\n")).is_err() {
                        return;
                    }
                }
                if usage {
                    let u = serde_json::json!({"choices": [], "usage": {"prompt_tokens": prompt_words, "completion_tokens": tokens}});
                    let _ = chunk(&mut w, &format!("data: {u}\n\n"));
                }
                if chunk(&mut w, "data: [DONE]\n\n").is_err() || w.write_all(b"0\r\n\r\n").is_err()
                {
                    return;
                }
                let _ = w.flush();
                continue;
            }
        }
        if w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
        )
        .is_err()
        {
            return;
        }
    }
}
