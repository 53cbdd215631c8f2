//! Crash test: a child process appends and reports each committed id; the
//! parent kills it with SIGKILL at random moments and checks, after each kill,
//! that every reported batch is there, in order, intact, and that the file
//! passes `PRAGMA integrity_check`.
//!
//! The child is this test binary re-executed with [`CHILD_ENV`] set and a
//! filter selecting [`crash_child`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::*;

const CHILD_ENV: &str = "AIF_BUFFER_CRASH_CHILD";
const START_ENV: &str = "AIF_BUFFER_CRASH_START";
const DURABILITY_ENV: &str = "AIF_BUFFER_CRASH_DURABILITY";
const KILLS: usize = 60;
const BASE_TS: i64 = 1_700_000_000_000;

/// The batch with sequence number `seq`: a deterministic function of `seq`
/// (fresh simulated GPUs sampled at its timestamp, plus the seq itself).
fn batch_for(seq: i64) -> Batch {
    let ts = BASE_TS + seq * 1000;
    let mut source = SimulatedSource::new(8, 99).expect("source");
    let mut namer = Namer::new(NameScheme::Native, Labels::new(), "crash");
    let mut b = namer.batch(ts, &source.sample(ts).expect("sample"));
    b.push(series("crash_seq", 0), seq as f64);
    b
}

fn seq_of(b: &Batch) -> i64 {
    (b.timestamp_ms - BASE_TS) / 1000
}

fn crash_config(dir: &Path, durability: Durability) -> BufferConfig {
    let mut cfg = config(dir, &["sink"]);
    cfg.durability = durability;
    cfg
}

/// The child: append forever, print `committed <id> <seq>` after each commit.
/// Without [`CHILD_ENV`] it does nothing (the normal test run).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: i64 = std::env::var(START_ENV)
        .expect("start")
        .parse()
        .expect("start");
    let durability: Durability = std::env::var(DURABILITY_ENV)
        .expect("durability")
        .parse()
        .expect("durability");
    let mut buf = open(&crash_config(Path::new(&dir), durability));
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("flush");
    for seq in start..start + 100_000 {
        let id = buf.append(&batch_for(seq)).expect("append");
        // A write error means the parent is gone: stop.
        if writeln!(out, "committed {} {seq}", id.0)
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// A small deterministic generator for kill moments.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn buffer_survives_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
    // id → seq of every batch a child reported committed and no sink acked.
    let mut reported: BTreeMap<i64, i64> = BTreeMap::new();
    let mut next_seq = 0i64;
    let mut acked_through = 0i64;
    let mut total_reported = 0usize;
    for round in 0..KILLS {
        let durability = if round % 8 == 0 {
            Durability::Full
        } else {
            Durability::Normal
        };
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "buffer::tests::crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(START_ENV, next_seq.to_string())
            .env(DURABILITY_ENV, durability.as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut record = |line: &str, reported: &mut BTreeMap<i64, i64>| -> bool {
            let Some(rest) = line.strip_prefix("committed ") else {
                return false;
            };
            let (id, seq) = rest.split_once(' ').expect("id seq");
            reported.insert(id.parse().expect("id"), seq.parse().expect("seq"));
            total_reported += 1;
            true
        };
        // Kill after a random number of reported commits, or (every fourth
        // round) a random number of microseconds after the child is ready,
        // which may be before, during or after its first commits.
        if round % 4 == 3 {
            for line in lines.by_ref() {
                // libtest prints "test … ... " without a newline first.
                if line.expect("line").ends_with("ready") {
                    break;
                }
            }
            let delay = std::time::Duration::from_micros(next(&mut rng) % 3000);
            let t = Instant::now();
            while t.elapsed() < delay {
                std::hint::spin_loop();
            }
        } else {
            let want = 1 + (next(&mut rng) % 120) as usize;
            let mut seen = 0;
            while seen < want {
                let line = lines
                    .next()
                    .expect("child output ended early")
                    .expect("line");
                if record(&line, &mut reported) {
                    seen += 1;
                }
            }
        }
        child.kill().expect("SIGKILL");
        // Lines written before the kill are commits too.
        for line in lines {
            let Ok(line) = line else { break };
            record(&line, &mut reported);
        }
        let status = child.wait().expect("wait");
        assert!(!status.success(), "the child was killed: {status:?}");

        // Reopen and check.
        let cfg = crash_config(dir.path(), Durability::Normal);
        assert_eq!(integrity_check(&cfg.path), "ok", "round {round}");
        let buf = open(&cfg);
        assert!(
            buf.recovered_from().is_none(),
            "round {round}: file not corrupt"
        );
        let mut r = buf.reader("sink").expect("reader");
        let stored = read_all(&mut r);
        let ids: Vec<i64> = stored.iter().map(|(id, _)| id.0).collect();
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: contiguous ids"
        );
        if let Some(first) = ids.first() {
            assert_eq!(
                *first,
                acked_through + 1,
                "round {round}: nothing lost after the cursor"
            );
        }
        let by_id: BTreeMap<i64, &Batch> = stored.iter().map(|(id, b)| (id.0, b)).collect();
        for (id, seq) in &reported {
            let b = by_id.get(id).unwrap_or_else(|| {
                panic!("round {round}: reported batch {id} (seq {seq}) missing")
            });
            assert_eq!(seq_of(b), *seq, "round {round}: batch {id}");
        }
        // Every stored batch, reported or committed just before the kill, is
        // intact and in order.
        for (k, (_, b)) in stored.iter().enumerate() {
            assert_same_batch(b, &batch_for(seq_of(b)));
            if k > 0 {
                assert_eq!(
                    seq_of(b),
                    seq_of(&stored[k - 1].1) + 1,
                    "round {round}: order"
                );
            }
        }
        next_seq = stored.last().map_or(next_seq, |(_, b)| seq_of(b) + 1);
        // Now and then a sink takes part of the backlog (deletes under test).
        if round % 5 == 4 && !ids.is_empty() {
            let through = ids[(next(&mut rng) % ids.len() as u64) as usize];
            r.ack_through(BatchId(through)).expect("ack");
            acked_through = through;
            reported.retain(|id, _| *id > through);
        }
    }
    assert!(
        total_reported >= KILLS,
        "{total_reported} commits reported over {KILLS} kills"
    );
}
