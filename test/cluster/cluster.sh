#!/usr/bin/env bash
# npurun's test cluster: N simulated Ascend hosts on this machine, each reached over real OpenSSH.
#
#   test/cluster/cluster.sh up N [-o I:KEY[=VALUE]]... [--owner PID] [--wait SECONDS]
#   test/cluster/cluster.sh down [--if-id ID]       kill everything, remove namespaces, links, files
#   test/cluster/cluster.sh status                  hosts, sshd, link, processes that are not sshd's listener
#   test/cluster/cluster.sh leftovers               "hI PID CMDLINE" of every process that is not sshd's
#   test/cluster/cluster.sh exec I CMD...           run CMD inside host I (its network, mounts, hostname)
#   test/cluster/cluster.sh cut I | restore I       take host I's link down / bring it back
#
# Host I (1..244) is network namespace npc-hI, joined by veth npc-hI-v to bridge npc-br (10.213.0.1/24),
# address 10.213.0.(10+I), hostname hI. Its own mount namespace (kept in $DIR/ns, so `exec` works without
# sshd) overlays /etc (its hccn.conf, hostname, hosts) and /usr/local (npu-smi and hccn_tool stand-ins in
# /usr/local/Ascend/driver/tools printing the formats of test/fixtures), and binds its own /tmp and /root;
# the rest (/usr, /work, ...) is shared like a cluster's shared filesystem. Nothing is written to the real
# /etc, /usr/local or /root: upper layers live in the cluster dir, a tmpfs at $DIR.
# Each host runs OpenSSH sshd on its own address only: key auth only, root with a key, stock limits.
# Hosts are set up in parallel batches of $BATCH (default 16).
#
# Per-host options, -o I:KEY[=VALUE] (I a host number or "all"; lists are comma-separated):
#   chip=910B|A3            npu-smi layout (default 910B; A3: two chips per NPU, devices by Phy-ID)
#   devices=N               number of devices (default 8 for 910B, 16 for A3)
#   missing=A,B             devices absent from npu-smi (fell off the bus)
#   unhealthy=A,B           devices with health Warning
#   held=DEV:PID,...        devices held by a process (python3, as in the fixture)
#   no-hccn-entry=A,B       devices without /etc/hccn.conf lines (hccn_tool still answers)
#   no-address=A,B          devices without hccn.conf lines whose hccn_tool query fails
#   no-driver               no /usr/local/Ascend at all
#   no-sshd                 no sshd (connections are refused)
#   wrong-host-key          known_hosts lists another key for this host
#   slow-login              root's ~/.bashrc acts like a pyenv/conda/CANN init: it sleeps login-sleep
#                           seconds, then holds $DIR/pyenv/.pyenv-shim.lock (one file for ALL hosts, like
#                           a $HOME/.pyenv on NFS, so logins on every host queue on it, as `pyenv rehash`
#                           does) for login-lock seconds, and puts $DIR/pyenv/shims first on PATH: a
#                           bash `python3` shim that sleeps shim-sleep seconds, waits for the same lock,
#                           then execs /usr/bin/python3
#   login-sleep=S           default 0.25
#   login-lock=S            default 0.05 (how long each login holds the lock)
#   shim-sleep=S            default 0.05
# Every host's ~/.bashrc (slow or not) appends "EPOCHREALTIME PID COMMAND" to $DIR/hosts/hI/logins, COMMAND
# being $BASH_EXECUTION_STRING (newlines as \n) or $0; the python3 shim appends to .../hI/shim-runs.
# Debian's bash sources ~/.bashrc when sshd starts it non-interactively (bash -c CMD: every `ssh host CMD`,
# every exec channel, and the sftp subsystem, which sshd also starts through the login shell).
# Device d of host I has IP 192.168.I.(100+d) (I up to 255). Client files in $DIR: id_ed25519 (authorized
# for root), known_hosts, ssh_config (Host h1..hN), cluster.json (what test/cluster/index.ts reads).
#
# `up` first waits (--wait, default 90 s) while a cluster whose --owner process is alive holds $DIR or
# another interface holds 10.213.0.0/24, then removes whatever a crashed run left, then builds.
# (test/cluster/index.ts's startCluster also takes /tmp/npurun-cluster.lock for the cluster's lifetime.)
set -euo pipefail

PREFIX=npc
DIR=/run/npurun-cluster
BRIDGE=$PREFIX-br
SUBNET=10.213.0
LOCK=$0
MAX_HOSTS=244
BATCH=${NPC_BATCH:-16}

die() { echo "cluster.sh: $*" >&2; exit 1; }
ns_of() { echo "$PREFIX-h$1"; }
veth_of() { echo "$PREFIX-h$1-v"; }
addr_of() { echo "$SUBNET.$((10 + $1))"; }
in_list() { [[ ",$2," == *",$1,"* ]]; }

declare -A OPT=()
opt() { # opt HOST KEY -> the host's value, else the "all" value, else ""
  local v=${OPT["$1:$2"]:-${OPT["all:$2"]:-}}
  echo "$v"
}

# ---------------------------------------------------------------- teardown

own_mounts() { # mount points at or under $DIR in this namespace, deepest first
  awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

down() {
  local n p i
  local spaces
  spaces=$(ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^$PREFIX-h" || true)
  # Several rounds: a dying process may still fork.
  for i in 1 2 3 4 5; do
    p=$(for n in $spaces; do ip netns pids "$n" 2>/dev/null || true; done)
    [ -z "$p" ] && break
    kill -9 $p 2>/dev/null || true
    sleep 0.05
  done
  for n in $spaces; do ip netns del "$n" 2>/dev/null || true; done
  for n in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1 | grep "^$PREFIX-" || true); do
    ip link del "$n" 2>/dev/null || true
  done
  if [ -f "$DIR/created-run-sshd" ]; then rmdir /run/sshd 2>/dev/null || true; fi
  for p in $(own_mounts); do umount -l "$p" 2>/dev/null || true; done
  [ -d "$DIR" ] && rm -rf "$DIR"
  return 0
}

# ---------------------------------------------------------------- stand-ins for the Ascend tools

SEP_EQ='+===========================+===============+====================================================+'
SEP_DASH='+---------------------------+---------------+----------------------------------------------------+'
SEP_FULL='+------------------------------------------------------------------------------------------------+'

health_of() { in_list "$1" "$UNHEALTHY" && echo Warning || echo OK; }
held_rows() { # held_rows DEVICE NPU CHIP: process rows of the processes holding DEVICE
  local entry
  for entry in ${HELD//,/ }; do
    [ "${entry%%:*}" = "$1" ] && printf '| %-7s %-17s | %-13s | %-24s | %-23s |\n' "$2" "$3" "${entry#*:}" python3 61034
  done
  return 0
}
no_process_row() { printf '| %-94s |\n' "No running processes found in NPU $1"; }

# `npu-smi info` of an Atlas 800T A2 (910B): one chip per NPU (test/fixtures/npu-smi-info-910b.txt).
render_910b() {
  local d rows
  echo "$SEP_FULL"
  echo '| npu-smi 23.0.6                   Version: 23.0.6                                                |'
  echo "$SEP_DASH"
  echo '| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|'
  echo '| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |'
  echo "$SEP_EQ"
  for d in $DEVICES; do
    printf '| %-5s %-19s | %-13s | 93.1        36                0    / 0             |\n' "$d" 910B3 "$(health_of "$d")"
    printf '| %-25s | %-13s | 0           0    / 0          3380 / 65536         |\n' 0 "$(printf '0000:%02X:00.0' $((0xC1 + d)))"
    echo "$SEP_EQ"
  done
  echo "$SEP_DASH"
  echo '| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |'
  echo "$SEP_EQ"
  for d in $DEVICES; do
    rows=$(held_rows "$d" "$d" 0)
    if [ -n "$rows" ]; then echo "$rows"; else no_process_row "$d"; fi
    echo "$SEP_EQ"
  done
}

# `npu-smi info` of an Atlas A3: two chips per NPU, device id = Phy-ID = 2*NPU+chip (npu-smi-info-a3.txt).
render_a3() {
  local d npu chip prev rows npus
  echo "$SEP_FULL"
  echo '| npu-smi 25.3.rc1                 Version: 25.3.rc1                                              |'
  echo "$SEP_DASH"
  echo '| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|'
  echo '| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |'
  echo "$SEP_EQ"
  prev=
  for d in $DEVICES; do
    npu=$((d / 2)) chip=$((d % 2))
    [ -n "$prev" ] && { [ "$((prev / 2))" = "$npu" ] && echo "$SEP_FULL" || echo "$SEP_EQ"; }
    printf '| %-5s %-19s | %-13s | %-11s 30                0    / 0             |\n' "$npu" Ascend910 "$(health_of "$d")" "$([ "$chip" = 0 ] && echo 163.6 || echo -)"
    printf '| %-5s %-19s | %-13s | 0           0    / 0          3180 / 65536         |\n' "$chip" "$d" "$(printf '0000:%02X:00.0' $((0x9D - 2 * npu + chip)))"
    prev=$d
  done
  [ -n "$prev" ] && echo "$SEP_EQ"
  echo "$SEP_DASH"
  echo '| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |'
  echo "$SEP_EQ"
  npus=$(for d in $DEVICES; do echo $((d / 2)); done | uniq)
  for npu in $npus; do
    rows=$(for d in $DEVICES; do [ $((d / 2)) = "$npu" ] && held_rows "$d" "$npu" $((d % 2)); done; true)
    if [ -n "$rows" ]; then echo "$rows"; else no_process_row "$npu"; fi
    echo "$SEP_EQ"
  done
}

write_tools() { # write_tools HOSTROOT: npu-smi and hccn_tool reading this host's files
  local root=$1 tools=$1/usr-local/Ascend/driver/tools
  mkdir -p "$tools"
  cat > "$tools/npu-smi" <<EOF
#!/bin/sh
# Stand-in for npu-smi on a simulated host: "info" prints this host's table.
case "\$*" in
  info) cat $root/npu-smi-info.txt ;;
  *) echo "npu-smi (simulated): only 'npu-smi info' is known" >&2; exit 2 ;;
esac
EOF
  cat > "$tools/hccn_tool" <<EOF
#!/bin/sh
# Stand-in for hccn_tool on a simulated host: -i N -ip -g and -i N -link -g.
[ "\$1" = -i ] && [ "\$4" = -g ] || { echo "hccn_tool (simulated): usage: hccn_tool -i N -ip|-link -g" >&2; exit 2; }
grep -qx "\$2" $root/devices || { echo "device \$2 does not exist" >&2; exit 1; }
case "\$3" in
  -link) echo "link status: UP" ;;
  -ip)
    ip=\$(awk -v d="\$2" '\$1 == d { print \$2 }' $root/hccn_tool.ips)
    [ -n "\$ip" ] || { echo "get ip of device \$2 failed: no address configured" >&2; exit 1; }
    printf 'ipaddr:%s\nnetmask:255.255.255.0\n' "\$ip" ;;
  *) echo "hccn_tool (simulated): unknown option \$3" >&2; exit 2 ;;
esac
EOF
  chmod 755 "$tools/npu-smi" "$tools/hccn_tool"
}

# ---------------------------------------------------------------- root's login environment

# A host's root home: .profile sources .bashrc; .bashrc counts the login in $root/logins and, with
# slow-login, costs what a pyenv/conda/CANN init costs (a sleep, then an exclusive lock shared by every
# host, held a moment) and puts the python3 shim first on PATH. Without slow-login the home is plain:
# the machine's own ~/.bashrc may start pyenv or conda, whose locks make many concurrent shells queue.
write_home() { # write_home HOST HOSTROOT
  local h=$1 root=$2 rc=$2/home/.bashrc
  : > "$root/logins"
  printf '[ -n "$BASH" ] && [ -f ~/.bashrc ] && . ~/.bashrc\n' > "$root/home/.profile"
  {
    printf '# simulated host h%s: every login is counted in %s/logins\n' "$h" "$root"
    printf 'NPC_LOGINS=%s/logins\n' "$root"
    # Builtins only (no fork): counting must not change what a plain login costs.
    cat <<'EOF'
NPC_CMD=${BASH_EXECUTION_STRING:-$0}
printf '%s %s %s\n' "$EPOCHREALTIME" "$$" "${NPC_CMD//$'\n'/\\n}" >> "$NPC_LOGINS"
unset NPC_CMD NPC_LOGINS
EOF
    if [ -n "$(opt "$h" slow-login)" ]; then
      local sleep lock shim
      sleep=$(opt "$h" login-sleep) lock=$(opt "$h" login-lock) shim=$(opt "$h" shim-sleep)
      printf '# slow-login: like `eval "$(pyenv init -)"` with a shared ~/.pyenv: a sleep, then the rehash lock\n'
      printf 'export PYENV_ROOT=%s/pyenv NPC_SHIM_SLEEP=%s NPC_HOST_ROOT=%s\n' "$DIR" "${shim:-0.05}" "$root"
      printf 'case ":$PATH:" in *":$PYENV_ROOT/shims:"*) ;; *) export PATH="$PYENV_ROOT/shims:$PATH" ;; esac\n'
      printf 'sleep %s\n' "${sleep:-0.25}"
      printf 'flock -w 60 "$PYENV_ROOT/.pyenv-shim.lock" sleep %s || echo "pyenv: cannot rehash: couldn'"'"'t acquire lock $PYENV_ROOT/.pyenv-shim.lock for 60 seconds" >&2\n' "${lock:-0.05}"
    fi
  } > "$rc"
}

# The python3 shim every slow-login host puts first on PATH (one for all hosts, like a shared ~/.pyenv).
write_pyenv() {
  mkdir -p "$DIR/pyenv/shims"
  : > "$DIR/pyenv/.pyenv-shim.lock"
  cat > "$DIR/pyenv/shims/python3" <<'EOF'
#!/usr/bin/env bash
# pyenv-like shim (test cluster, slow-login): costs a bash start, a sleep and a wait on the shared lock.
printf '%s %s %s\n' "$EPOCHREALTIME" "$$" "$*" >> "${NPC_HOST_ROOT:-/dev/null}/shim-runs" 2>/dev/null
sleep "${NPC_SHIM_SLEEP:-0.05}"
flock -w 60 "$PYENV_ROOT/.pyenv-shim.lock" true
exec /usr/bin/python3 "$@"
EOF
  chmod 755 "$DIR/pyenv/shims/python3"
}

# ---------------------------------------------------------------- one host

setup_host() {
  local h=$1 root=$DIR/hosts/h$1 ns veth addr chip count d ip json_ips=
  ns=$(ns_of "$h") veth=$(veth_of "$h") addr=$(addr_of "$h")
  mkdir -p "$root"/{etc,etc.work,usr-local,usr-local.work,tmp,home}
  chmod 1777 "$root/tmp"
  chmod 700 "$root/home"
  write_home "$h" "$root"

  chip=$(opt "$h" chip); chip=${chip:-910B}
  count=$(opt "$h" devices)
  case "$chip" in
    910B) count=${count:-8} ;;
    A3) count=${count:-16} ;;
    *) die "host $h: chip must be 910B or A3, not '$chip'" ;;
  esac
  [[ $count =~ ^[0-9]+$ ]] && [ "$count" -le 16 ] || die "host $h: devices must be 0..16, not '$count'"
  local missing no_entry no_address
  missing=$(opt "$h" missing) no_entry=$(opt "$h" no-hccn-entry) no_address=$(opt "$h" no-address)
  UNHEALTHY=$(opt "$h" unhealthy) HELD=$(opt "$h" held)
  DEVICES=$(for ((d = 0; d < count; d++)); do in_list "$d" "$missing" || echo "$d"; done)
  printf '%s\n' $DEVICES > "$root/devices"

  : > "$root/etc/hccn.conf"
  : > "$root/hccn_tool.ips"
  for d in $DEVICES; do
    ip=192.168.$h.$((100 + d))
    in_list "$d" "$no_address" && continue
    in_list "$d" "$no_entry" || printf 'address_%d=%s\nnetmask_%d=255.255.255.0\nnetdetect_%d=192.168.%d.1\n' "$d" "$ip" "$d" "$d" "$h" >> "$root/etc/hccn.conf"
    echo "$d $ip" >> "$root/hccn_tool.ips"
    json_ips+="${json_ips:+, }\"$d\": \"$ip\""
  done
  if [ -z "$(opt "$h" no-driver)" ]; then
    if [ "$chip" = A3 ]; then render_a3; else render_910b; fi > "$root/npu-smi-info.txt"
    write_tools "$root"
  fi
  echo "h$h" > "$root/etc/hostname"
  cp "$DIR/etc-hosts" "$root/etc/hosts"
  # sshd without PAM refuses a locked account ("!" hash) even for key login: unlock root in this host's /etc only.
  if [ "$(awk -F: '$1 == "root" { print substr($2, 1, 1) }' /etc/shadow)" = "!" ]; then
    cp -p /etc/shadow "$root/etc/shadow"
    awk -F: -v OFS=: '$1 == "root" { $2 = "*" } 1' /etc/shadow > "$root/etc/shadow"
  fi

  ssh-keygen -q -t ed25519 -N '' -C "h$h" -f "$root/ssh_host_ed25519_key"
  local listed=$root/ssh_host_ed25519_key.pub
  if [ -n "$(opt "$h" wrong-host-key)" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "not-h$h" -f "$root/impostor_key"
    listed=$root/impostor_key.pub
  fi
  echo "$addr $(cut -d' ' -f1,2 "$listed")" > "$root/known_hosts"
  cat > "$root/sshd_config" <<EOF
ListenAddress $addr
Port 22
HostKey $root/ssh_host_ed25519_key
PidFile $root/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
EOF

  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$BRIDGE" up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up

  # The host's mount and UTS namespaces, kept alive by bind mounts on $DIR/ns files (unshare does that
  # from this, the root, namespace); the mounts are made from inside the netns so /sys shows its links.
  : > "$DIR/ns/h$h.mnt"
  : > "$DIR/ns/h$h.uts"
  unshare --mount="$DIR/ns/h$h.mnt" --uts="$DIR/ns/h$h.uts" --propagation private \
    nsenter --net="/run/netns/$ns" sh -ec "
      hostname h$h
      mount -t sysfs sysfs /sys 2>/dev/null || true
      mount -t overlay npc-etc -o lowerdir=/etc,upperdir=$root/etc,workdir=$root/etc.work /etc
      mount -t overlay npc-usr-local -o lowerdir=/usr/local,upperdir=$root/usr-local,workdir=$root/usr-local.work /usr/local
      mount --bind $root/tmp /tmp
      mount --bind $root/home /root" \
    || die "host $h: mount namespace setup failed"

  local sshd=false
  if [ -z "$(opt "$h" no-sshd)" ]; then
    sshd=true
    in_host "$h" /usr/sbin/sshd -f "$root/sshd_config" -E "$root/sshd.log" || die "host $h: sshd failed: $(tail -3 "$root/sshd.log")"
  fi
  printf '{"index": %d, "name": "h%d", "address": "%s", "netns": "%s", "veth": "%s", "root": "%s", "mountNs": "%s", "utsNs": "%s", "sshdPidFile": %s, "chip": "%s", "devices": [%s], "deviceIps": {%s}}\n' \
    "$h" "$h" "$addr" "$ns" "$veth" "$root" "$DIR/ns/h$h.mnt" "$DIR/ns/h$h.uts" \
    "$($sshd && echo "\"$root/sshd.pid\"" || echo null)" "$chip" "$(echo $DEVICES | tr ' ' ',')" "$json_ips" > "$root/host.json"
}

in_host() { # in_host I CMD...: CMD in host I's network, mount and UTS namespaces
  local h=$1
  shift
  nsenter --net="/run/netns/$(ns_of "$h")" --mount="$DIR/ns/h$h.mnt" --uts="$DIR/ns/h$h.uts" -- "$@"
}

# ---------------------------------------------------------------- up

busy_reason() { # why $DIR or the subnet is taken by someone else ("" if free)
  local owner other
  owner=$(cat "$DIR/owner" 2>/dev/null || true)
  if [ -n "$owner" ] && [ "$owner" != "$OWNER" ] && kill -0 "$owner" 2>/dev/null; then
    echo "the cluster in $DIR belongs to live process $owner ($(tr '\0' ' ' < /proc/"$owner"/cmdline 2>/dev/null | cut -c1-80))"
    return
  fi
  other=$(ip -o -4 addr show 2>/dev/null | awk -v b="$BRIDGE" '$4 ~ /^10\.213\.0\./ && $2 != b { print $2 }' | head -1)
  [ -n "$other" ] && echo "interface $other holds an address in $SUBNET.0/24 (another cluster or network on this subnet)"
  return 0
}

up() {
  local count=$1 h waited=0 reason
  [[ $count =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] && [ "$count" -le "$MAX_HOSTS" ] || die "up: 1 to $MAX_HOSTS hosts, not '$count'"
  for key in "${!OPT[@]}"; do
    h=${key%%:*}
    [ "$h" = all ] || { [ "$h" -ge 1 ] && [ "$h" -le "$count" ]; } || die "option for host $h, but hosts are 1..$count"
  done
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces, mounts)"
  for tool in ip unshare nsenter flock ssh-keygen /usr/sbin/sshd; do command -v "$tool" > /dev/null || die "missing $tool"; done

  exec 9< "$LOCK"
  flock 9
  while reason=$(busy_reason) && [ -n "$reason" ]; do
    [ "$waited" -ge "$WAIT" ] && die "gave up after ${WAIT}s: $reason"
    [ "$waited" = 0 ] && echo "cluster.sh: waiting: $reason" >&2
    flock -u 9
    sleep 1
    waited=$((waited + 1))
    flock 9
  done
  down

  mkdir -p "$DIR"
  mount -t tmpfs -o mode=755 npc-cluster "$DIR"
  mount --make-private "$DIR"
  mkdir "$DIR/ns" "$DIR/hosts"
  [ -n "$OWNER" ] && echo "$OWNER" > "$DIR/owner"
  echo "$$-$(date +%s%N)" > "$DIR/id"
  if [ ! -d /run/sshd ]; then
    mkdir -m 755 /run/sshd
    : > "$DIR/created-run-sshd"
  fi
  ssh-keygen -q -t ed25519 -N '' -C npurun-test-client -f "$DIR/id_ed25519"
  install -m 600 "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  { cat /etc/hosts; for ((h = 1; h <= count; h++)); do echo "$(addr_of "$h") h$h"; done; } > "$DIR/etc-hosts"

  ip link add "$BRIDGE" type bridge
  ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  write_pyenv
  # Parallel batches: all at once would fork a few thousand processes together on a small machine.
  local pids=() failed= first
  for ((first = 1; first <= count; first += BATCH)); do
    pids=()
    for ((h = first; h < first + BATCH && h <= count; h++)); do
      setup_host "$h" > "$DIR/hosts/setup-h$h.log" 2>&1 &
      pids+=("$h:$!")
    done
    for p in "${pids[@]}"; do wait "${p#*:}" || failed+=" h${p%%:*}"; done
    [ -z "$failed" ] || break
  done
  [ -z "$failed" ] || { cat "$DIR"/hosts/setup-h*.log >&2; down; die "setup failed on$failed"; }

  # sshd daemonizes before it listens and writes its pid file once it does.
  local root tries
  for ((h = 1; h <= count; h++)); do
    [ -n "$(opt "$h" no-sshd)" ] && continue
    root=$DIR/hosts/h$h
    for ((tries = 0; tries < 200; tries++)); do
      [ -s "$root/sshd.pid" ] && break
      sleep 0.025
    done
    [ -s "$root/sshd.pid" ] || { local log; log=$(tail -3 "$root/sshd.log" 2>/dev/null); down; die "host $h: sshd did not come up: $log"; }
  done

  cat "$DIR"/hosts/h*/known_hosts > "$DIR/known_hosts"
  for ((h = 1; h <= count; h++)); do
    printf 'Host h%d\n  HostName %s\n  Port 22\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n\n' \
      "$h" "$(addr_of "$h")" "$DIR/id_ed25519" "$DIR/known_hosts"
  done > "$DIR/ssh_config"
  {
    printf '{"id": "%s", "dir": "%s", "keyPath": "%s", "knownHostsPath": "%s", "sshConfigPath": "%s", "hosts": [\n' \
      "$(cat "$DIR/id")" "$DIR" "$DIR/id_ed25519" "$DIR/known_hosts" "$DIR/ssh_config"
    for ((h = 1; h <= count; h++)); do
      [ "$h" -gt 1 ] && printf ','
      cat "$DIR/hosts/h$h/host.json"
    done
    echo ']}'
  } > "$DIR/cluster.json"
  echo "$DIR"
}

# ---------------------------------------------------------------- status

status() {
  local n h infra p link
  [ -f "$DIR/cluster.json" ] || echo "no cluster in $DIR"
  for n in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^$PREFIX-h" | sort -V || true); do
    h=${n#"$PREFIX-h"}
    infra=$(cat "$DIR/hosts/h$h/sshd.pid" 2>/dev/null || true)
    link=$(ip -br link show "$(veth_of "$h")" 2>/dev/null | awk '{ print $2 }')
    echo "h$h $(addr_of "$h") link ${link:-missing} sshd $([ -n "$infra" ] && kill -0 "$infra" 2>/dev/null && echo "pid $infra" || echo none)"
    for p in $(ip netns pids "$n" 2>/dev/null); do
      [ "$p" = "$infra" ] && continue
      echo "  $p $(tr '\0' ' ' < /proc/"$p"/cmdline 2>/dev/null)"
    done
  done
}

# "hI PID CMDLINE" for every process in a host's network namespace but sshd's (its listener, and the
# per-connection processes that leave a moment after the client; index.ts's leftovers() polls for those).
leftovers() {
  local n h p
  for n in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^$PREFIX-h" | sort -V || true); do
    h=${n#"$PREFIX-h"}
    for p in $(ip netns pids "$n" 2>/dev/null); do
      [ "$(cat /proc/"$p"/comm 2>/dev/null)" = sshd ] && continue
      [ -r "/proc/$p/cmdline" ] && echo "h$h $p $(tr '\0' ' ' < /proc/"$p"/cmdline 2>/dev/null)"
    done
  done
  return 0
}

# ---------------------------------------------------------------- main

cmd=${1:-}
shift || true
case "$cmd" in
  up)
    count=${1:?usage: cluster.sh up N [-o I:KEY[=VALUE]]... [--owner PID] [--wait SECONDS]}
    shift
    OWNER= WAIT=90
    while [ $# -gt 0 ]; do
      case "$1" in
        -o)
          spec=${2:?-o needs I:KEY[=VALUE]}
          [[ $spec =~ ^(all|[0-9]+):([a-z0-9-]+)(=(.*))?$ ]] || die "bad option '$spec' (want I:KEY[=VALUE])"
          host=${BASH_REMATCH[1]} key=${BASH_REMATCH[2]} value=1
          [ -n "${BASH_REMATCH[3]}" ] && value=${BASH_REMATCH[4]}
          case "$key" in
            chip | devices | missing | unhealthy | held | no-hccn-entry | no-address | no-driver | no-sshd | wrong-host-key | slow-login) ;;
            login-sleep | login-lock | shim-sleep)
              [[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$key must be seconds (e.g. 0.05), not '$value'" ;;
            *) die "unknown host option '$key'" ;;
          esac
          OPT["$host:$key"]=$value
          shift 2
          ;;
        --owner) OWNER=${2:?--owner needs a pid}; shift 2 ;;
        --wait) WAIT=${2:?--wait needs seconds}; shift 2 ;;
        *) die "unknown argument '$1'" ;;
      esac
    done
    up "$count"
    ;;
  down)
    exec 9< "$LOCK"
    flock 9
    if [ "${1:-}" = --if-id ]; then
      # Only the cluster that was asked for: a newer one (another test's) stays.
      [ -f "$DIR/id" ] && [ "$(cat "$DIR/id")" != "${2:?--if-id needs an id}" ] && exit 0
    fi
    down
    ;;
  status) status ;;
  leftovers) leftovers ;;
  exec)
    h=${1:?usage: cluster.sh exec I CMD...}
    shift
    [ -e "$DIR/ns/h$h.mnt" ] || die "no host h$h"
    in_host "$h" "$@"
    ;;
  cut) ip link set "$(veth_of "${1:?usage: cluster.sh cut I}")" down ;;
  restore) ip link set "$(veth_of "${1:?usage: cluster.sh restore I}")" up ;;
  *) sed -n '2,50p' "$0"; exit 2 ;;
esac
