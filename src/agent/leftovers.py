# What a run left on a host, found by the pid files its agent wrote (never by a process-name pattern,
# so another user's python on the same server is never touched), and stopped on request. A pid counts
# only while its start time matches the recorded one (pids get reused). Only pid files that belong to
# this user, in directories that belong to this user, are trusted: on a shared server another user
# could plant a file naming any pid. Processes that left the rank's group (setsid daemons) are found
# by the rank's tag in their environment. Input: one JSON line of arguments; output: one JSON line.
import glob
import json
import os
import signal
import sys
import time

args = json.loads(sys.stdin.readline())
UID = os.getuid()
ENV_TAG = b"NPURUN_AGENT_TAG="


def start_ticks(p):
    """Start time of a live process; None for a zombie (dead, waiting to be reaped) or no process."""
    try:
        with open("/proc/%d/stat" % p, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] == b"Z" else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(p):
    try:
        with open("/proc/%d/cmdline" % p, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def scan():
    """pid -> (pgid, tag) of this user's processes."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        p = int(d)
        try:
            if os.stat("/proc/%d" % p).st_uid != UID:
                continue
            pgid = os.getpgid(p)
            with open("/proc/%d/environ" % p, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if env == [b""]:  # zombie
            continue
        tag = None
        for item in env:
            if item.startswith(ENV_TAG):
                tag = item[len(ENV_TAG):].decode("utf-8", "replace")
        out[p] = (pgid, tag)
    return out


def trusted(path):
    try:
        st = os.lstat(path)
        parent = os.lstat(os.path.dirname(path))
    except OSError:
        return False
    return st.st_uid == UID and parent.st_uid == UID and not (parent.st_mode & 0o022)


def members(rec, procs):
    pgid = rec.get("pgid", rec.get("pid"))
    tag = rec.get("tag")
    return sorted(p for p, (g, t) in procs.items() if (rec["alive"] and g == pgid) or (tag and t == tag))


found = []
procs = scan()
for path in sorted(glob.glob(args["pattern"].replace("{uid}", str(UID)))):
    if not trusted(path):
        continue
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        continue
    if rec.get("agent"):
        continue
    if args.get("run_id") and rec.get("run_id") != args["run_id"]:
        continue
    pid = rec.get("pid")
    rec["alive"] = isinstance(pid, int) and rec.get("start_ticks") is not None and start_ticks(pid) == rec.get("start_ticks")
    left = members(rec, procs)
    # Alive: the rank itself, or anything that escaped its group carrying its tag.
    found.append({"run_id": rec.get("run_id"), "label": rec.get("label"), "pid": pid, "alive": rec["alive"] or bool(left),
                  "pgid": rec.get("pgid", pid), "tag": rec.get("tag"), "file": path,
                  "members": [{"pid": m, "cmdline": cmdline(m)} for m in left]})

if args.get("kill"):
    for sig, pause in ((signal.SIGTERM, float(args.get("grace", 5))), (signal.SIGKILL, 0.2)):
        for r in found:
            for m in members(r, scan()):
                try:
                    os.kill(m, sig)
                except OSError:
                    pass
        end = time.monotonic() + pause
        while time.monotonic() < end and any(members(r, scan()) for r in found):
            time.sleep(0.05)
    procs = scan()
    for r in found:
        gone = not members(r, procs)
        r["killed"] = bool(r["members"]) and gone
        if gone:
            try:
                os.unlink(r["file"])
            except OSError:
                pass
for r in found:
    for k in ("file", "pgid", "tag"):
        r.pop(k, None)
print(json.dumps(found))
