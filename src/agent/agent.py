# npurun host agent: one per host per launch (and per host-side command), started over one SSH channel
# or a local pipe by src/transport/agent-client.ts. Stdlib only; runs on Python 3.7+ (EulerOS,
# openEuler, Ubuntu 18.04 training hosts). It is sent on stdin and run by a one-line bootstrap, so the
# host's command line shows neither the program, nor the environment, nor the arguments of any rank.
#
# Wire format, both ways: frames of a 9-byte header (type: 1 byte, rank index: u32 BE, length: u32 BE)
# and a payload.
#   launcher -> agent   J: a JSON request {"op": ...}   H: heartbeat   A: ack (u32 BE bytes consumed)
#   agent -> launcher   J: a JSON event {"ev": ...}     O / E: a chunk of a rank's stdout / stderr
# Output is flow-controlled per rank: at most `window` bytes of a rank are unacknowledged, so a rank
# that floods is paused at its own pipe while a quiet rank on the same host goes on.
#
# The agent is a child subreaper: whatever a rank leaves behind (a `setsid` daemon, `nohup cmd &`)
# is reparented to it, and everything carrying the rank's tag (NPURUN_AGENT_TAG in its environment)
# is stopped when the rank ends, when the launcher asks, when its input closes or heartbeats stop.
# A watchdog process stops everything tagged if the agent itself is killed.
import json
import os
import selectors
import signal
import stat
import struct
import sys
import time

HEADER = struct.Struct(">cII")
ACK = struct.Struct(">I")
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
ENV_TAG = "NPURUN_AGENT_TAG"

try:
    import ctypes
    _libc = ctypes.CDLL(None, use_errno=True)

    def prctl(option, value):
        return _libc.prctl(option, value, 0, 0, 0) == 0
except Exception:  # no ctypes (minimal builds): no subreaper, no parent-death signal
    def prctl(option, value):
        return False


def start_ticks(pid):
    """A process's start time in clock ticks since boot: tells a reused pid apart."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def descendants(root):
    """Every descendant of `root` from /proc/<pid>/task/<tid>/children, or None where the kernel has no
    such file. A child subreaper's escaped daemons are its children, so this finds them too, touching
    only our own subtree instead of every process of the machine."""
    out = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if pid == root:
                    return None
                continue
            except (OSError, ValueError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def scan_tags(pids=None):
    """pid -> NPURUN_AGENT_TAG value, for the live processes of this user (of `pids`, else every one)
    that carry one."""
    me = os.getpid()
    key = ENV_TAG.encode() + b"="
    out = {}
    for d in (os.listdir("/proc") if pids is None else [str(p) for p in pids]):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
        except OSError:
            continue
        at = env.find(key)
        if at < 0 or (at > 0 and env[at - 1:at] != b"\0"):
            continue  # no tag (a zombie or kernel thread has an empty environment)
        end = env.find(b"\0", at)
        out[int(d)] = env[at + len(key):end if end >= 0 else len(env)].decode("utf-8", "replace")
    return out


def tagged_pids(prefix, tags=None):
    """Pids whose tag is `prefix`, or (for a prefix ending in "/": all of an agent's ranks) starts with it."""
    tags = scan_tags() if tags is None else tags
    return [p for p, t in tags.items() if t == prefix or (prefix.endswith("/") and t.startswith(prefix))]


def signal_pids(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def private_dir(path):
    """Creates `path` and missing parents 0700. The run's directory and its parent must belong to this
    user (or root) and be writable by nobody else: on a shared server another user could otherwise
    plant a directory in /tmp and swap the rank table or the pid files that `npurun kill` trusts."""
    uid = os.getuid()
    parts = [p for p in os.path.abspath(path).split("/") if p]
    cur = ""
    for i, part in enumerate(parts):
        cur += "/" + part
        created = False
        try:
            os.mkdir(cur, 0o700)
            created = True
        except FileExistsError:
            pass
        st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise ValueError("%s is not a directory (or is a symbolic link): refusing to keep run files there" % cur)
        mine = i >= len(parts) - 2
        if st.st_uid not in (uid, 0):
            if mine:
                raise ValueError("%s belongs to uid %d, not to this user (uid %d): refusing to keep run files there"
                                 % (cur, st.st_uid, uid))
            if st.st_mode & 0o022 and not st.st_mode & 0o1000:
                raise ValueError("%s is writable by other users: refusing to keep run files below it" % cur)
        elif st.st_uid == uid and (created or mine) and st.st_mode & 0o077:
            os.chmod(cur, 0o700)


_programs = {}


def resolve_program(name, path):
    """The file `name` runs from PATH, looked up once per start for all ranks (execvpe in each child
    tries every PATH entry: a long PATH with pyenv/conda entries first costs each rank many failed
    execs). None when it must be left to execvpe: a name with a slash, or a PATH with a relative
    entry (relative to the rank's own working directory)."""
    if "/" in name:
        return None
    dirs = (path if path is not None else os.defpath).split(os.pathsep)
    if any(not d.startswith("/") for d in dirs):
        return None
    key = (name, path)
    if key not in _programs:
        _programs[key] = None
        for d in dirs:
            candidate = os.path.join(d, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                _programs[key] = candidate
                break
    return _programs[key]


class Rank(object):
    def __init__(self, index, spec):
        self.index = index
        self.label = spec["label"]
        self.spec = spec
        self.pid = None
        self.status = None          # wait status once the main process ended
        self.fds = {}               # fd -> b"O" | b"E"
        self.unacked = 0
        self.reported = False
        self.kill_at = None         # SIGKILL deadline while stopping
        self.close_at = None        # after the end: close pipes still held open by an escaped process
        self.stopped_by = None      # why the agent stopped it (launcher, heartbeat, input closed...)
        self.tag = None


class Job(object):
    """A host-side command (probe, ps, kill...) started for a request."""
    def __init__(self, req_id, pid):
        self.id = req_id
        self.pid = pid
        self.out = bytearray()
        self.err = bytearray()
        self.fds = {}
        self.status = None


class Agent(object):
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.out_open = True
        self.in_open = True
        self.ranks = []
        self.by_pid = {}
        self.jobs = {}
        self.window = 256 * 1024
        self.hb_timeout = 0.0
        self.orphan_grace = 2.0
        self.last_heard = time.monotonic()
        self.stopping = None
        self.run = None
        self.tag = None
        self.written = []           # files this agent wrote (removed at the end)
        self.watchdog_w = None
        self.signalled = []
        self.abandoned = False      # no heartbeat: the launcher is presumed gone
        self.tag_cache = None       # (when, scan_tags()) shared by ranks ending together
        self.done = False
        self.subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)
        os.set_blocking(0, False)
        os.set_blocking(1, False)
        self.sel.register(0, selectors.EVENT_READ, "in")
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        signal.signal(signal.SIGCHLD, lambda s, f: None)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, lambda s, f: self.signalled.append(s))

    # ---- output to the launcher -------------------------------------------------------------------
    def frame(self, kind, index, payload):
        if not self.out_open:
            return
        self.outbuf += HEADER.pack(kind, index, len(payload))
        self.outbuf += payload
        self.flush()

    def event(self, obj):
        self.frame(b"J", 0, json.dumps(obj, ensure_ascii=True).encode())

    def flush(self):
        while self.outbuf and self.out_open:
            try:
                n = os.write(1, self.outbuf[:1 << 20])
            except BlockingIOError:
                break
            except OSError:
                # The launcher is gone: nothing more can be said; stop waiting for the pipe, stop the
                # ranks, and read their output only to discard it so none blocks on a full pipe.
                self.out_open = False
                self.outbuf = bytearray()
                self.abandoned = True
                self.stop_all(self.orphan_grace, "output closed: the launcher is gone")
                for rank in self.ranks:
                    self.update_rank_interest(rank)
                break
            del self.outbuf[:n]
        want = selectors.EVENT_WRITE if self.outbuf else 0
        self.set_interest(1, want, "out")

    def set_interest(self, fd, events, data):
        try:
            key = self.sel.get_key(fd)
        except (KeyError, ValueError):
            key = None
        if events == 0:
            if key is not None:
                self.sel.unregister(fd)
        elif key is None:
            self.sel.register(fd, events, data)
        elif key.events != events:
            self.sel.modify(fd, events, data)

    # ---- requests -------------------------------------------------------------------------------------
    def on_input(self):
        while True:
            try:
                chunk = os.read(0, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                # The launcher is gone (or done): nobody will acknowledge output any more, so what the
                # ranks still write is read and dropped rather than left to block them.
                self.in_open = False
                self.set_interest(0, 0, "in")
                self.stop_all(self.orphan_grace, "input closed: the launcher is gone")
                for rank in self.ranks:
                    self.update_rank_interest(rank)
                break
            self.inbuf += chunk
            self.last_heard = time.monotonic()
        while len(self.inbuf) >= HEADER.size:
            kind, index, size = HEADER.unpack_from(self.inbuf, 0)
            if len(self.inbuf) < HEADER.size + size:
                break
            payload = bytes(self.inbuf[HEADER.size:HEADER.size + size])
            del self.inbuf[:HEADER.size + size]
            if kind == b"A":
                self.on_ack(index, ACK.unpack(payload)[0])
            elif kind == b"J":
                req = json.loads(payload.decode())
                try:
                    self.request(req)
                except Exception as e:  # a request's failure is its reply, never the agent's end
                    self.event({"ev": "reply", "id": req.get("id"), "ok": False, "error": "%s: %s" % (type(e).__name__, e)})

    def reply(self, req, **fields):
        fields.update({"ev": "reply", "id": req.get("id"), "ok": True})
        self.event(fields)

    def request(self, req):
        op = req["op"]
        if op == "sh":
            self.start_job(req)
        elif op == "put":
            import base64  # here, not at start: every import is paid by every host's launch
            import hashlib

            data = base64.b64decode(req["data"])
            path = req["path"]
            private_dir(os.path.dirname(path))
            tmp = path + ".npurun-tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, req.get("mode", 0o644))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            self.written.append(path)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            self.reply(req, sha256=digest)
        elif op == "list":
            self.reply(req, entries=self.list_dir(req["dir"]))
        elif op == "remove":
            try:
                os.unlink(req["path"])
            except FileNotFoundError:
                pass
            self.reply(req)
        elif op == "start":
            self.start_ranks(req)
        elif op == "stop":
            self.stop_all(float(req.get("grace", 10)), req.get("reason") or "the launcher asked")
            self.reply(req)
        elif op == "kill":
            self.stop_all(0.0, req.get("reason") or "the launcher asked")
            self.reply(req)
        elif op == "dump":
            self.reply(req, ranks=self.dump(bool(req.get("abort"))))
        elif op == "bye":
            self.cleanup()
            self.reply(req)
            self.done = True
        else:
            raise ValueError("unknown op %r" % op)

    def dump(self, abort):
        """What each running rank is doing (kernel wait channel and stack, where readable); with `abort`,
        SIGABRT to each rank's main process so that a Python rank with faulthandler prints its stacks."""
        out = []
        for rank in self.ranks:
            if rank.pid is None or rank.status is not None:
                continue
            info = {"rank": rank.index}
            for key, path in (("wchan", "/proc/%d/wchan"), ("kstack", "/proc/%d/stack")):
                try:
                    with open(path % rank.pid) as f:
                        info[key] = f.read()[:4000]
                except OSError:
                    pass
            if abort:
                rank.stopped_by = rank.stopped_by or "hang: stacks collected (SIGABRT)"
                try:
                    os.kill(rank.pid, signal.SIGABRT)
                except OSError:
                    pass
            out.append(info)
        return out

    def list_dir(self, path):
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return None
        out = []
        for name in names:
            try:
                st = os.stat(os.path.join(path, name))
            except OSError:
                continue
            if (st.st_mode & 0o170000) == 0o100000:
                out.append({"name": name, "size": st.st_size, "mtime_ms": st.st_mtime * 1000.0, "ino": st.st_ino})
        return out

    def on_ack(self, index, count):
        if 0 <= index < len(self.ranks):
            rank = self.ranks[index]
            rank.unacked = max(0, rank.unacked - count)
            self.update_rank_interest(rank)

    # ---- processes --------------------------------------------------------------------------------------
    def spawn(self, argv, env, cwd, cpus, pgid_own, stdin_data):
        """fork + exec with stdout/stderr pipes; returns (pid, {fd: kind}) or raises with the child's error."""
        return self.exec_result(self.fork_exec(argv, env, cwd, cpus, pgid_own, stdin_data))

    def fork_exec(self, argv, env, cwd, cpus, pgid_own, stdin_data):
        """Forks a child that execs argv; returns without waiting for the exec (see exec_result), so that
        the children of one start exec side by side instead of one after the other."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        exec_r, exec_w = os.pipe()
        in_r = in_w = None
        if stdin_data is not None:
            in_r, in_w = os.pipe()
        program = resolve_program(argv[0], env.get("PATH"))
        pid = os.fork()
        if pid == 0:
            try:
                if pgid_own:
                    os.setpgid(0, 0)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGQUIT, signal.SIGCHLD):
                    signal.signal(s, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if cpus:
                    os.sched_setaffinity(0, cpus)
                if cwd:
                    os.chdir(cwd)
                if in_r is not None:
                    os.dup2(in_r, 0)
                else:
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (0, 1, 2):
                    os.set_blocking(fd, True)
                if program:
                    try:
                        os.execve(program, argv, env)
                    except OSError:
                        pass  # as execvpe would: go on along PATH
                os.execvpe(argv[0], argv, env)
            except BaseException as e:
                try:
                    os.write(exec_w, ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace"))
                finally:
                    os._exit(127)
        os.close(out_w)
        os.close(err_w)
        os.close(exec_w)
        if pgid_own:
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass
        if in_r is not None:
            os.close(in_r)
        return pid, out_r, err_r, exec_r, in_w, stdin_data

    def exec_result(self, forked):
        """Waits until a forked child has exec'd (or failed to): (pid, {fd: kind}), or raises its error."""
        pid, out_r, err_r, exec_r, in_w, stdin_data = forked
        failure = b""
        while True:
            try:
                chunk = os.read(exec_r, 4096)
            except InterruptedError:
                continue
            if not chunk:
                break
            failure += chunk
        os.close(exec_r)
        if in_w is not None:
            # Small inputs (scripts) fit in the pipe; larger ones are written blocking before we go on.
            os.set_blocking(in_w, True)
            try:
                os.write(in_w, stdin_data)
            except OSError:
                pass
            os.close(in_w)
        if failure:
            os.close(out_r)
            os.close(err_r)
            raise OSError(failure.decode("utf-8", "replace"))
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        return pid, {out_r: b"O", err_r: b"E"}

    def start_job(self, req):
        env = dict(os.environ)
        env.update(req.get("env") or {})
        env["NPURUN_PYTHON"] = sys.executable
        argv = ["/bin/sh", "-c", req["command"]]
        pid, fds = self.spawn(argv, env, None, None, True, (req.get("input") or "").encode("utf-8"))
        job = Job(req.get("id"), pid)
        job.fds = fds
        self.jobs[pid] = job
        self.by_pid[pid] = job
        for fd, kind in fds.items():
            self.sel.register(fd, selectors.EVENT_READ, ("job", job, kind))

    def start_ranks(self, req):
        run = req["run"]
        self.run = run
        self.window = int(run.get("window", self.window))
        self.hb_timeout = float(run.get("heartbeat_timeout", 0))
        self.orphan_grace = float(run.get("orphan_grace", 2.0))
        self.tag = "%s@%s#%d.%s" % (run["run_id"], run.get("host", ""), os.getpid(), start_ticks(os.getpid()))
        run_dir = run.get("run_dir")
        if run_dir:
            private_dir(os.path.join(run_dir, "pids"))
        self.start_watchdog()
        started = []
        forked = []
        _programs.clear()  # looked up afresh at each start: the files may have changed
        # Every rank forked first, then each exec waited for: the children exec side by side.
        for spec in req["ranks"]:
            rank = Rank(len(self.ranks), spec)
            self.ranks.append(rank)
            rank.tag = "%s/%d" % (self.tag, rank.index)
            env = dict(os.environ)
            env.update(spec["env"])
            env[ENV_TAG] = rank.tag
            cwd = spec["cwd"]
            try:
                if cwd:
                    os.makedirs(cwd, exist_ok=True)
                forked.append((rank, self.fork_exec(spec["argv"], env, cwd, spec.get("cpus"), True, None)))
            except OSError as e:
                forked.append((rank, e))
        for rank, child in forked:
            try:
                if isinstance(child, OSError):
                    raise child
                pid, fds = self.exec_result(child)
            except OSError as e:
                rank.reported = True
                started.append({"rank": rank.index, "error": "cannot start %s: %s" % (rank.spec["argv"][0], e)})
                continue
            rank.pid = pid
            rank.fds = fds
            self.by_pid[pid] = rank
            self.update_rank_interest(rank)
            ticks = start_ticks(pid)
            started.append({"rank": rank.index, "pid": pid, "start_ticks": ticks})
            if run_dir:
                self.write_pidfile(run_dir, rank, pid, ticks)
        if run_dir:
            self.write_json(os.path.join(run_dir, "pids", "agent.json"), {
                "run_id": run["run_id"], "label": "agent", "pid": os.getpid(), "pgid": os.getpgid(0),
                "start_ticks": start_ticks(os.getpid()), "tag": self.tag, "agent": True})
        self.reply(req, started=started, tag=self.tag, subreaper=self.subreaper)
        for rank in self.ranks:
            if rank.pid is None:
                self.event({"ev": "exit", "rank": rank.index, "code": 127, "signal": None, "failed_to_start": True})

    def write_json(self, path, obj):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
        self.written.append(path)

    def write_pidfile(self, run_dir, rank, pid, ticks):
        self.write_json(os.path.join(run_dir, "pids", "%s.json" % rank.label), {
            "run_id": self.run["run_id"], "label": rank.label, "pid": pid, "pgid": pid, "start_ticks": ticks,
            "guard_pid": os.getpid(), "tag": rank.tag, "argv0": rank.spec["argv"][0],
            "device": rank.spec.get("device")})

    def start_watchdog(self):
        """A process that outlives a killed agent and stops everything tagged by it."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, r)
                os.closerange(r + 1, 4096)
                signal.set_wakeup_fd(-1)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(s, signal.SIG_IGN)
                os.set_blocking(r, True)
                while True:
                    try:
                        got = os.read(r, 64)
                    except InterruptedError:
                        continue
                    except OSError:
                        break
                    if not got:
                        break  # the agent is gone without saying it was done: stop everything it ran
                    if b"done" in got:
                        os._exit(0)  # the agent ended cleanly and has already stopped everything
                for sig, pause in ((signal.SIGTERM, self.orphan_grace), (signal.SIGKILL, 0.0)):
                    signal_pids(tagged_pids(self.tag + "/"), sig)
                    end = time.monotonic() + pause
                    while time.monotonic() < end and tagged_pids(self.tag + "/"):
                        time.sleep(0.05)
                self.remove_own_pidfiles()
            finally:
                os._exit(0)
        os.close(r)
        self.watchdog_w = w
        self.watchdog_pid = pid

    def remove_own_pidfiles(self):
        run_dir = (self.run or {}).get("run_dir")
        if not run_dir:
            return
        pids = os.path.join(run_dir, "pids")
        try:
            names = os.listdir(pids)
        except OSError:
            return
        for name in names:
            path = os.path.join(pids, name)
            try:
                with open(path) as f:
                    tag = json.load(f).get("tag") or ""
                if tag == self.tag or tag.startswith(self.tag + "/"):
                    os.unlink(path)
            except (OSError, ValueError):
                pass
        for d in (pids, run_dir):
            try:
                os.rmdir(d)
            except OSError:
                pass

    def tagged(self, tag):
        """Processes carrying a rank's tag; one /proc scan serves every rank that ends at about the same
        time (on a crowded host a scan reads hundreds of environments)."""
        now = time.monotonic()
        if self.tag_cache is None or now - self.tag_cache[0] > 0.1:
            # As a subreaper, everything our ranks left is below us: scan only that subtree.
            mine = descendants(os.getpid()) if self.subreaper else None
            self.tag_cache = (now, scan_tags(mine))
        return tagged_pids(tag, self.tag_cache[1])

    def forwarding(self):
        """Whether rank output still goes to a launcher that acknowledges it."""
        return self.out_open and self.in_open

    def update_rank_interest(self, rank):
        room = rank.unacked < self.window or not self.forwarding()
        for fd, kind in list(rank.fds.items()):
            self.set_interest(fd, selectors.EVENT_READ if room else 0, ("rank", rank, kind))

    def on_rank_output(self, rank, fd, kind):
        room = self.window - rank.unacked if self.forwarding() else 1 << 16
        if room <= 0:
            self.update_rank_interest(rank)
            return
        try:
            data = os.read(fd, min(room, 1 << 16))
        except BlockingIOError:
            if rank.close_at is not None and time.monotonic() >= rank.close_at:
                self.close_rank_fd(rank, fd)
            return
        except OSError:
            data = b""
        if not data:
            self.close_rank_fd(rank, fd)
            return
        if not self.forwarding():
            return
        rank.unacked += len(data)
        self.frame(kind, rank.index, data)
        if rank.unacked >= self.window:
            self.update_rank_interest(rank)

    def close_rank_fd(self, rank, fd):
        self.set_interest(fd, 0, None)
        try:
            os.close(fd)
        except OSError:
            pass
        rank.fds.pop(fd, None)
        self.maybe_report(rank)

    def maybe_report(self, rank):
        if rank.reported or rank.status is None or rank.fds:
            return
        rank.reported = True
        st = rank.status
        ev = {"ev": "exit", "rank": rank.index, "code": None, "signal": None}
        if os.WIFSIGNALED(st):
            ev["signal"] = signal.Signals(os.WTERMSIG(st)).name
        else:
            ev["code"] = os.WEXITSTATUS(st)
        if rank.stopped_by:
            ev["stopped_by"] = rank.stopped_by
        self.event(ev)
        if self.run and self.run.get("run_dir"):
            try:
                os.unlink(os.path.join(self.run["run_dir"], "pids", "%s.json" % rank.label))
            except OSError:
                pass

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            owner = self.by_pid.pop(pid, None)
            if isinstance(owner, Rank):
                owner.status = status
                self.after_rank_end(owner)
            elif isinstance(owner, Job):
                owner.status = status
                self.maybe_finish_job(owner)

    def after_rank_end(self, rank):
        """The rank's main process ended: whatever it left (group, escaped daemons) goes too, quickly."""
        signal_group(rank.pid, signal.SIGTERM)
        signal_pids(self.tagged(rank.tag), signal.SIGTERM)
        now = time.monotonic()
        rank.kill_at = now + 1.0 if rank.kill_at is None else min(rank.kill_at, now + 1.0)
        rank.close_at = now + 2.0
        self.maybe_report(rank)

    def stop_all(self, grace, why):
        if self.stopping is None:
            self.stopping = why
        now = time.monotonic()
        for rank in self.ranks:
            if rank.pid is None or (rank.status is not None and rank.kill_at is None):
                continue
            if rank.status is None and rank.stopped_by is None:
                rank.stopped_by = why
            signal_group(rank.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            signal_pids(self.tagged(rank.tag), signal.SIGTERM if grace > 0 else signal.SIGKILL)
            deadline = now + grace
            rank.kill_at = deadline if rank.kill_at is None else min(rank.kill_at, deadline)

    def timers(self):
        now = time.monotonic()
        if self.signalled:
            del self.signalled[:]
            self.abandoned = True
            self.stop_all(self.orphan_grace, "the agent received a signal")
        if self.hb_timeout > 0 and self.in_open and now - self.last_heard > self.hb_timeout:
            # Heartbeats may be waiting unread while the agent was busy (stopping what a rank left on a
            # crowded host): read them before calling the launcher gone.
            self.on_input()
            now = time.monotonic()
        if self.hb_timeout > 0 and self.in_open and now - self.last_heard > self.hb_timeout:
            self.last_heard = now
            self.abandoned = True
            self.stop_all(self.orphan_grace, "no heartbeat from the launcher for %.1f s" % self.hb_timeout)
        for rank in self.ranks:
            if rank.kill_at is not None and now >= rank.kill_at:
                rank.kill_at = None
                if rank.pid is not None:
                    signal_group(rank.pid, signal.SIGKILL)
                    signal_pids(self.tagged(rank.tag), signal.SIGKILL)
            if rank.close_at is not None and now >= rank.close_at and rank.fds:
                # Drain what is there (within the window), then close: an escaped holder cannot block the end.
                for fd, kind in list(rank.fds.items()):
                    if self.window - rank.unacked > 0 or not self.forwarding():
                        self.on_rank_output(rank, fd, kind)
                        if fd in rank.fds:
                            self.close_rank_fd(rank, fd)
        deadlines = [r.kill_at for r in self.ranks if r.kill_at is not None]
        # A close deadline already past waits for acknowledgements, not for time: no busy loop.
        deadlines += [r.close_at for r in self.ranks if r.close_at is not None and r.fds and r.close_at > now]
        wait = 0.5
        if deadlines:
            wait = max(0.0, min(wait, min(deadlines) - now))
        return wait

    def on_job_output(self, job, fd, kind):
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            (job.out if kind == b"O" else job.err).extend(data)
            return
        self.sel.unregister(fd)
        os.close(fd)
        job.fds.pop(fd, None)
        self.maybe_finish_job(job)

    def maybe_finish_job(self, job):
        if job.status is None or job.fds:
            return
        self.jobs.pop(job.pid, None)
        st = job.status
        code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else None
        sig = signal.Signals(os.WTERMSIG(st)).name if os.WIFSIGNALED(st) else None
        self.event({"ev": "reply", "id": job.id, "ok": True, "stdout": job.out.decode("utf-8", "replace"),
                    "stderr": job.err.decode("utf-8", "replace"), "code": code, "signal": sig})

    def all_ranks_ended(self):
        return all(r.reported for r in self.ranks)

    def cleanup(self):
        """Stops whatever is left of the run on this host and removes the files the agent wrote."""
        if self.tag:
            for sig, pause in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 0.0)):
                self.tag_cache = None
                left = self.tagged(self.tag + "/")
                signal_pids(left, sig)
                end = time.monotonic() + pause
                while left and time.monotonic() < end:
                    time.sleep(0.02)
                    self.reap()
                    self.tag_cache = None
                    left = self.tagged(self.tag + "/")
            self.reap()
        for path in reversed(self.written):
            try:
                os.unlink(path)
            except OSError:
                pass
        if self.run and self.run.get("run_dir"):
            for d in (os.path.join(self.run["run_dir"], "pids"), self.run["run_dir"]):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        if self.watchdog_w is not None:
            # Nothing tagged is left (stopped above): the watchdog may go without scanning, and the
            # agent outlives it, so that no process of the run is left when the launcher sees it end.
            try:
                os.write(self.watchdog_w, b"done")
            except OSError:
                pass
            os.close(self.watchdog_w)
            self.watchdog_w = None
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                try:
                    if os.waitpid(self.watchdog_pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break  # already reaped with the ranks
                time.sleep(0.002)

    def loop(self):
        self.event({"ev": "hello", "pid": os.getpid(), "python": sys.executable,
                    "version": "%d.%d.%d" % sys.version_info[:3], "uid": os.getuid(),
                    "user": os.environ.get("USER") or os.environ.get("LOGNAME") or "",
                    "home": os.environ.get("HOME", ""), "subreaper": self.subreaper})
        while not self.done:
            if (not self.in_open or self.abandoned) and self.all_ranks_ended() and not self.jobs:
                self.cleanup()
                break
            wait = self.timers()
            for key, events in self.sel.select(wait):
                data = key.data
                if data == "in":
                    self.on_input()
                elif data == "out":
                    self.flush()
                elif data == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except OSError:
                        pass
                    self.reap()
                elif data[0] == "rank":
                    self.on_rank_output(data[1], key.fd, data[2])
                elif data[0] == "job":
                    self.on_job_output(data[1], key.fd, data[2])
            self.reap()
        # Hand over what is still buffered, then go.
        os.set_blocking(1, True)
        try:
            while self.outbuf:
                n = os.write(1, self.outbuf)
                del self.outbuf[:n]
        except OSError:
            pass


Agent().loop()
