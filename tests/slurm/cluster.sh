#!/usr/bin/env bash
# A two-node Slurm cluster on 127.0.0.1 for the tests, with accounting (slurmdbd on MariaDB), so that
# sacct answers and neither the Snakemake plugin nor submitit waits forever on a lost job.
#
#   tests/slurm/cluster.sh install   # Debian packages (root; about 20 s)
#   tests/slurm/cluster.sh start     # munged, MariaDB, slurmdbd, slurmctld, two slurmd (about 10 s)
#   tests/slurm/cluster.sh stop      # each daemon by its pid file
#
# The two nodes, m3l-node1 and m3l-node2, are two slurmd on this host (Debian's Slurm is built with
# --enable-multiple-slurmd: `scontrol show config` says MULTIPLE_SLURMD = Yes), each on its own port, so
# that a job of 2 nodes x 2 tasks is a real multi-node job (tests/test_slurm_ddp.py). Each node offers
# $M3L_SLURM_CPUS CPUs (default 4, whatever the host has: SlurmdParameters=config_overrides) and half of
# 90% of the memory, so that 4 one-CPU tasks fit on a 2-core machine. Their names resolve to 127.0.0.1
# through a line added to /etc/hosts (Lightning's DDP reads the first node's name from SLURM_NODELIST).
# A requeued job may start again 10 s after its requeue (AuthInfo=cred_expire=10; Slurm's default waits 120 s).
#
# State, configs and logs live in $M3L_SLURM_STATE (default /var/tmp/m3l-slurm). Slurm reads its
# config at /etc/slurm/slurm.conf: the Snakemake plugin's job step drops every SLURM_* variable,
# SLURM_CONF included, so the file is linked there (never over a real cluster's own file).
set -euo pipefail

STATE=${M3L_SLURM_STATE:-/var/tmp/m3l-slurm}
ETC=/etc/slurm
NODES="m3l-node1 m3l-node2"

log() { echo "slurm cluster: $*" >&2; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    log "gave up waiting for $what; see the logs in $STATE/log, $STATE/munge and $STATE/mysql-run"
    return 1
}

install() {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
}

write_configs() {
    local cpus memory
    cpus=${M3L_SLURM_CPUS:-4}
    memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    memory=$((memory * 9 / 10 / 2))
    mkdir -p "$STATE"/{etc,log,run,spool/ctld,spool/d-m3l-node1,spool/d-m3l-node2}
    cat >"$STATE/etc/slurm.conf" <<EOF
ClusterName=m3ltest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d-%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=m3l-node1 NodeHostname=$(hostname) NodeAddr=127.0.0.1 Port=6818 CPUs=$cpus RealMemory=$memory State=UNKNOWN
NodeName=m3l-node2 NodeHostname=$(hostname) NodeAddr=127.0.0.1 Port=6828 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=m3l-node[1-2] Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=m3l-test
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf"
    mkdir -p "$ETC"
    for name in slurm.conf slurmdbd.conf; do
        if [ -e "$ETC/$name" ] && [ "$(readlink "$ETC/$name")" != "$STATE/etc/$name" ]; then
            log "$ETC/$name exists and is not ours: not touching a real cluster's config"
            exit 1
        fi
        ln -sfn "$STATE/etc/$name" "$ETC/$name"
    done
}

start_munge() {
    # munged runs as munge, with its folders owned by munge
    mkdir -p /run/munge /var/lib/munge "$STATE/munge"
    chown munge:munge /run/munge /var/lib/munge "$STATE/munge"
    [ -s /etc/munge/munge.key ] || mungekey --create
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid --log-file="$STATE/munge/munged.log"
    wait_for 10 munged munge -n
}

start_mariadb() {
    # A data folder and socket folder owned by mysql, or MariaDB fails without a word.
    mkdir -p "$STATE/mysql" "$STATE/mysql-run"
    chown mysql:mysql "$STATE/mysql" "$STATE/mysql-run"
    if [ ! -d "$STATE/mysql/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
    fi
    mariadbd --user=mysql --datadir="$STATE/mysql" --socket="$STATE/mysql-run/mysqld.sock" \
        --pid-file="$STATE/mysql-run/mysqld.pid" --bind-address=127.0.0.1 --port=3306 \
        --log-error="$STATE/mysql-run/mariadb.log" >/dev/null 2>&1 &
    wait_for 30 MariaDB mariadb --socket="$STATE/mysql-run/mysqld.sock" -e "SELECT 1"
    mariadb --socket="$STATE/mysql-run/mysqld.sock" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'm3l-test';
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'm3l-test';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

resolve_nodes() {
    # The node names as this host, for the jobs (MASTER_ADDR is the first node's name); not over a real name.
    local node
    for node in $NODES; do
        getent hosts "$node" >/dev/null && continue
        echo "127.0.0.1 $node  # m3l test cluster (tests/slurm/cluster.sh)" >>/etc/hosts
    done
}

start() {
    write_configs
    resolve_nodes
    start_munge
    start_mariadb
    slurmdbd
    wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/6819"
    slurmctld
    for node in $NODES; do slurmd -N "$node"; done
    wait_for 60 "both nodes to be idle" bash -c '[ "$(sinfo -h -N -o %t | grep -cx idle)" = 2 ]'
    wait_for 30 "accounting (sacct)" sacct -n -X
    log "up: $(sinfo -h -o '%P %D %c %m %t')"
}

stop_pid() {  # stop_pid NAME PIDFILE
    local pid
    [ -s "$2" ] || return 0
    pid=$(cat "$2")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { log "$1 did not stop, killing it"; kill -9 "$pid" 2>/dev/null || true; }
    fi
    rm -f "$2"
}

stop() {
    local node
    for node in $NODES; do stop_pid "slurmd $node" "$STATE/run/slurmd-$node.pid"; done
    stop_pid slurmd "$STATE/run/slurmd.pid"  # the one node of earlier versions of this script
    stop_pid slurmctld "$STATE/run/slurmctld.pid"
    stop_pid slurmdbd "$STATE/run/slurmdbd.pid"
    stop_pid mariadb "$STATE/mysql-run/mysqld.pid"
    stop_pid munged /run/munge/munged.pid
    log "stopped"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
