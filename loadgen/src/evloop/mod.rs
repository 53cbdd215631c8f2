//! The event-driven engine (`--engine events`): non-blocking sockets
//! ([`mio`]), one event loop thread per core, many keep-alive connections per
//! loop; no async runtime and no thread per client.
//!
//! Design:
//! - **Loops**: `min(available_parallelism, connections)` threads, where
//!   `connections` is `--concurrency` (closed loop) or the open loop's cap
//!   (`--max-concurrency`, else [`MAX_CLIENTS`]). Each owns a [`mio::Poll`],
//!   its connections ([`conn::Conn`], token = index) and a [`Recorder`].
//! - **Closed loop**: the `concurrency` connections are dealt round-robin to
//!   the loops; each sends its next request as soon as the last one ended
//!   (latency from that send), until `--duration` or a stop.
//! - **Open loop**: the due times come from one [`Schedule`] behind a mutex,
//!   with a one-slot peek. A loop holding a free connection takes the next due
//!   time (at most one at a time), waits for it in `poll`, sends, and measures
//!   from the due time; the time from due to send is `wait` (`queue_wait`).
//!   A loop without a free connection takes a due time only once it is late
//!   (more than [`LATE`] past): it then opens one more connection, claimed on
//!   [`Shared::clients`] up to the cap; at the cap the due time stays in the
//!   schedule until some connection is free, and that wait is recorded. This
//!   is the thread engine's rule (a free client takes the next due time; a
//!   late one with every client busy adds a client).
//! - **Figures**: each loop records into its own [`Recorder`] and merges it
//!   into the shared one every [`FLUSH`] (and after every request once the
//!   run is ending, and when the loop ends), so progress files and the result
//!   come from [`crate::engine`] unchanged. `sent`, `in_flight` and
//!   `clients` are the shared atomics the thread engine uses.
//! - **End**: no request starts past `--duration` (closed: send time; open:
//!   due time) or after [`Shared::stop`]; a loop ends when it has no request
//!   in flight; [`crate::engine::run`] waits for that up to `--drain-timeout`
//!   and abandons the rest, as with threads.
//! - **Requests**: prebuilt bytes per body ([`http::requests`]); answers read
//!   by [`conn::Exchange`] (status ≥ 400 drained as `http_status`; OpenAI
//!   streams' lines fed to [`crate::stream::Stream`] as they complete).
//!
//! Invariants: a connection carries at most one request; every started
//! request ends exactly once (answer, error, or `--timeout`, checked every
//! [`SCAN`]) and is then recorded once and taken off `in_flight`; a loop
//! never blocks except in `poll`, whose timeout is at most [`TICK`].

pub mod conn;
pub mod http;
pub mod timer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::arrivals::Schedule;
use crate::engine::Shared;
use crate::plan::{Load, MAX_CLIENTS};
use crate::stats::Recorder;
use conn::{Conn, Ctx, Finished, Job};

/// How often a loop merges its figures into the shared recorder.
pub const FLUSH: Duration = Duration::from_millis(50);

/// How often a loop looks for requests past `--timeout`.
pub const SCAN: Duration = Duration::from_millis(5);

/// Longest `poll` wait (so a stop is seen soon).
pub const TICK: Duration = Duration::from_millis(10);

/// How late a due time may be before it counts as "every connection busy".
pub const LATE: Duration = Duration::from_millis(1);

/// The token of a loop's [`timer::Timer`] (connections have their index).
const TIMER: Token = Token(usize::MAX);

/// Bytes read per `read` call.
const READ_BUF: usize = 64 * 1024;

/// The open loop's due times, shared by the loops.
#[derive(Debug)]
struct Dispatch {
    schedule: Schedule,
    /// The next due time (s), drawn but not taken.
    peeked: Option<f64>,
    /// No more due times before the end.
    over: bool,
}

/// What every loop shares besides [`Shared`].
#[derive(Debug)]
struct Common {
    requests: Vec<Vec<u8>>,
    dispatch: Mutex<Dispatch>,
    open: bool,
    cap: usize,
}

/// Starts the loops of `shared`'s plan with `schedule` as the open loop's
/// due times; returns how many started (none when `stopped`: a stop came
/// before the start). Their handles go to `shared`'s list
/// (see [`crate::engine::Engine::reap`]), each counted in
/// `Shared::loops_running` until it ends.
pub fn start(shared: &Arc<Shared>, schedule: Schedule, stopped: bool) -> usize {
    let plan = &shared.plan;
    let Some(requests) = http::requests(&plan.workload) else {
        log::error!("{}: not an http:// URL", plan.workload.url);
        return 0;
    };
    let (open, cap, initial) = match plan.load {
        Load::Closed { concurrency } => (false, concurrency, concurrency),
        Load::Open {
            rate,
            max_concurrency,
            ..
        } => {
            let cap = max_concurrency.unwrap_or(MAX_CLIENTS);
            (true, cap, cap.min(4 + (rate / 100.0) as usize))
        }
    };
    // Counted as the thread engine counts its first clients (which, stopped
    // before the start, end at once).
    shared.clients.fetch_add(initial, Ordering::AcqRel);
    if stopped {
        return 0;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let loops = cores.min(cap).max(1);
    let common = Arc::new(Common {
        requests,
        dispatch: Mutex::new(Dispatch {
            schedule,
            peeked: None,
            over: false,
        }),
        open,
        cap,
    });
    let mut started = 0;
    for i in 0..loops {
        let share = initial / loops + usize::from(i < initial % loops);
        let (s, c) = (Arc::clone(shared), Arc::clone(&common));
        shared.loops_running.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name(format!("evloop-{i}"))
            .spawn(move || {
                run_loop(&s, &c, share);
                s.loops_running.fetch_sub(1, Ordering::AcqRel);
            });
        match spawned {
            Ok(h) => {
                shared.add_handle(h);
                started += 1;
            }
            Err(e) => {
                shared.loops_running.fetch_sub(1, Ordering::AcqRel);
                shared.clients.fetch_sub(share, Ordering::AcqRel);
                log::warn!("cannot start event loop {i}: {e}");
            }
        }
    }
    started
}

/// One loop's state.
struct Loop<'t> {
    conns: Vec<Conn<'t>>,
    /// Free connections (indices).
    idle: Vec<usize>,
    /// Requests in flight here.
    busy: usize,
    recorder: Recorder,
    dirty: bool,
    /// Open loop: the due time this loop took (request number, due).
    pending: Option<(u64, Instant)>,
    /// Open loop: wake then to see whether the next due time is late.
    wake_at: Option<Instant>,
    done: Vec<(usize, Finished)>,
    /// The read buffer.
    buf: Vec<u8>,
}

fn run_loop(s: &Shared, c: &Common, initial: usize) {
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            log::warn!("event loop: cannot create a poll: {e}");
            s.clients.fetch_sub(initial, Ordering::AcqRel);
            return;
        }
    };
    let mut events = Events::with_capacity(1024);
    let mut timer = timer::Timer::new(poll.registry(), TIMER)
        .map_err(|e| log::debug!("event loop: no timer ({e}): due times to the millisecond"))
        .ok();
    let mut l = Loop {
        buf: vec![0u8; READ_BUF],
        conns: (0..initial).map(|_| Conn::default()).collect(),
        idle: (0..initial).rev().collect(),
        busy: 0,
        recorder: Recorder::default(),
        dirty: false,
        pending: None,
        wake_at: None,
        done: Vec::new(),
    };
    let end = s.end();
    let mut next_flush = Instant::now() + FLUSH;
    let mut next_scan = Instant::now() + SCAN;
    loop {
        let stopping = s.stop.load(Ordering::Acquire);
        if stopping {
            // A due time taken is not sent any more (as a sleeping client's).
            l.pending = None;
            l.wake_at = None;
        } else {
            dispatch(s, c, &mut l, &poll);
        }
        // Requests that ended at once: record them, then only look at the
        // sockets (no wait) before starting more.
        let ended_at_once = !l.done.is_empty();
        for (i, f) in std::mem::take(&mut l.done) {
            finish(s, &mut l, i, f);
        }
        let now = Instant::now();
        let ending = stopping || now >= end;
        let over = !c.open || lock(&c.dispatch).over;
        if l.busy == 0 && (stopping || (ending && over && l.pending.is_none())) {
            break;
        }
        if l.dirty && (now >= next_flush || ending) {
            flush(s, &mut l);
            next_flush = now + FLUSH;
        }
        let mut wake = now + TICK;
        // Due times to the microsecond through the timer, else to poll's
        // millisecond.
        let precise = [l.pending.map(|p| p.1), l.wake_at]
            .into_iter()
            .flatten()
            .min();
        if let Some(t) = precise
            && !timer.as_mut().is_some_and(|tm| t > now && tm.arm(t))
        {
            wake = wake.min(t);
        }
        if l.busy > 0 {
            wake = wake.min(next_scan);
        }
        if l.dirty {
            wake = wake.min(next_flush);
        }
        if ended_at_once {
            wake = now;
        }
        if let Err(e) = poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            log::warn!(
                "event loop: poll failed: {e}; abandoning {} requests",
                l.busy
            );
            break;
        }
        for ev in &events {
            if ev.token() == TIMER {
                if let Some(t) = timer.as_mut() {
                    t.fired();
                }
                continue;
            }
            let i = ev.token().0;
            let Some(conn) = l.conns.get_mut(i) else {
                continue;
            };
            let mut ctx = Ctx {
                registry: poll.registry(),
                token: Token(i),
                addrs: &s.plan.workload.addrs,
                requests: &c.requests,
                buf: &mut l.buf,
            };
            if let Some(f) = conn.ready(&mut ctx) {
                l.done.push((i, f));
            }
        }
        let now = Instant::now();
        if l.busy > 0 && now >= next_scan {
            for (i, conn) in l.conns.iter_mut().enumerate() {
                if let Some(f) = conn.expire(now, poll.registry()) {
                    l.done.push((i, f));
                }
            }
            next_scan = now + SCAN;
        }
    }
    for (i, f) in std::mem::take(&mut l.done) {
        finish(s, &mut l, i, f);
    }
    flush(s, &mut l);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Merges the loop's figures into the shared recorder.
fn flush(s: &Shared, l: &mut Loop<'_>) {
    if l.dirty {
        s.recorder().merge(&l.recorder);
        l.recorder = Recorder::default();
        l.dirty = false;
    }
}

/// Records a finished request and frees its connection.
fn finish(s: &Shared, l: &mut Loop<'_>, i: usize, f: Finished) {
    let w = &s.plan.workload;
    let mut o = f.outcome;
    if w.api.is_openai()
        && o.status.is_some_and(|st| st < 400)
        && let Some(&tokens) = w.input_tokens.get(f.index)
    {
        o.input_tokens = Some(tokens);
    }
    if f.sent < s.measured_from() {
        l.recorder.warmup_requests += 1;
    } else {
        l.recorder.record(&o, f.wait, &s.plan.slo);
    }
    l.dirty = true;
    l.busy = l.busy.saturating_sub(1);
    s.in_flight.fetch_sub(1, Ordering::AcqRel);
    l.idle.push(i);
}

/// Starts request `n` on free connection `i`, measured from `sent`.
fn send<'t>(
    s: &'t Shared,
    c: &Common,
    l: &mut Loop<'t>,
    poll: &Poll,
    (i, n): (usize, u64),
    sent: Instant,
    wait: Option<Duration>,
) {
    let w = &s.plan.workload;
    let index = (n % c.requests.len().max(1) as u64) as usize;
    let now = Instant::now();
    let job = Job::new(
        w.api,
        w.method == "HEAD",
        w.tokenizer.as_deref(),
        (n, index),
        sent,
        wait,
        now + s.plan.timeout,
    );
    s.in_flight.fetch_add(1, Ordering::AcqRel);
    l.busy += 1;
    let Some(conn) = l.conns.get_mut(i) else {
        return;
    };
    let mut ctx = Ctx {
        registry: poll.registry(),
        token: Token(i),
        addrs: &w.addrs,
        requests: &c.requests,
        buf: &mut l.buf,
    };
    if let Some(f) = conn.start(job, &mut ctx) {
        l.done.push((i, f));
    }
}

/// Starts what may start now: closed loop, a request on every free
/// connection; open loop, the due times that are due (see the module doc).
fn dispatch<'t>(s: &'t Shared, c: &Common, l: &mut Loop<'t>, poll: &Poll) {
    let end = s.end();
    if !c.open {
        while let Some(i) = l.idle.pop() {
            let sent = Instant::now();
            if sent >= end {
                l.idle.push(i);
                return;
            }
            let n = s.sent.fetch_add(1, Ordering::AcqRel);
            send(s, c, l, poll, (i, n), sent, None);
        }
        return;
    }
    l.wake_at = None;
    loop {
        let now = Instant::now();
        if l.pending.is_none() {
            let mut d = lock(&c.dispatch);
            if d.over {
                return;
            }
            let due_s = match d.peeked {
                Some(v) => v,
                None => {
                    let v = d.schedule.next_due();
                    d.peeked = Some(v);
                    v
                }
            };
            // A replayed trace is over, or the next is past the end.
            let due = due_s
                .is_finite()
                .then(|| s.start.checked_add(Duration::from_secs_f64(due_s.max(0.0))))
                .flatten()
                .filter(|&t| t < end);
            let Some(due) = due else {
                d.over = true;
                return;
            };
            if l.idle.is_empty() {
                if now <= due + LATE {
                    l.wake_at = Some(due + LATE);
                    return;
                }
                // Late, and no connection here is free: one more, up to the cap.
                let claimed = s
                    .clients
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < c.cap).then_some(n + 1)
                    });
                if claimed.is_err() {
                    return;
                }
                l.conns.push(Conn::default());
                l.idle.push(l.conns.len() - 1);
            }
            d.peeked = None;
            drop(d);
            l.pending = Some((s.sent.fetch_add(1, Ordering::AcqRel), due));
        }
        let Some((n, due)) = l.pending else { return };
        if now < due {
            return;
        }
        let Some(i) = l.idle.pop() else { return };
        l.pending = None;
        let wait = now.saturating_duration_since(due);
        send(s, c, l, poll, (i, n), due, Some(wait));
    }
}
