#!/usr/bin/env bash
# Slurm Epilog: stop this job's aif-node-exporter. SIGTERM makes it finish the
# tick, flush, DELETE its Pushgateway group (started with --delete-on-exit) and
# exit; after 20 s it is killed. Never fails (a failing epilog drains the node).
set -u
RUNDIR=${AIF_RUNDIR:-/run/aif-node-exporter}
STATEDIR=${AIF_STATEDIR:-/var/lib/aif-node-exporter}

log() { logger -t aif-epilog -- "job=${SLURM_JOB_ID:-?} $*" 2>/dev/null || echo "aif-epilog: $*" >&2; }

job=${SLURM_JOB_ID:-}
case "$job" in
  ''|*[!0-9_]*) exit 0 ;;
esac
pidfile="$RUNDIR/job-$job.pid"
[ -r "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
case "$pid" in ''|*[!0-9]*) rm -f "$pidfile"; exit 0 ;; esac
# Only signal our exporter, never a recycled PID.
if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "aif-node-export" ]; then
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    log "aif-node-exporter pid=$pid did not stop in 20 s; killed"
  else
    log "stopped aif-node-exporter pid=$pid"
  fi
fi
rm -f "$pidfile"
# Buffers of jobs that ended more than 7 days ago.
find "$STATEDIR" -maxdepth 1 -name 'job-*.db*' -mtime +7 -delete 2>/dev/null
exit 0
