#!/usr/bin/env bash
# Stop the cluster started by start_cluster.sh: the PIDs it recorded, newest first (TERM, then KILL).
set -uo pipefail
D=${EIGSWEEP_SLURM_DIR:-/tmp/eigsweep-slurm}
[ -s "$D/pids" ] || { echo "stop_cluster.sh: nothing recorded in $D/pids"; exit 0; }
pids=$(tac "$D/pids")
for pid in $pids; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
done
: > "$D/pids"
echo "Slurm stopped"
