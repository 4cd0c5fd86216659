import { NpurunError } from '../errors.js';
import { isIPv4, parseHccnConf, parseHccnToolIp, parseNpuSmiInfo } from './npu-smi.js';
import type { HostFacts, NetInterface, NumaNode, ShellRunner } from './types.js';
import { DEFAULT_REMOTE_DIR, heldScript, markHeld, parseHeld } from './held.js';

/** Where Ascend driver tools live when a non-interactive SSH shell does not have them on PATH. */
export const TOOL_DIRS = ['/usr/local/Ascend/driver/tools', '/usr/local/sbin', '/usr/local/bin', '/usr/local/dcmi'];

/**
 * Everything preflight needs from a host in one round trip: a POSIX sh script (it runs remotely
 * through `sh -s`), printing sections that `parseProbeOutput` reads. NPURUN_HCCN_CONF overrides the
 * path of /etc/hccn.conf (tests).
 */
export const PROBE_SCRIPT = `
LC_ALL=C; export LC_ALL
find_tool() {
  p=$(command -v "$1" 2>/dev/null) && [ -n "$p" ] && { echo "$p"; return 0; }
  for d in ${TOOL_DIRS.join(' ')}; do [ -x "$d/$1" ] && { echo "$d/$1"; return 0; }; done
  return 1
}
echo "@@npurun:hostname@@"; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
NPUSMI=$(find_tool npu-smi); HCCN=$(find_tool hccn_tool); CONF=\${NPURUN_HCCN_CONF:-/etc/hccn.conf}
SMI=; [ -n "$NPUSMI" ] && SMI=$("$NPUSMI" info 2>&1)
echo "@@npurun:npu-smi-path@@"; echo "$NPUSMI"
echo "@@npurun:npu-smi@@"; printf '%s\\n' "$SMI"
echo "@@npurun:hccn-conf-path@@"; echo "$CONF"
echo "@@npurun:hccn-conf@@"; [ -r "$CONF" ] && awk 1 "$CONF"
echo "@@npurun:hccn-tool-path@@"; echo "$HCCN"
# hccn_tool only for the devices npu-smi lists (chip rows: a bus id in the second cell; Phy-ID when the header has it).
IDS=$(printf '%s\\n' "$SMI" | awk -F'|' '
  /Process id/ { exit }
  /Phy-ID/ { phy = 1 }
  { c = $2; gsub(/^ +| +$/, "", c); b = $3; gsub(/^ +| +$/, "", b) }
  b ~ /^[0-9A-Fa-f]+:[0-9A-Fa-f]+:/ && c ~ /^[0-9]+( +[0-9]+)?$/ { n = split(c, f, / +/); print ((phy && n == 2) ? f[2] : npu); next }
  c ~ /^[0-9]+ +[^ ]/ { npu = c; sub(/ .*/, "", npu) }')
# hccn_tool only for the devices hccn.conf gives no address (one awk, not a grep per device: every
# process the probe starts is paid on every host of every launch).
if [ -n "$HCCN" ] && [ -n "$IDS" ]; then
  ASK=$IDS
  [ -r "$CONF" ] && ASK=$(awk -v ids="$IDS" '
    /^[[:space:]]*address_[0-9]+[[:space:]]*=/ { k = $0; sub(/^[[:space:]]*address_/, "", k); sub(/[[:space:]]*=.*/, "", k); have[k] = 1 }
    END { n = split(ids, a, /[[:space:]]+/); for (i = 1; i <= n; i++) if (a[i] != "" && !(a[i] in have)) print a[i] }' "$CONF")
  for i in $ASK; do
    OUT=$("$HCCN" -i "$i" -ip -g 2>&1); printf '@@npurun:hccn-tool-%s@@\\n%s\\n' "$i" "$OUT"
  done
fi
echo "@@npurun:cpus@@"; cat /sys/devices/system/cpu/online 2>/dev/null || { n=$(nproc 2>/dev/null) && echo "0-$((n - 1))"; }
echo "@@npurun:numa@@"; for f in /sys/devices/system/node/node*/cpulist; do [ -r "$f" ] && echo "$f $(cat "$f")"; done
echo "@@npurun:interfaces@@"; ip -o -4 addr show 2>/dev/null
${heldScript(DEFAULT_REMOTE_DIR)}
echo "@@npurun:end@@"
`;

/** "0-3,8,10-11" -> [0,1,2,3,8,10,11] (the kernel's cpulist format). */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) continue;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

export function parseIpAddr(text: string): NetInterface[] {
  const byName = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    // "2: eth0    inet 10.213.0.11/24 brd ... scope global eth0"
    const m = /^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+)\//.exec(line.trim());
    if (!m) continue;
    const list = byName.get(m[1] as string) ?? [];
    list.push(m[2] as string);
    byName.set(m[1] as string, list);
  }
  return [...byName].map(([name, addresses]) => ({ name, addresses }));
}

function sections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /^@@npurun:([\w-]+)@@$/gm;
  const marks: { name: string; start: number; end: number }[] = [];
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) marks.push({ name: m[1] as string, start: m.index, end: re.lastIndex });
  marks.forEach((mark, i) => {
    const next = marks[i + 1];
    out.set(mark.name, text.slice(mark.end + 1, next ? next.start : text.length).replace(/\n$/, ''));
  });
  return out;
}

export function parseProbeOutput(text: string): HostFacts {
  const s = sections(text);
  const problems: string[] = [];
  const npuSmiPath = (s.get('npu-smi-path') ?? '').trim();
  const hccnToolPath = (s.get('hccn-tool-path') ?? '').trim();
  const confPath = (s.get('hccn-conf-path') ?? '/etc/hccn.conf').trim();
  const facts: HostFacts = {
    hostname: (s.get('hostname') ?? '').trim(),
    devices: [],
    cpus: parseCpuList(s.get('cpus') ?? ''),
    numaNodes: [],
    interfaces: parseIpAddr(s.get('interfaces') ?? ''),
    problems,
    tools: {},
  };
  if (npuSmiPath) facts.tools.npuSmi = npuSmiPath;
  if (hccnToolPath) facts.tools.hccnTool = hccnToolPath;
  for (const line of (s.get('numa') ?? '').split('\n')) {
    const m = /node(\d+)\/cpulist\s+(\S+)/.exec(line);
    if (m) facts.numaNodes.push({ node: Number(m[1]), cpus: parseCpuList(m[2] as string) } satisfies NumaNode);
  }
  if (!npuSmiPath) {
    problems.push(
      `no npu-smi found (looked on PATH and in ${TOOL_DIRS.join(', ')}): this host has no Ascend driver, or it is installed elsewhere`,
    );
    return facts;
  }
  const smi = parseNpuSmiInfo(s.get('npu-smi') ?? '');
  if (smi.devices.length === 0) {
    const first = (s.get('npu-smi') ?? '').split('\n').find((l) => l.trim() !== '') ?? 'no output';
    problems.push(`${npuSmiPath} info listed no NPU (${first.trim().slice(0, 120)})`);
  }
  const conf = parseHccnConf(s.get('hccn-conf') ?? '');
  for (const dev of smi.devices) {
    const fromConf = conf.get(dev.deviceId)?.address;
    const fromTool = parseHccnToolIp(s.get(`hccn-tool-${dev.deviceId}`) ?? '');
    if (fromConf && isIPv4(fromConf)) {
      dev.deviceIp = fromConf;
      dev.ipSource = 'hccn.conf';
    } else if (fromTool && isIPv4(fromTool)) {
      dev.deviceIp = fromTool;
      dev.ipSource = 'hccn_tool';
    } else {
      problems.push(
        `device ${dev.deviceId} has no address: no address_${dev.deviceId} in ${confPath}${hccnToolPath ? ` and \`hccn_tool -i ${dev.deviceId} -ip -g\` gave none` : ' and no hccn_tool found'}`,
      );
    }
    if (dev.health !== 'OK') problems.push(`device ${dev.deviceId} health is ${dev.health}`);
    for (const p of dev.processes)
      problems.push(`device ${dev.deviceId} is held by pid ${p.pid}${p.name ? ` (${p.name})` : ''}`);
  }
  facts.devices = smi.devices;
  markHeld(facts, parseHeld(text));
  return facts;
}

export async function probeHost(run: ShellRunner): Promise<HostFacts> {
  const r = await run(PROBE_SCRIPT);
  if (!r.stdout.includes('@@npurun:end@@')) {
    throw new NpurunError(
      'not-ready',
      `device probe did not complete (exit ${r.code}): ${r.stderr.trim().slice(0, 300) || 'no output'}`,
    );
  }
  return parseProbeOutput(r.stdout);
}

/** Whether a device can take a rank: healthy, free, and (when a rank table is needed) addressed. */
export function deviceUsable(d: HostFacts['devices'][number], needIp: boolean): string | undefined {
  if (d.health !== 'OK') return `health is ${d.health}`;
  if (d.processes.length > 0) {
    // Another npurun run is named (its pid files say which); other holders by pid, as npu-smi lists them.
    const runs = d.processes.filter((p) => p.name?.startsWith('npurun run ')).map((p) => `${p.name} (pid ${p.pid})`);
    const others = d.processes.filter((p) => !p.name?.startsWith('npurun run ')).map((p) => p.pid);
    return `held by ${[...runs, ...(others.length ? [`pid ${others.join(', ')}`] : [])].join(', ')}`;
  }
  if (needIp && !d.deviceIp) return 'has no device IP (hccn.conf / hccn_tool)';
  return undefined;
}
