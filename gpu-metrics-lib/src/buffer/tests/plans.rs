//! The statements that run in a write turn or on every tick stay O(log n):
//! none steps through the batches table (`SQLITE_STMTSTATUS_FULLSCAN_STEP`),
//! however many batches are stored.

use rusqlite::StatementStatus;

use super::*;
use crate::buffer::stats::{DELETE_TAKEN_SQL, ID_RANGE_SQL, OLDEST_AFTER_SQL};

#[test]
fn per_tick_and_per_ack_statements_never_scan_the_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &["down"]);
    let mut buf = open(&cfg);
    for b in &realistic_batches(2000, 31, 1_700_000_000_000) {
        buf.append(b).expect("append");
    }
    let conn = buf.connection();
    // The (wrong) one-query form scans: the check below can tell.
    let mut scan = conn
        .prepare("SELECT min(id), max(id) FROM batches")
        .expect("prepare");
    scan.query_row([], |_| Ok(())).expect("run");
    assert!(
        scan.get_status(StatementStatus::FullscanStep) >= 1000,
        "the check detects a scan"
    );
    conn.execute("UPDATE cursors SET acked_through = 1500", [])
        .expect("move cursor");
    for (sql, params) in [
        (ID_RANGE_SQL, vec![]),
        (OLDEST_AFTER_SQL, vec![1200_i64]),
        (DELETE_TAKEN_SQL, vec![32_i64]),
    ] {
        let mut st = conn.prepare(sql).expect("prepare");
        let mut rows = st.query(rusqlite::params_from_iter(params)).expect("query");
        while rows.next().expect("step").is_some() {}
        drop(rows);
        let steps = st.get_status(StatementStatus::FullscanStep);
        assert_eq!(steps, 0, "{sql} stepped through {steps} rows");
    }
}
