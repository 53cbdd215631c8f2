#!/usr/bin/env bash
# Slurm Prolog: start one aif-node-exporter for this job on this node, labelled
# with slurm_job_id (taken from SLURM_JOB_ID). Install as, e.g.,
#   Prolog=/etc/slurm/prolog.d/aif-node-exporter.sh   (slurm.conf)
# A prolog that fails drains the node, so this script never fails the job: any
# problem is logged to syslog and the script exits 0.
set -u
EXPORTER=${AIF_EXPORTER:-/usr/local/bin/aif-node-exporter}
CONFIG=${AIF_EXPORTER_CONFIG:-/etc/aif/node-exporter.toml}
RUNDIR=${AIF_RUNDIR:-/run/aif-node-exporter}
STATEDIR=${AIF_STATEDIR:-/var/lib/aif-node-exporter}

log() {
  logger -t aif-prolog -- "job=${SLURM_JOB_ID:-?} $*" 2>/dev/null
  echo "aif-prolog: job=${SLURM_JOB_ID:-?} $*" >&2
}

job=${SLURM_JOB_ID:-}
case "$job" in
  ''|*[!0-9_]*) log "no numeric SLURM_JOB_ID; not starting the exporter"; exit 0 ;;
esac
[ -x "$EXPORTER" ] || { log "$EXPORTER not installed"; exit 0; }
mkdir -p "$RUNDIR" "$STATEDIR" || { log "cannot create $RUNDIR or $STATEDIR"; exit 0; }

pidfile="$RUNDIR/job-$job.pid"
logfile="$STATEDIR/job-$job.log"
args=(--buffer "$STATEDIR/job-$job.db")
if [ -r "$CONFIG" ]; then
  args=(--config "$CONFIG" "${args[@]}")
  # --delete-on-exit needs a Pushgateway (the exporter refuses it otherwise):
  # ask for it only when the config names one (a top-level `pushgateway = `).
  if grep -Eq '^[[:space:]]*pushgateway[[:space:]]*=' "$CONFIG"; then
    args+=(--delete-on-exit)
  fi
fi

: >>"$logfile"
offset=$(wc -c <"$logfile")
SLURM_JOB_ID="$job" RUST_LOG="${AIF_EXPORTER_LOG:-info}" setsid "$EXPORTER" "${args[@]}" \
  </dev/null >>"$logfile" 2>&1 &
pid=$!

# Started means: the exporter logged its start line. A configuration error
# makes it exit (status 2) within milliseconds; report that instead.
deadline=$((SECONDS + ${AIF_START_TIMEOUT:-10}))
while :; do
  if tail -c +"$((offset + 1))" "$logfile" | grep -q "aif-node-exporter started"; then
    echo "$pid" >"$pidfile"
    log "started aif-node-exporter pid=$pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    rc=$?
    log "aif-node-exporter failed to start (exit $rc): $(tail -c +"$((offset + 1))" "$logfile" | tail -n 3 | tr '\n' ' ')"
    exit 0
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "$pid" >"$pidfile"
    log "aif-node-exporter pid=$pid running but not started after ${AIF_START_TIMEOUT:-10} s; see $logfile"
    exit 0
  fi
  sleep 0.1
done
