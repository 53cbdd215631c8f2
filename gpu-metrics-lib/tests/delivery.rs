//! The delivery loop (DESIGN.md §6) with a scripted sink: what a history sink
//! receives across failures and restarts, and how a latest-state sink skips.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aif_testbed::wait_until;
use gpu_metrics::agent::{self, AgentOptions, BatchSource};
use gpu_metrics::buffer::{Buffer, BufferConfig};
use gpu_metrics::retry::BackoffPolicy;
use gpu_metrics::sink::{Delivered, FailureClass, Order, Sink, SinkFailure};
use gpu_metrics::{Batch, Labels, MetricKind, Series};

/// Ticks numbered from `start`: one sample whose value is the tick number.
struct Counter {
    next: Arc<AtomicU64>,
    series: Arc<Series>,
}

impl BatchSource for Counter {
    fn next_batch(&mut self, ts: i64) -> Result<Batch, Box<dyn std::error::Error + Send + Sync>> {
        let mut b = Batch::new(ts);
        b.push(
            Arc::clone(&self.series),
            self.next.fetch_add(1, Ordering::SeqCst) as f64,
        );
        Ok(b)
    }
}

fn counter(next: &Arc<AtomicU64>) -> Box<dyn BatchSource> {
    Box::new(Counter {
        next: Arc::clone(next),
        series: Arc::new(Series::new("tick", MetricKind::Gauge, Labels::new())),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("scripted outage")]
struct Down;

impl SinkFailure for Down {
    fn class(&self) -> FailureClass {
        FailureClass::Retryable
    }
    fn result_label(&self) -> &'static str {
        "unreachable"
    }
}

/// Records every value it is given; fails while `down`.
struct Recorder {
    order: Order,
    down: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<f64>>>,
    calls: Arc<AtomicU64>,
}

impl Sink for Recorder {
    fn name(&self) -> &'static str {
        "test"
    }
    fn target(&self) -> &str {
        "memory"
    }
    fn order(&self) -> Order {
        self.order
    }
    fn backoff(&self) -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(5),
            factor: 2.0,
            max: Duration::from_millis(40),
        }
    }
    fn deliver(&mut self, batches: &[Arc<Batch>]) -> Result<Delivered, Box<dyn SinkFailure>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(Box::new(Down));
        }
        let mut got = self.got.lock().unwrap();
        got.extend(batches.iter().map(|b| b.samples[0].value));
        Ok(Delivered {
            samples: batches.len() as u64,
            refused: Vec::new(),
        })
    }
}

struct Run {
    down: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<f64>>>,
    calls: Arc<AtomicU64>,
}

fn start(path: &std::path::Path, next: &Arc<AtomicU64>, order: Order) -> (agent::AgentHandle, Run) {
    let run = Run {
        down: Arc::new(AtomicBool::new(false)),
        got: Arc::default(),
        calls: Arc::default(),
    };
    let sink = Recorder {
        order,
        down: Arc::clone(&run.down),
        got: Arc::clone(&run.got),
        calls: Arc::clone(&run.calls),
    };
    let buffer = Buffer::open(BufferConfig::new(path, ["test"])).expect("open");
    let handle = agent::start_source(
        counter(next),
        buffer,
        AgentOptions {
            interval: Duration::from_millis(10),
            sinks: vec![Box::new(sink)],
            ..AgentOptions::default()
        },
    )
    .expect("agent");
    (handle, run)
}

fn len(run: &Run) -> usize {
    run.got.lock().unwrap().len()
}

#[test]
fn history_sink_gets_every_batch_once_in_order_across_an_outage_and_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("b.db");
    let next = Arc::new(AtomicU64::new(1));
    let oldest = Order::Oldest { max_samples: 7 };

    let (agent1, run1) = start(&path, &next, oldest);
    assert!(wait_until(Duration::from_secs(10), || len(&run1) >= 20));
    run1.down.store(true, Ordering::SeqCst);
    let calls = run1.calls.load(Ordering::SeqCst);
    // The outage lasts until at least 100 more ticks wait in the buffer.
    let at_outage = next.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(20), || {
        next.load(Ordering::SeqCst) >= at_outage + 100
            && run1.calls.load(Ordering::SeqCst) >= calls + 3
    }));
    run1.down.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(20), || {
        len(&run1) as u64 + 1 >= next.load(Ordering::SeqCst) - 1
    }));
    agent1.shutdown();

    // A new process on the same buffer starts after what the first delivered.
    let (agent2, run2) = start(&path, &next, oldest);
    assert!(wait_until(Duration::from_secs(10), || len(&run2) >= 20));
    agent2.shutdown();
    let committed = Buffer::open(BufferConfig::new(&path, ["test"]))
        .expect("reopen")
        .head()
        .get();

    let mut all = run1.got.lock().unwrap().clone();
    all.extend(run2.got.lock().unwrap().iter());
    let want: Vec<f64> = (1..=committed).map(|i| i as f64).collect();
    assert_eq!(all.len(), want.len(), "every committed tick once");
    assert_eq!(all, want, "in order, no gap, no repeat");
}

#[test]
fn latest_state_sink_delivers_the_newest_after_an_outage_and_skips_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("b.db");
    let next = Arc::new(AtomicU64::new(1));
    let (agent, run) = start(&path, &next, Order::Newest);
    assert!(wait_until(Duration::from_secs(10), || len(&run) >= 5));
    run.down.store(true, Ordering::SeqCst);
    let at_outage = next.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(20), || next
        .load(Ordering::SeqCst)
        >= at_outage + 50));
    let before = len(&run);
    run.down.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || len(&run) > before));
    agent.shutdown();
    let got = run.got.lock().unwrap().clone();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "never an older state after a newer one"
    );
    // When the outage ended, tick `at_outage + 49` at least had been taken.
    let resumed = got[before];
    assert!(
        resumed >= (at_outage + 49) as f64,
        "after the outage the first delivery is a current tick ({resumed}), not the backlog"
    );
}
