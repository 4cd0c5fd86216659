#!/usr/bin/env bash
# A simulated Ascend cluster on one Linux machine, for npurun's multi-host tests.
#
#   test/sim/cluster.sh up N [--opt "I:KEY[=VALUE]"]...   bring up hosts 1..N (prints the cluster dir)
#   test/sim/cluster.sh down                              kill everything, remove namespaces, links, files
#   test/sim/cluster.sh status                            hosts, and processes in each (sshd excluded)
#   test/sim/cluster.sh leftovers                         "host pid cmdline" of every non-sshd process
#   test/sim/cluster.sh exec I CMD...                     run CMD inside host I (its network and mounts)
#   test/sim/cluster.sh cut I | restore I                 take host I's link down / up
#
# Host I is network namespace npr-hI on bridge npr-br (10.213.0.1/24), address 10.213.0.(10+I), with a
# private mount namespace in which /etc/hccn.conf, /usr/local/Ascend/driver/tools (npu-smi and hccn_tool
# stand-ins printing the real 910B formats), /tmp and root's home (a plain .bashrc: the machine's own
# may initialise pyenv or conda, whose locks make concurrent shells queue) are its own (overlays, a
# bind mount and a tmpfs: nothing is written to the real /etc, /usr/local or /root). Each host runs a real OpenSSH sshd on its own address only,
# key auth only, stock limits (MaxSessions 10, MaxStartups 10:30:100), its own host key.
#
# Per-host options (--opt "I:KEY[=VALUE]"):
#   devices=N        number of NPUs (default 8; 1..16)
#   unhealthy=A,B    devices reported with health Warning
#   held=A,B         devices held by a process (pid 271828, python3)
#   nohccn=A,B       devices missing from /etc/hccn.conf (hccn_tool still answers)
#   noaddr=A,B       devices missing from /etc/hccn.conf and unknown to hccn_tool
#   nosshd           no sshd on this host (connections refused)
#   wrongkey         known_hosts lists a different key for this host
#   nonpu            no npu-smi at all
# Files for clients in the cluster dir: id_ed25519 (client key, authorized for root), known_hosts,
# ssh_config (Host h1..hN), cluster.json.
set -euo pipefail

PREFIX=npr
DIR=/run/npurun-sim
BRIDGE=${PREFIX}-br
SUBNET=10.213.0

die() { echo "cluster.sh: $*" >&2; exit 1; }
ns() { echo "${PREFIX}-h$1"; }
addr() { echo "${SUBNET}.$((10 + $1))"; }
opt_of() { # opt_of HOST KEY -> value ("" if absent, "1" for flags)
  local h=$1 key=$2 o
  for o in "${OPTS[@]:-}"; do
    [ -z "$o" ] && continue
    [ "${o%%:*}" = "$h" ] || continue
    local kv=${o#*:}
    if [ "${kv%%=*}" = "$key" ]; then
      if [[ $kv == *=* ]]; then echo "${kv#*=}"; else echo 1; fi
      return
    fi
  done
}
in_list() { [[ ",$2," == *",$1,"* ]]; }

non_sshd_pids() { # pids in the namespace that are not sshd (sshd is the host's infrastructure)
  local p
  for p in $(ip netns pids "$(ns "$1")" 2>/dev/null); do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "sshd" ] && continue
    echo "$p"
  done
}

down() {
  local n
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}-h" || true); do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
  for n in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^${PREFIX}-" || true); do
    ip link del "$n" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

render_npu_smi() { # render_npu_smi COUNT UNHEALTHY HELD
  local count=$1 unhealthy=$2 held=$3 i health bus
  local sep="+===========================+===============+====================================================+"
  echo "+------------------------------------------------------------------------------------------------+"
  echo "| npu-smi 23.0.6                   Version: 23.0.6                                                |"
  echo "+---------------------------+---------------+----------------------------------------------------+"
  echo "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|"
  echo "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"
  echo "$sep"
  for ((i = 0; i < count; i++)); do
    health=OK
    in_list "$i" "$unhealthy" && health=Warning
    bus=$(printf '0000:%02X:00.0' $((0xC1 + i)))
    printf '| %-5s %-19s | %-13s | 93.1        36                0    / 0             |\n' "$i" 910B3 "$health"
    printf '| %-25s | %-13s | 0           0    / 0          3380 / 65536         |\n' 0 "$bus"
    echo "$sep"
  done
  echo "+---------------------------+---------------+----------------------------------------------------+"
  echo "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |"
  echo "$sep"
  for ((i = 0; i < count; i++)); do
    if in_list "$i" "$held"; then
      printf '| %-7s %-17s | %-13s | %-24s | %-23s |\n' "$i" 0 271828 python3 61034
    else
      printf '| %-94s |\n' "No running processes found in NPU $i"
    fi
    echo "$sep"
  done
}

setup_host() {
  local h=$1 n host_dir count unhealthy held nohccn noaddr i ip
  n=$(ns "$h")
  host_dir=$DIR/h$h
  mkdir -p "$host_dir"/{etc-up,etc-work,local-up/Ascend/driver/tools,local-work,tmp}
  chmod 1777 "$host_dir/tmp"
  count=$(opt_of "$h" devices); count=${count:-8}
  unhealthy=$(opt_of "$h" unhealthy); held=$(opt_of "$h" held)
  nohccn=$(opt_of "$h" nohccn); noaddr=$(opt_of "$h" noaddr)
  : > "$host_dir/etc-up/hccn.conf"
  : > "$host_dir/hccn_tool.ips"
  for ((i = 0; i < count; i++)); do
    ip="192.168.$((100 + i)).$((10 + h))"
    if ! in_list "$i" "$nohccn" && ! in_list "$i" "$noaddr"; then
      printf 'address_%d=%s\nnetmask_%d=255.255.255.0\nnetdetect_%d=192.168.%d.1\n' "$i" "$ip" "$i" "$i" $((100 + i)) >> "$host_dir/etc-up/hccn.conf"
    fi
    in_list "$i" "$noaddr" || echo "$i $ip" >> "$host_dir/hccn_tool.ips"
  done
  local tools=$host_dir/local-up/Ascend/driver/tools
  if [ -z "$(opt_of "$h" nonpu)" ]; then
    render_npu_smi "$count" "$unhealthy" "$held" > "$host_dir/npu-smi-info.txt"
    printf '#!/bin/sh\n[ "$1" = info ] || { echo "usage: npu-smi info" >&2; exit 2; }\ncat %s\n' "$host_dir/npu-smi-info.txt" > "$tools/npu-smi"
    cat > "$tools/hccn_tool" <<EOF
#!/bin/sh
# hccn_tool -i N -ip -g
[ "\$1" = -i ] && [ "\$3" = -ip ] && [ "\$4" = -g ] || { echo "usage: hccn_tool -i N -ip -g" >&2; exit 2; }
ip=\$(awk -v d="\$2" '\$1 == d { print \$2 }' $host_dir/hccn_tool.ips)
[ -n "\$ip" ] || { echo "Device \$2 ip not configured" >&2; exit 1; }
printf 'ipaddr:%s\nnetmask:255.255.255.0\n' "\$ip"
EOF
    chmod +x "$tools/npu-smi" "$tools/hccn_tool"
  fi

  ip netns add "$n"
  ip link add "${PREFIX}-h$h-v" type veth peer name eth0 netns "$n"
  ip link set "${PREFIX}-h$h-v" master "$BRIDGE" up
  ip -n "$n" addr add "$(addr "$h")/24" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$n" link set lo up

  ssh-keygen -q -t ed25519 -N '' -C "h$h" -f "$host_dir/ssh_host_ed25519_key"
  cat > "$host_dir/sshd_config" <<EOF
ListenAddress $(addr "$h")
HostKey $host_dir/ssh_host_ed25519_key
PidFile $host_dir/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  if [ -n "$(opt_of "$h" wrongkey)" ]; then
    ssh-keygen -q -t ed25519 -N '' -f "$host_dir/impostor_key"
    echo "$(addr "$h") $(cut -d' ' -f1,2 "$host_dir/impostor_key.pub")" >> "$DIR/known_hosts"
  else
    echo "$(addr "$h") $(cut -d' ' -f1,2 "$host_dir/ssh_host_ed25519_key.pub")" >> "$DIR/known_hosts"
  fi
  printf 'Host h%d\n  HostName %s\n  User root\n  IdentityFile %s/id_ed25519\n  UserKnownHostsFile %s/known_hosts\n\n' "$h" "$(addr "$h")" "$DIR" "$DIR" >> "$DIR/ssh_config"

  if [ -z "$(opt_of "$h" nosshd)" ]; then
    ip netns exec "$n" unshare --mount --propagation private sh -c "
      mount -t overlay overlay -o lowerdir=/etc,upperdir=$host_dir/etc-up,workdir=$host_dir/etc-work /etc &&
      mount -t overlay overlay -o lowerdir=/usr/local,upperdir=$host_dir/local-up,workdir=$host_dir/local-work /usr/local &&
      mount --bind $host_dir/tmp /tmp &&
      mount -t tmpfs -o mode=700 tmpfs /root &&
      printf '# simulated host: its own home, a plain login environment\\n' > /root/.bashrc &&
      cp /root/.bashrc /root/.profile &&
      exec /usr/sbin/sshd -f $host_dir/sshd_config -E $host_dir/sshd.log" \
      || die "host $h: sshd did not start (see $host_dir/sshd.log)"
  fi
}

up() {
  local count=$1
  [ "$count" -ge 1 ] && [ "$count" -le 16 ] || die "up: 1 to 16 hosts"
  [ "$(id -u)" = 0 ] || die "needs root"
  for tool in ip unshare ssh-keygen /usr/sbin/sshd; do command -v "$tool" >/dev/null || die "missing $tool"; done
  down
  mkdir -p "$DIR" /run/sshd
  chmod 755 "$DIR"
  ssh-keygen -q -t ed25519 -N '' -C npurun-sim-client -f "$DIR/id_ed25519"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  chmod 600 "$DIR/authorized_keys"
  : > "$DIR/known_hosts"
  : > "$DIR/ssh_config"
  ip link add "$BRIDGE" type bridge
  ip addr add "${SUBNET}.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local h
  for ((h = 1; h <= count; h++)); do setup_host "$h"; done
  # Wait until every sshd listens.
  for ((h = 1; h <= count; h++)); do
    [ -n "$(opt_of "$h" nosshd)" ] && continue
    for _ in $(seq 1 100); do
      ip netns exec "$(ns "$h")" bash -c "exec 3<>/dev/tcp/$(addr "$h")/22" 2>/dev/null && break
      sleep 0.05
    done
  done
  {
    echo "{"
    echo "  \"dir\": \"$DIR\", \"key\": \"$DIR/id_ed25519\", \"known_hosts\": \"$DIR/known_hosts\", \"ssh_config\": \"$DIR/ssh_config\","
    echo "  \"hosts\": ["
    for ((h = 1; h <= count; h++)); do
      printf '    {"index": %d, "name": "h%d", "address": "%s", "netns": "%s", "root": "%s/h%d", "devices": %s}%s\n' \
        "$h" "$h" "$(addr "$h")" "$(ns "$h")" "$DIR" "$h" "$(c=$(opt_of "$h" devices); echo "${c:-8}")" "$([ "$h" -lt "$count" ] && echo ,)"
    done
    echo "  ]"
    echo "}"
  } > "$DIR/cluster.json"
  echo "$DIR"
}

cmd=${1:-}
shift || true
OPTS=()
case "$cmd" in
  up)
    count=${1:?usage: cluster.sh up N [--opt I:KEY[=V]]...}
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        --opt) OPTS+=("$2"); shift 2 ;;
        *) die "unknown option $1" ;;
      esac
    done
    up "$count"
    ;;
  down) down ;;
  status | leftovers)
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}-h" | sort -V || true); do
      h=${n#"${PREFIX}-h"}
      for p in $(non_sshd_pids "$h"); do
        echo "h$h $p $(tr '\0' ' ' < /proc/"$p"/cmdline 2>/dev/null)"
      done
      [ "$cmd" = status ] && echo "h$h $(addr "$h") $(ip netns pids "$n" | wc -l) processes"
    done
    ;;
  exec)
    h=${1:?usage: cluster.sh exec I CMD...}
    shift
    sshd_pid=$(cat "$DIR/h$h/sshd.pid" 2>/dev/null) || die "host $h has no sshd (its mounts live in sshd's namespace)"
    exec nsenter --target "$sshd_pid" --net --mount -- "$@"
    ;;
  cut) ip link set "${PREFIX}-h${1:?host}-v" down ;;
  restore) ip link set "${PREFIX}-h${1:?host}-v" up ;;
  *) sed -n '2,30p' "$0"; exit 2 ;;
esac
