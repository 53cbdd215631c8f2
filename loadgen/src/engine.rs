//! The clients: threads with one ureq agent (one keep-alive connection) each.
//!
//! - **Closed loop**: `concurrency` threads, each sending its next request as
//!   soon as the last one ended, latency from the actual send.
//! - **Open loop**: due times come from one [`Schedule`]; each client takes the
//!   next due time, sleeps until it, sends, and measures from the *due* time
//!   (wrk2's correction: a stalled server makes later requests late, and that
//!   lateness is in their latency). A client that takes a due time already
//!   past while every other client is in a request adds a client, up to
//!   `--max-concurrency`; the time from due to actual send is reported as
//!   `queue_wait`. A trace (`--dataset trace`) is an open loop whose due
//!   times are its own ([`Schedule::replay`]); its `queue_wait` is also
//!   reported as `*_lateness_ms`.
//! - **End**: at `--duration` no request is started any more; requests in
//!   flight may finish within `--drain-timeout`. A stop (SIGTERM, SIGINT)
//!   abandons them at once: the partial result is written within one second
//!   and the process exits, leaving blocked clients to the exit.
//! - **Start**: at once, or at `--start-at` (the parts of a split run start
//!   together); a stop while waiting ends the run before any request.
//! - **Engines**: the clients above are `--engine threads`. The default,
//!   `--engine events`, runs the same semantics on non-blocking connections,
//!   one event loop per core ([`crate::evloop`]); [`run`], [`progress`] and
//!   [`result`] are the same for both.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::arrivals::Schedule;
use crate::plan::{EngineKind, Load, MAX_CLIENTS, Plan};
use crate::stats::{Recorder, summary_table};
use crate::workload::{ErrorKind, agent};
use gpu_metrics::clock::{now_ms, rfc3339};

/// Stack of a client thread: ureq and serde_json need little.
const CLIENT_STACK: usize = 512 * 1024;

/// How late a due time may be taken before it counts as "every client busy".
const LATE: Duration = Duration::from_millis(1);

/// What the clients, the control loop and the live metrics share.
#[derive(Debug)]
pub struct Shared {
    /// The plan.
    pub plan: Plan,
    /// When sending began.
    pub start: Instant,
    /// The same moment, ms since the Unix epoch.
    pub start_ms: i64,
    /// No request is started any more.
    pub stop: AtomicBool,
    /// Requests in flight.
    pub in_flight: AtomicU64,
    /// Requests started (warm-up included).
    pub sent: AtomicU64,
    /// Client threads started.
    pub clients: AtomicUsize,
    /// Client threads that ended.
    pub clients_done: AtomicUsize,
    /// How late the start was after `--start-at` (0 without it, or when the
    /// process was waiting for it).
    pub start_late_ms: u64,
    /// Event loops running (`--engine events`).
    pub(crate) loops_running: AtomicUsize,
    recorder: Mutex<Recorder>,
    schedule: Mutex<Schedule>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// The figures so far (a copy).
    pub fn snapshot(&self) -> Recorder {
        self.recorder().clone()
    }

    pub(crate) fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a thread's handle for [`Engine::reap`].
    pub(crate) fn add_handle(&self, h: JoinHandle<()>) {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    /// Seconds since sending began.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub(crate) fn end(&self) -> Instant {
        self.start + self.plan.duration
    }

    pub(crate) fn measured_from(&self) -> Instant {
        self.start + self.plan.warmup
    }

    fn record(&self, o: &crate::workload::Outcome, sent: Instant, wait: Option<Duration>) {
        let mut r = self.recorder();
        if sent < self.measured_from() {
            r.warmup_requests += 1;
        } else {
            r.record(o, wait, &self.plan.slo);
        }
    }
}

fn spawn_client(shared: &Arc<Shared>, open: bool) -> bool {
    let cap = match shared.plan.load {
        Load::Closed { concurrency } => concurrency,
        Load::Open {
            max_concurrency, ..
        } => max_concurrency.unwrap_or(MAX_CLIENTS),
    };
    let claimed = shared
        .clients
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        });
    let Ok(n) = claimed else { return false };
    let s = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("client-{n}"))
        .stack_size(CLIENT_STACK)
        .spawn(move || {
            if open {
                open_client(&s);
            } else {
                closed_client(&s);
            }
            s.clients_done.fetch_add(1, Ordering::AcqRel);
        });
    match spawned {
        Ok(h) => {
            shared.add_handle(h);
            true
        }
        Err(e) => {
            shared.clients.fetch_sub(1, Ordering::AcqRel);
            log::warn!("cannot start client thread {n}: {e}");
            false
        }
    }
}

fn closed_client(s: &Shared) {
    let agent = agent(s.plan.timeout, &s.plan.workload.addrs);
    let mut scratch = vec![0u8; 16 * 1024];
    let end = s.end();
    while !s.stop.load(Ordering::Acquire) {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let n = s.sent.fetch_add(1, Ordering::AcqRel);
        s.in_flight.fetch_add(1, Ordering::AcqRel);
        let o = s.plan.workload.send(&agent, n, sent, &mut scratch);
        s.record(&o, sent, None);
        s.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sleeps until `t` in steps of at most 50 ms; false when stopped meanwhile.
fn sleep_until(s: &Shared, t: Instant) -> bool {
    loop {
        if s.stop.load(Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

fn open_client(s: &Arc<Shared>) {
    let agent = agent(s.plan.timeout, &s.plan.workload.addrs);
    let mut scratch = vec![0u8; 16 * 1024];
    let end = s.end();
    loop {
        if s.stop.load(Ordering::Acquire) {
            break;
        }
        let (n, due) = {
            let mut sched = s.schedule.lock().unwrap_or_else(|e| e.into_inner());
            let due_s = sched.next_due();
            // A replayed trace is over.
            if !due_s.is_finite() {
                break;
            }
            let due = s.start + Duration::from_secs_f64(due_s);
            (s.sent.fetch_add(1, Ordering::AcqRel), due)
        };
        if due >= end {
            break;
        }
        // Late, and every other client is in a request: one more client. (Late
        // while others are idle means the CPU was short: more threads would
        // only make it shorter.)
        if Instant::now() > due + LATE
            && s.in_flight.load(Ordering::Acquire) as usize + 1 >= s.clients.load(Ordering::Acquire)
        {
            spawn_client(s, true);
        }
        if !sleep_until(s, due) {
            break;
        }
        s.in_flight.fetch_add(1, Ordering::AcqRel);
        let wait = due.elapsed();
        let o = s.plan.workload.send(&agent, n, due, &mut scratch);
        s.record(&o, due, Some(wait));
        s.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open loop's due times for `plan` (a closed loop's is unused).
pub(crate) fn schedule(plan: &Plan) -> Schedule {
    match (&plan.trace_due_s, plan.load) {
        (Some(due), _) => Schedule::replay(Arc::clone(due)),
        (None, Load::Open { rate, arrivals, .. }) => Schedule::new(rate, arrivals, plan.seed),
        (None, Load::Closed { .. }) => {
            Schedule::new(1.0, crate::arrivals::Arrivals::Constant, plan.seed)
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// It ran its duration.
    Duration,
    /// A signal (or [`Engine::stop`]) cut it short.
    Signal,
}

impl EndedBy {
    /// `duration` or `signal`.
    pub fn name(self) -> &'static str {
        match self {
            EndedBy::Duration => "duration",
            EndedBy::Signal => "signal",
        }
    }
}

/// A running load.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// Starts the clients now.
    pub fn start(plan: Plan) -> Engine {
        Engine::start_from(plan, Instant::now(), now_ms(), 0, false)
    }

    /// Starts the clients with `start` (`start_ms` on the wall clock) as the
    /// run's start; `stopped`: no request is sent at all.
    fn start_from(
        plan: Plan,
        start: Instant,
        start_ms: i64,
        start_late_ms: u64,
        stopped: bool,
    ) -> Engine {
        let shared = Arc::new(Shared {
            start,
            start_ms,
            stop: AtomicBool::new(stopped),
            in_flight: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
            clients_done: AtomicUsize::new(0),
            start_late_ms,
            loops_running: AtomicUsize::new(0),
            recorder: Mutex::new(Recorder::default()),
            schedule: Mutex::new(schedule(&plan)),
            handles: Mutex::new(Vec::new()),
            plan,
        });
        if shared.plan.engine == EngineKind::Events {
            crate::evloop::start(&shared, schedule(&shared.plan), stopped);
            return Engine { shared };
        }
        let (initial, open) = match shared.plan.load {
            Load::Closed { concurrency } => (concurrency, false),
            // A few clients; more join when a due time finds every one busy.
            Load::Open {
                rate,
                max_concurrency,
                ..
            } => (
                max_concurrency
                    .unwrap_or(MAX_CLIENTS)
                    .min(4 + (rate / 100.0) as usize),
                true,
            ),
        };
        for _ in 0..initial {
            if !spawn_client(&shared, open) {
                break;
            }
        }
        Engine { shared }
    }

    /// What the clients share (for live metrics and progress).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops starting requests (clients end after their current request).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
    }

    /// True once every client (or event loop) has ended.
    pub fn idle(&self) -> bool {
        let s = &self.shared;
        match s.plan.engine {
            EngineKind::Threads => {
                s.clients_done.load(Ordering::Acquire) >= s.clients.load(Ordering::Acquire)
            }
            EngineKind::Events => s.loops_running.load(Ordering::Acquire) == 0,
        }
    }

    /// Joins the clients that ended (the rest are left to the process exit).
    pub fn reap(&self) {
        let mut h = self
            .shared
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (done, running): (Vec<_>, Vec<_>) = h.drain(..).partition(JoinHandle::is_finished);
        *h = running;
        drop(h);
        for d in done {
            let _ = d.join();
        }
    }
}

/// The progress JSON (`--progress-file`, the API's view of a running run).
pub fn progress(s: &Shared, phase: &str) -> Value {
    let r = s.snapshot();
    let elapsed = s.elapsed_s();
    let planned = s.plan.duration.as_secs_f64();
    let mut v = json!({
        "run_id": s.plan.run_id,
        "phase": phase,
        "elapsed_seconds": (elapsed * 10.0).round() / 10.0,
        "planned_seconds": planned,
        "remaining_seconds": ((planned - elapsed).max(0.0) * 10.0).round() / 10.0,
        "requests_completed": r.completed,
        "requests_failed": r.failed(),
        "warmup_requests": r.warmup_requests,
        "in_flight": s.in_flight.load(Ordering::Acquire),
        "clients": s.clients.load(Ordering::Acquire),
    });
    if let (Some(Value::Object(extra)), Some(m)) = (&s.plan.progress_extra, v.as_object_mut()) {
        m.extend(extra.clone());
    }
    v
}

/// A one-line progress report for stderr.
pub fn progress_line(s: &Shared) -> String {
    let r = s.snapshot();
    let elapsed = s.elapsed_s();
    let measured = (elapsed - s.plan.warmup.as_secs_f64()).max(0.0);
    let rate = if measured > 0.0 {
        r.completed as f64 / measured
    } else {
        0.0
    };
    let p50 = if r.e2el.count() > 0 {
        format!(
            "{:.1} ms",
            r.e2el.hist.value_at_quantile(0.5) as f64 / 1000.0
        )
    } else {
        "-".into()
    };
    format!(
        "aif-loadgen: {elapsed:.0}/{:.0} s, {} ok, {} failed, {rate:.1} req/s, p50 e2el {p50}, {} in flight, {} clients",
        s.plan.duration.as_secs_f64(),
        r.completed,
        r.failed(),
        s.in_flight.load(Ordering::Acquire),
        s.clients.load(Ordering::Acquire)
    )
}

/// The result JSON: the run's description and its figures.
pub fn result(
    s: &Shared,
    ended_by: EndedBy,
    ended_ms: i64,
    send_end: Instant,
) -> Map<String, Value> {
    let r = s.snapshot();
    let p = &s.plan;
    let window = send_end
        .saturating_duration_since(s.measured_from())
        .as_secs_f64();
    let mut m = Map::new();
    m.insert("run_id".into(), json!(p.run_id));
    m.insert("service_id".into(), json!(p.service_id));
    m.insert("date".into(), json!(rfc3339(s.start_ms)));
    let backend = match p.workload.api {
        crate::workload::Api::Http => "http",
        crate::workload::Api::Completions => "openai",
        crate::workload::Api::Chat => "openai-chat",
    };
    m.insert("backend".into(), json!(backend));
    m.insert("workload".into(), json!(p.workload.api.name()));
    m.insert("url".into(), json!(p.workload.url));
    m.insert("model_id".into(), json!(p.openai.model));
    match p.load {
        Load::Closed { concurrency } => {
            m.insert("mode".into(), json!("closed_loop"));
            m.insert("request_rate".into(), Value::Null);
            m.insert("max_concurrency".into(), json!(concurrency));
        }
        Load::Open {
            rate,
            arrivals,
            max_concurrency,
        } => {
            m.insert("mode".into(), json!("open_loop"));
            m.insert("request_rate".into(), json!(rate));
            m.insert("arrivals".into(), json!(arrivals.name()));
            m.insert("burstiness".into(), json!(arrivals.burstiness()));
            m.insert("max_concurrency".into(), json!(max_concurrency));
        }
    }
    if p.workload.api.is_openai() {
        m.insert("num_prompts".into(), json!(p.prompt_count));
        m.insert("max_tokens".into(), json!(p.openai.max_tokens));
    }
    m.insert(
        "planned_duration_seconds".into(),
        json!(p.duration.as_secs_f64()),
    );
    m.insert("warmup_seconds".into(), json!(p.warmup.as_secs_f64()));
    m.insert("started_at".into(), json!(rfc3339(s.start_ms)));
    m.insert("ended_at".into(), json!(rfc3339(ended_ms)));
    m.insert(
        "window_start_ms".into(),
        json!(s.start_ms + p.warmup.as_millis() as i64),
    );
    m.insert("window_end_ms".into(), json!(ended_ms));
    m.insert("ended_by".into(), json!(ended_by.name()));
    m.insert(
        "incomplete".into(),
        json!(s.in_flight.load(Ordering::Acquire)),
    );
    m.insert("warmup_requests".into(), json!(r.warmup_requests));
    m.insert("clients".into(), json!(s.clients.load(Ordering::Acquire)));
    m.insert("seed".into(), json!(p.seed));
    if p.slo.any() {
        m.insert(
            "goodput_slo_ms".into(),
            json!({"ttft": p.slo.ttft_ms, "tpot": p.slo.tpot_ms, "e2el": p.slo.e2el_ms}),
        );
    }
    m.extend(r.figures(window, p.workload.api.is_openai(), &p.slo));
    m.insert("dataset".into(), json!(p.dataset.map(|d| d.name())));
    if p.trace_due_s.is_some() {
        lateness(&r.wait, &mut m);
    }
    m.insert(
        "part".into(),
        json!({
            "index": p.part.index,
            "count": p.part.count,
            "host": crate::live::hostname(),
            "start_late_ms": s.start_late_ms,
        }),
    );
    m.insert("recorder".into(), r.to_json());
    m
}

/// A replayed trace's lateness (actual − scheduled send time: the open loop's
/// `wait`) as `{mean,median,p99,max}_lateness_ms` (nothing when empty).
pub(crate) fn lateness(wait: &crate::stats::Latency, m: &mut Map<String, Value>) {
    let n = wait.count();
    if n == 0 {
        return;
    }
    let h = &wait.hist;
    let ms = |us: u64| (us as f64).round() / 1000.0;
    let at = |q: f64| ms(h.median_equivalent(h.value_at_quantile(q)));
    let mean = (wait.sum_s * 1e6 / n as f64).round() / 1000.0;
    m.insert("mean_lateness_ms".into(), json!(mean));
    m.insert("median_lateness_ms".into(), json!(at(0.5)));
    m.insert("p99_lateness_ms".into(), json!(at(0.99)));
    m.insert("max_lateness_ms".into(), json!(ms(h.max())));
}

/// Waits for `--start-at` (polling `stopped`); returns the start (monotonic
/// and wall clock), how late it is (ms), and whether a stop came first.
fn wait_for_start(start_at_ms: Option<i64>, stopped: &AtomicBool) -> (Instant, i64, u64, bool) {
    let now = Instant::now();
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let Some(at_ms) = start_at_ms else {
        return (now, now_wall.as_millis() as i64, 0, false);
    };
    let at = Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    if now_wall >= at {
        let late = (now_wall - at).as_millis() as u64;
        if late > 0 {
            log::warn!("--start-at {at_ms} passed {late} ms ago: starting at once");
        }
        return (now, now_wall.as_millis() as i64, late, false);
    }
    let start = now + (at - now_wall);
    log::info!(
        "waiting {:.3} s for --start-at {at_ms}",
        (at - now_wall).as_secs_f64()
    );
    loop {
        if stopped.load(Ordering::Acquire) {
            return (Instant::now(), now_ms(), 0, true);
        }
        let now = Instant::now();
        if now >= start {
            return (start, at_ms, 0, false);
        }
        std::thread::sleep((start - now).min(Duration::from_millis(50)));
    }
}

/// Writes `value` to `path` atomically (temporary file, then rename).
///
/// # Errors
/// The I/O error.
pub fn write_json(path: &std::path::Path, value: &Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

/// Runs a plan to its end (or until `stopped` turns true), printing progress
/// on stderr; returns the result and how it ended. With `--start-at` it first
/// waits for the start (a stop meanwhile ends the run before any request).
pub fn run(
    plan: Plan,
    stopped: &AtomicBool,
    mut on_tick: impl FnMut(&Arc<Shared>),
) -> (Map<String, Value>, EndedBy) {
    let (start, start_ms, late, stopped_early) = wait_for_start(plan.start_at_ms, stopped);
    let engine = Engine::start_from(plan, start, start_ms, late, stopped_early);
    let s = Arc::clone(engine.shared());
    let end = s.start + s.plan.duration;
    let mut next_line = s.plan.progress_every.map(|d| s.start + d);
    let mut next_file = s.start;
    let tick = |phase: &str, next_file: &mut Instant, next_line: &mut Option<Instant>| {
        let now = Instant::now();
        if let Some(f) = &s.plan.progress_file
            && now >= *next_file
        {
            if let Err(e) = write_json(f, &progress(&s, phase)) {
                log::warn!("cannot write progress file {}: {e}", f.display());
            }
            *next_file = now + Duration::from_secs(1);
        }
        if let (Some(at), Some(every)) = (*next_line, s.plan.progress_every)
            && now >= at
        {
            eprintln!("{}", progress_line(&s));
            *next_line = Some(at + every);
        }
    };
    let mut ended_by = EndedBy::Duration;
    while Instant::now() < end {
        if stopped.load(Ordering::Acquire) {
            ended_by = EndedBy::Signal;
            break;
        }
        let phase = if s.start.elapsed() < s.plan.warmup {
            "warmup"
        } else {
            "measuring"
        };
        tick(phase, &mut next_file, &mut next_line);
        on_tick(&s);
        engine.reap();
        std::thread::sleep(
            Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())),
        );
    }
    let send_end = Instant::now().min(end);
    engine.stop();
    if ended_by == EndedBy::Duration {
        let drain_until = Instant::now() + s.plan.drain;
        while !engine.idle() && Instant::now() < drain_until {
            if stopped.load(Ordering::Acquire) {
                ended_by = EndedBy::Signal;
                break;
            }
            tick("draining", &mut next_file, &mut next_line);
            on_tick(&s);
            std::thread::sleep(Duration::from_millis(5));
        }
        engine.reap();
    } else {
        // Clients between requests end at once; give them a moment.
        let until = Instant::now() + Duration::from_millis(200);
        while !engine.idle() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let incomplete = s.in_flight.load(Ordering::Acquire);
    if incomplete > 0 {
        log::warn!("{incomplete} requests still in flight were abandoned");
    }
    let result = result(&s, ended_by, now_ms(), send_end);
    (result, ended_by)
}

/// The summary table of a result.
pub fn summary(result: &Map<String, Value>) -> String {
    summary_table(result)
}

/// Names of the error kinds (for live metrics).
pub fn error_kinds() -> [ErrorKind; 5] {
    ErrorKind::ALL
}
