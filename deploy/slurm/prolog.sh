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

log() { logger -t aif-prolog -- "job=${SLURM_JOB_ID:-?} $*" 2>/dev/null || echo "aif-prolog: $*" >&2; }

job=${SLURM_JOB_ID:-}
case "$job" in
  ''|*[!0-9_]*) log "no numeric SLURM_JOB_ID; not starting the exporter"; exit 0 ;;
esac
[ -x "$EXPORTER" ] || { log "$EXPORTER not installed"; exit 0; }
mkdir -p "$RUNDIR" "$STATEDIR" || { log "cannot create $RUNDIR or $STATEDIR"; exit 0; }

pidfile="$RUNDIR/job-$job.pid"
args=(--buffer "$STATEDIR/job-$job.db" --delete-on-exit)
[ -r "$CONFIG" ] && args=(--config "$CONFIG" "${args[@]}")

SLURM_JOB_ID="$job" setsid "$EXPORTER" "${args[@]}" \
  </dev/null >>"$STATEDIR/job-$job.log" 2>&1 &
echo $! >"$pidfile"
log "started aif-node-exporter pid=$(cat "$pidfile")"
exit 0
