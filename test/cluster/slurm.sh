#!/usr/bin/env bash
# The Slurm option of npurun's test cluster: a real munged and slurmctld on this machine and one real
# slurmd inside each simulated host (test/cluster/cluster.sh must be up).
#
#   test/cluster/slurm.sh up NAME=ADDRESS:DEVICES...   e.g. h1=10.213.0.11:8 h2=10.213.0.12:8
#   test/cluster/slurm.sh down                         stop every daemon by its pid file, remove $SDIR
#
# Everything lives in $SDIR (/run/npurun-slurm): slurm.conf, gres.conf, cgroup.conf, a private munged
# (own key, socket, pid file: the machine's /etc/munge and /run/munge are left alone), slurmctld's state,
# one spool/log/pid file per node, and fake /dev/davinciN character devices per node declared as
# `Name=gpu Type=910b` gres (stock Slurm has no npu plugin that sets a device variable; gpu sets
# SLURM_STEP_GPUS). Clients find it through SLURM_CONF=$SDIR/slurm.conf.
# slurmctld binds the bridge address 10.213.0.1. Each slurmd runs in its host's network, mount and UTS
# namespaces (nsenter --net, never `ip netns exec`, which remounts /sys), so its steps see that host's
# /etc/hccn.conf and npu-smi stand-ins and its hostname. The host's namespace mounted a fresh sysfs,
# which hides /sys/fs/cgroup; slurmd 22.05 refuses to start without one, so the machine's cgroup v1
# hierarchies are mounted again there (the same hierarchies, nothing new on the machine).
set -euo pipefail

DIR=/run/npurun-cluster
SDIR=/run/npurun-slurm
BRIDGE_ADDR=10.213.0.1
die() { echo "slurm.sh: $*" >&2; exit 1; }

stop_pidfile() { # stop_pidfile FILE: TERM, then KILL after 3 s, the process named in FILE
  local pid i
  pid=$(cat "$1" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  local f
  [ -d "$SDIR" ] || return 0
  for f in "$SDIR"/nodes/*/slurmd.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  # Steps still going die with their host's namespace (cluster.sh down kills every process there).
  stop_pidfile "$SDIR/slurmctld.pid"
  stop_pidfile "$SDIR/munge/munged.pid"
  rm -rf "$SDIR"
}

# Daemons must not keep a descriptor this script inherited: `flock LOCK slurm.sh up` would stay locked.
daemon() { "$@" 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; }

wait_for() { # wait_for SECONDS WHAT CMD...: until CMD succeeds
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" > /dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || die "$what did not come up within the time"
    sleep 0.1
  done
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root"
  for tool in slurmctld slurmd munged srun scontrol; do command -v "$tool" > /dev/null || die "missing $tool (apt-get install slurmctld slurmd slurm-client munge)"; done
  [ -f "$DIR/cluster.json" ] || die "the test cluster is not up ($DIR/cluster.json missing)"
  [ "$#" -ge 1 ] || die "up: give NAME=ADDRESS:DEVICES for each host"
  down
  mkdir -p "$SDIR/munge" "$SDIR/ctld" "$SDIR/nodes"
  chmod 700 "$SDIR/munge"
  dd if=/dev/urandom of="$SDIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$SDIR/munge/munge.key"
  daemon munged --force --socket="$SDIR/munge/munge.sock" --key-file="$SDIR/munge/munge.key" \
    --pid-file="$SDIR/munge/munged.pid" --log-file="$SDIR/munge/munged.log" --seed-file="$SDIR/munge/munged.seed"

  local names=() spec name addr devices
  {
    echo "ClusterName=npurun"
    echo "SlurmctldHost=$(hostname -s)($BRIDGE_ADDR)"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$SDIR/munge/munge.sock"
    echo "StateSaveLocation=$SDIR/ctld"
    echo "SlurmctldPidFile=$SDIR/slurmctld.pid"
    echo "SlurmctldLogFile=$SDIR/slurmctld.log"
    echo "SlurmdSpoolDir=$SDIR/nodes/%n"
    echo "SlurmdPidFile=$SDIR/nodes/%n/slurmd.pid"
    echo "SlurmdLogFile=$SDIR/nodes/%n/slurmd.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "SlurmdParameters=config_overrides"
    echo "ReturnToService=2"
    echo "MpiDefault=none"
    echo "GresTypes=gpu"
    echo "KillWait=5"
    echo "InactiveLimit=0"
    echo "MinJobAge=300"
    for spec in "$@"; do
      name=${spec%%=*} addr=${spec#*=} devices=${addr#*:} addr=${addr%%:*}
      names+=("$name")
      echo "NodeName=$name NodeAddr=$addr CPUs=16 Gres=gpu:910b:$devices State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=$(IFS=,; echo "${names[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
  } > "$SDIR/slurm.conf"
  echo "CgroupPlugin=cgroup/v1" > "$SDIR/cgroup.conf"
  : > "$SDIR/gres.conf"
  local d
  for spec in "$@"; do
    name=${spec%%=*} devices=${spec#*:}
    mkdir -p "$SDIR/nodes/$name/dev"
    for ((d = 0; d < devices; d++)); do mknod "$SDIR/nodes/$name/dev/davinci$d" c 1 3; done
    [ "$devices" -gt 0 ] && echo "NodeName=$name Name=gpu Type=910b File=$SDIR/nodes/$name/dev/davinci[0-$((devices - 1))]" >> "$SDIR/gres.conf"
  done
  export SLURM_CONF=$SDIR/slurm.conf
  daemon slurmctld -i
  wait_for 20 slurmctld scontrol ping

  local h
  for spec in "$@"; do
    name=${spec%%=*} h=${name#h}
    # Inside the host: its cgroup hierarchies (once), then slurmd, which daemonizes and writes its pid file.
    daemon nsenter --net="/run/netns/npc-$name" --mount="$DIR/ns/$name.mnt" --uts="$DIR/ns/$name.uts" -- sh -ec "
      if ! mountpoint -q /sys/fs/cgroup; then
        mount -t tmpfs -o mode=755 npc-cgroup /sys/fs/cgroup
        for c in cpu cpuacct cpuset memory devices freezer blkio pids; do mkdir -p /sys/fs/cgroup/\$c; mount -t cgroup -o \$c cgroup /sys/fs/cgroup/\$c; done
        mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
        mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
        mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
      fi
      SLURM_CONF=$SLURM_CONF slurmd -N $name"
    wait_for 20 "slurmd on $name" test -s "$SDIR/nodes/$name/slurmd.pid"
  done
  wait_for 30 "every node idle" sh -c "! sinfo -h -o '%t' | grep -qv idle"
  echo "$SDIR/slurm.conf"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) die "usage: slurm.sh up NAME=ADDRESS:DEVICES... | down" ;;
esac
