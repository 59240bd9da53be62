#!/usr/bin/env bash
# Start a real single-node Slurm (munge, mariadb + slurmdbd for accounting, slurmctld, slurmd) on this
# machine, for the integration tests (`pytest -m slurm`) or to try `snakemake --profile slurm` by hand.
# Needs root and Debian/Ubuntu (installs its packages with apt-get). Stop it with stop_cluster.sh.
#
#   tests/slurm/start_cluster.sh            # state, logs and PIDs under $EIGSWEEP_SLURM_DIR (default /tmp/eigsweep-slurm)
#
# The node `localhost` has all CPUs of this machine, 8 GB and two fake GPUs (gres on /dev/tty0-1), in
# partitions `debug` (default) and `gpu`. /etc/slurm/{slurm,gres,slurmdbd}.conf become symlinks to the
# files written here (Snakemake's job steps drop SLURM_CONF, so the default location must be right).
set -euo pipefail
D=${EIGSWEEP_SLURM_DIR:-/tmp/eigsweep-slurm}
DB_PORT=${EIGSWEEP_SLURM_DB_PORT:-3307}
[ "$(id -u)" = 0 ] || { echo "start_cluster.sh: needs root" >&2; exit 1; }
if [ -s "$D/pids" ] && kill -0 $(cat "$D/pids") 2>/dev/null; then
    echo "start_cluster.sh: already running (PIDs in $D/pids)"; exit 0
fi

pkgs="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
missing=$(for p in $pkgs; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "installing $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

rm -rf "$D"; mkdir -p "$D"/{state,spool,log,mysql}
: > "$D/pids"
start() {  # start NAME CMD...: run in its own session, record the PID
    local name=$1; shift
    setsid "$@" >"$D/log/$name.out" 2>&1 < /dev/null &
    echo $! >> "$D/pids"
}
wait_for() {  # wait_for WHAT CMD...: retry CMD for up to 60 s
    local what=$1; shift
    for _ in $(seq 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "start_cluster.sh: $what did not come up; logs in $D/log" >&2; tail -n 20 "$D"/log/* >&2; exit 1
}

# munge: the key comes from Debian's postinst
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
start munged setpriv --reuid=munge --regid=munge --clear-groups /usr/sbin/munged --foreground  # setpriv execs: the PID is munged's
wait_for munge bash -c "munge -n | unmunge"

# mariadb for slurmdbd: own datadir and socket, TCP on 127.0.0.1 only, no grant tables (a throwaway DB)
mariadb-install-db --datadir="$D/mysql" --user=root --auth-root-authentication-method=normal >"$D/log/mariadb-install.out" 2>&1
start mariadbd /usr/sbin/mariadbd --no-defaults --datadir="$D/mysql" --socket="$D/mysql.sock" \
    --pid-file="$D/mariadb.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --user=root --skip-grant-tables
wait_for mariadb mariadb-admin --socket="$D/mysql.sock" ping

cat > "$D/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db
LogFile=$D/log/slurmdbd.log
PidFile=$D/slurmdbd.pid
CONF
chmod 600 "$D/slurmdbd.conf"

cat > "$D/slurm.conf" <<CONF
ClusterName=eigsweep
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=600
KillWait=5
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=8000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
CONF
echo "NodeName=localhost Name=gpu File=/dev/tty[0-1]" > "$D/gres.conf"
mkdir -p /etc/slurm
for f in slurm.conf gres.conf slurmdbd.conf; do
    if [ -e "/etc/slurm/$f" ] && [ ! -L "/etc/slurm/$f" ]; then mv "/etc/slurm/$f" "/etc/slurm/$f.orig"; fi
    ln -sfn "$D/$f" "/etc/slurm/$f"
done

start slurmdbd /usr/sbin/slurmdbd -D
wait_for slurmdbd sacctmgr -n list cluster
start slurmctld /usr/sbin/slurmctld -D -i
wait_for slurmctld scontrol ping
sacctmgr -i add account research >/dev/null 2>&1 || true
sacctmgr -i add user root Account=research >/dev/null 2>&1 || true
start slurmd /usr/sbin/slurmd -D -N localhost
wait_for "node localhost" bash -c "sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)'"
echo "Slurm is up: $(sinfo -h -o '%P %D %t' | tr '\n' ' ')(PIDs in $D/pids; stop with tests/slurm/stop_cluster.sh)"
