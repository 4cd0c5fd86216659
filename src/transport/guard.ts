/**
 * The per-rank guard: a small Python program that npurun starts on the host (over an SSH channel or a
 * local pipe) in place of the rank itself. Python because every Ascend training host has python3 and
 * the guard needs fork/setpgid/killpg/sched_setaffinity without a compiler.
 *
 * Protocol on the guard's stdin, one line each:
 *   1. the guard's own source, as a JSON string (the command line only holds a 60-byte bootstrap, so
 *      neither the program, nor the environment, nor the arguments ever show in `ps` on the host);
 *   2. the rank's spec as JSON (argv, env, cwd, cpus, pid-file path, timeouts);
 *   3. then any number of control lines: "H" heartbeat, "TERM <grace seconds>", "KILL".
 * The rank's stdout and stderr are the guard's own (the channel's pipes), so output is never copied
 * or re-framed. The guard exits the way the rank did: same exit code, or the same signal re-raised,
 * so SSH's exit-status / exit-signal (and execa's) report the rank's real fate.
 *
 * Why the guard exists: the rank runs in its own process group, and the group is killed when
 *  - the launcher asks (TERM, then KILL after the grace period),
 *  - stdin reaches EOF (the launcher died or the SSH connection closed),
 *  - no heartbeat arrived for `heartbeat_timeout` seconds (the network was cut: sshd would not notice
 *    for hours with stock TCP keepalive settings),
 *  - the rank itself exited (its children, e.g. dataloader workers, must not outlive it).
 */
/** Python: a process's start time in clock ticks since boot, which tells a reused pid apart. */
export const PY_START_TICKS = String.raw`
def start_ticks(p):
    try:
        with open("/proc/%d/stat" % p) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
`;

export const GUARD_SOURCE = String.raw`
import json, os, queue, signal, sys, threading, time

spec = json.loads(sys.stdin.readline())
label = spec["label"]

def say(msg):
    try:
        os.write(2, ("npurun-guard[%s]: %s\n" % (label, msg)).encode("utf-8", "replace"))
    except OSError:
        pass

env = dict(os.environ)
env.update(spec["env"])
argv = spec["argv"]
cwd = spec["cwd"]
try:
    os.makedirs(cwd, exist_ok=True)
except OSError as e:
    say("cannot create working directory %s: %s" % (cwd, e))
    sys.exit(126)

rfd, wfd = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        os.close(rfd)
        os.setpgid(0, 0)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGQUIT):
            signal.signal(s, signal.SIG_DFL)
        if spec.get("cpus"):
            os.sched_setaffinity(0, spec["cpus"])
        os.chdir(cwd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.set_inheritable(wfd, False)
        os.execvpe(argv[0], argv, env)
    except BaseException as e:
        try:
            os.write(wfd, ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace"))
        finally:
            os._exit(127)
os.close(wfd)
try:
    os.setpgid(pid, pid)
except OSError:
    pass
failure = b""
while True:
    chunk = os.read(rfd, 4096)
    if not chunk:
        break
    failure += chunk
os.close(rfd)
if failure:
    os.waitpid(pid, 0)
    say("cannot start %s: %s" % (argv[0], failure.decode("utf-8", "replace")))
    sys.exit(127)

${PY_START_TICKS}
pidfile = spec.get("pidfile")
if pidfile:
    try:
        os.makedirs(os.path.dirname(pidfile), mode=0o700, exist_ok=True)
        tmp = pidfile + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"run_id": spec.get("run_id"), "label": label, "pid": pid, "pgid": pid,
                       "start_ticks": start_ticks(pid), "guard_pid": os.getpid(), "argv0": argv[0]}, f)
        os.replace(tmp, pidfile)
    except OSError as e:
        say("cannot write pid file %s: %s" % (pidfile, e))

# No polling: one thread waits for the rank, one reads the launcher's lines, and the main thread
# sleeps on the queue until one of them speaks or a deadline (heartbeat, SIGKILL) comes.
events = queue.Queue()

def reader():
    while True:
        line = sys.stdin.readline()
        if not line:
            events.put(("EOF", 0.0))
            return
        parts = line.split()
        if parts and parts[0] == "TERM":
            events.put(("TERM", float(parts[1]) if len(parts) > 1 else 10.0))
        elif parts and parts[0] == "KILL":
            events.put(("KILL", 0.0))
        else:
            events.put(("H", 0.0))

def waiter():
    try:
        st = os.waitpid(pid, 0)[1]
    except ChildProcessError:
        st = 0
    events.put(("EXIT", st))

threading.Thread(target=reader, daemon=True).start()
threading.Thread(target=waiter, daemon=True).start()

def group_alive():
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

def signal_group(sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

# The guard itself must not die of the signals that stop the rank (a Ctrl-C on a local terminal
# reaches the whole foreground group): it stops the rank and reports it instead. The handler only
# records the signal (taking the queue's lock in a handler could deadlock); the loop acts on it.
signalled = []
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, lambda signum, frame: signalled.append(signum))
signal.signal(signal.SIGPIPE, signal.SIG_IGN)

hb_timeout = float(spec.get("heartbeat_timeout", 0))
orphan_grace = float(spec.get("orphan_grace", 2.0))
last_seen = time.monotonic()
kill_at = None
stopping_for = None
status = None

def stop(grace, why=None):
    global kill_at, stopping_for
    if why and stopping_for is None:
        say(why)
        stopping_for = why
    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    kill_at = deadline if kill_at is None else min(kill_at, deadline)

while status is None:
    timeout = 0.5
    if kill_at is not None:
        timeout = max(0.0, min(timeout, kill_at - time.monotonic()))
    try:
        kind, value = events.get(timeout=timeout)
    except queue.Empty:
        kind, value = None, 0.0
    now = time.monotonic()
    if kind == "EXIT":
        status = value
        break
    if kind in ("H", "TERM", "KILL"):
        last_seen = now
    if kind == "KILL":
        signal_group(signal.SIGKILL)
    elif kind == "TERM":
        stop(value)
    elif kind == "EOF":
        stop(orphan_grace, "launcher gone (input closed): stopping the rank")
    if signalled:
        del signalled[:]
        stop(orphan_grace)
    if hb_timeout > 0 and now - last_seen > hb_timeout and stopping_for is None:
        stop(orphan_grace, "no heartbeat from the launcher for %.1fs: stopping the rank" % (now - last_seen))
    if kill_at is not None and now >= kill_at:
        signal_group(signal.SIGKILL)
        kill_at = now + 3600

# The rank is gone; whatever it left in its group goes too, quickly.
if group_alive():
    signal_group(signal.SIGTERM)
    end = time.monotonic() + 1.0
    while group_alive() and time.monotonic() < end:
        time.sleep(0.02)
    signal_group(signal.SIGKILL)
if pidfile:
    try:
        os.unlink(pidfile)
    except OSError:
        pass
sys.stdout.flush()
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    time.sleep(1)
    sys.exit(128 + sig)
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
`;

/** The command line the host runs: reads the guard's source from the first stdin line and runs it. */
export const GUARD_BOOTSTRAP = `exec python3 -c 'import sys,json;exec(json.loads(sys.stdin.readline()))'`;

/** What the guard needs to start one rank. */
export interface GuardSpec {
  runId: string;
  label: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  cpus: number[];
  /** Where the guard records the rank's pid and start time (for `npurun ps` / `npurun kill`). */
  pidFile: string;
  /** Seconds without a heartbeat before the guard stops the rank (0 = never). */
  heartbeatTimeout: number;
  /** Seconds between SIGTERM and SIGKILL when the launcher is gone. */
  orphanGrace: number;
}

/** The first bytes written to the guard's stdin: its source and the rank's spec. */
export function guardPreamble(spec: GuardSpec): string {
  const payload = {
    run_id: spec.runId,
    label: spec.label,
    argv: spec.argv,
    env: spec.env,
    cwd: spec.cwd,
    cpus: spec.cpus,
    pidfile: spec.pidFile,
    heartbeat_timeout: spec.heartbeatTimeout,
    orphan_grace: spec.orphanGrace,
  };
  // One line each (JSON escapes newlines), and pure ASCII so the host's locale cannot alter a byte.
  return asciiJson(GUARD_SOURCE) + '\n' + asciiJson(payload) + '\n';
}

export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}
