import { asciiJson, GUARD_BOOTSTRAP, PY_START_TICKS } from '../transport/guard.js';
import type { HostTransport } from '../transport/types.js';

/**
 * Finding and stopping what a run left on a host, by the pid files its guards wrote: never by a
 * process-name pattern, so another user's python on the same server is never touched. A pid counts
 * only while its start time still matches the recorded one (pids get reused).
 */
const LEFTOVERS_SOURCE = String.raw`
import glob, json, os, signal, sys, time
args = json.loads(sys.stdin.readline())

${PY_START_TICKS}
def cmdline(p):
    try:
        with open("/proc/%d/cmdline" % p, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""

def group_members(pgid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgid:
                    out.append(int(d))
            except OSError:
                pass
    return out

found = []
for path in sorted(glob.glob(args["pattern"])):
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        continue
    if args.get("run_id") and rec.get("run_id") != args["run_id"]:
        continue
    pid = rec.get("pid")
    alive = isinstance(pid, int) and rec.get("start_ticks") is not None and start_ticks(pid) == rec.get("start_ticks")
    members = group_members(rec.get("pgid", pid)) if alive else []
    found.append({"run_id": rec.get("run_id"), "label": rec.get("label"), "pid": pid, "alive": alive,
                  "members": [{"pid": m, "cmdline": cmdline(m)} for m in members], "file": path})

if args.get("kill"):
    targets = [r for r in found if r["alive"]]
    for r in targets:
        try:
            os.killpg(r["pid"], signal.SIGTERM)
        except OSError:
            pass
    end = time.monotonic() + float(args.get("grace", 5))
    while time.monotonic() < end and any(group_members(r["pid"]) for r in targets):
        time.sleep(0.05)
    for r in targets:
        if group_members(r["pid"]):
            try:
                os.killpg(r["pid"], signal.SIGKILL)
            except OSError:
                pass
    time.sleep(0.1)
    for r in found:
        gone = not r["alive"] or not group_members(r["pid"])
        r["killed"] = r["alive"] and gone
        if gone:
            try:
                os.unlink(r["file"])
            except OSError:
                pass
print(json.dumps(found))
`;

export interface LeftoverRank {
  runId: string;
  label: string;
  pid: number;
  alive: boolean;
  members: { pid: number; cmdline: string }[];
  killed?: boolean;
}

/** The glob of pid files for runs under a remote-dir template such as "/tmp/npurun/{run_id}". */
export function pidFileGlob(remoteDirTemplate: string, runId?: string): string {
  return `${remoteDirTemplate.replace(/\{run_id\}/g, runId ?? '*')}/pids/*.json`;
}

async function runLeftovers(t: HostTransport, args: Record<string, unknown>): Promise<LeftoverRank[]> {
  const r = await t.exec(GUARD_BOOTSTRAP, asciiJson(LEFTOVERS_SOURCE) + '\n' + asciiJson(args) + '\n');
  if (r.code !== 0) throw new Error(`${t.host.name}: cannot read pid files: ${r.stderr.trim() || `exit ${r.code}`}`);
  const raw = JSON.parse(r.stdout) as { run_id: string; label: string; pid: number; alive: boolean; members: { pid: number; cmdline: string }[]; killed?: boolean }[];
  return raw.map((x) => ({ runId: x.run_id, label: x.label, pid: x.pid, alive: x.alive, members: x.members, ...(x.killed !== undefined ? { killed: x.killed } : {}) }));
}

export function listLeftovers(t: HostTransport, remoteDirTemplate: string, runId?: string): Promise<LeftoverRank[]> {
  return runLeftovers(t, { pattern: pidFileGlob(remoteDirTemplate, runId), run_id: runId ?? null });
}

export function killLeftovers(t: HostTransport, remoteDirTemplate: string, runId: string, graceSeconds: number): Promise<LeftoverRank[]> {
  return runLeftovers(t, { pattern: pidFileGlob(remoteDirTemplate, runId), run_id: runId, kill: true, grace: graceSeconds });
}
