#!/usr/bin/env python3
"""npurun demo worker: behaves like a MindSpore model-zoo training script, without NPUs.

It reads the rank-table environment (RANK_TABLE_FILE, RANK_ID, RANK_SIZE, DEVICE_ID), checks that its
own entry is in the table, prints training lines in the model-zoo format, saves checkpoints on the
cadence npurun hands it (NPURUN_CKPT_*), then prints per-rank eval counts and the "after allreduce"
totals (the allreduce goes through files in the shared working directory: the demo runs on one host).
Standard library only.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time


def log(msg):
    t = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ",%03d" % int((t % 1) * 1000)
    print("%s:INFO:%s" % (stamp, msg), flush=True)


def host_addresses():
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return {"127.0.0.1"}
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}


def check_rank_table(rank, device):
    path = os.environ.get("RANK_TABLE_FILE")
    if not path:
        log("no RANK_TABLE_FILE: running without a rank table")
        return
    with open(path) as f:
        table = json.load(f)
    addresses = host_addresses()
    for server in table["server_list"]:
        for dev in server["device"]:
            if dev["rank_id"] == str(rank):
                if dev["device_id"] != str(device):
                    sys.exit("rank table: rank %s has device %s, but DEVICE_ID is %s" % (rank, dev["device_id"], device))
                if server["server_id"] not in addresses:
                    sys.exit("rank table: rank %s belongs to server %s, not this host (%s)"
                             % (rank, server["server_id"], ", ".join(sorted(addresses))))
                log("rank table %s: rank %s = device %s (ip %s) on server %s"
                    % (path, rank, device, dev["device_ip"], server["server_id"]))
                return
    sys.exit("rank table %s has no entry for rank %s" % (path, rank))


def allreduce_sum(values, rank, size, run_id, timeout=30.0):
    """Sums integer vectors across ranks through files in the parent of the rank dirs."""
    shared = os.path.join(os.path.dirname(os.getcwd()), ".demo_allreduce", run_id)
    os.makedirs(shared, exist_ok=True)
    tmp = os.path.join(shared, "%d.tmp" % rank)
    with open(tmp, "w") as f:
        json.dump(values, f)
    os.replace(tmp, os.path.join(shared, "%d.json" % rank))
    deadline = time.time() + timeout
    while time.time() < deadline:
        files = [os.path.join(shared, "%d.json" % r) for r in range(size)]
        if all(os.path.exists(p) for p in files):
            total = [0] * len(values)
            for p in files:
                with open(p) as f:
                    for i, v in enumerate(json.load(f)):
                        total[i] += v
            return total
        time.sleep(0.05)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps_per_epoch", type=int, default=20)
    ap.add_argument("--step_time", type=float, default=0.01)
    ap.add_argument("--eval_samples", type=int, default=50000)
    ap.add_argument("--ckpt_interval", type=int, default=int(os.environ.get("NPURUN_CKPT_INTERVAL", "0") or 0))
    ap.add_argument("--ckpt_save_max", type=int, default=int(os.environ.get("NPURUN_CKPT_KEEP_MAX", "5") or 5))
    ap.add_argument("--resume", default=os.environ.get("NPURUN_RESUME_CKPT", ""))
    ap.add_argument("--fail_rank", type=int, default=-1, help="this rank exits 1 at --fail_epoch")
    ap.add_argument("--fail_epoch", type=int, default=3)
    args = ap.parse_args()

    rank = int(os.environ.get("RANK_ID", os.environ.get("RANK", "0")))
    size = int(os.environ.get("RANK_SIZE", os.environ.get("WORLD_SIZE", "1")))
    device = int(os.environ.get("DEVICE_ID", os.environ.get("LOCAL_RANK", "0")))
    run_id = os.environ.get("NPURUN_RUN_ID", "local")
    check_rank_table(rank, device)

    saves = os.environ.get("NPURUN_CKPT_SAVE", "1") == "1"
    ckpt_dir = os.environ.get("NPURUN_CKPT_DIR", "ckpt_%d" % rank)
    first_epoch = 1
    if args.resume:
        name = os.path.basename(args.resume)
        first_epoch = int(name.split("-")[-1].split("_")[0]) + 1
        log("resuming from %s at epoch %d" % (args.resume, first_epoch))

    rng = random.Random(1000 + rank)
    loss = 6.9 - 0.05 * (first_epoch - 1)
    step = (first_epoch - 1) * args.steps_per_epoch
    for epoch in range(first_epoch, args.epochs + 1):
        t0 = time.time()
        for _ in range(args.steps_per_epoch):
            time.sleep(args.step_time)
            step += 1
        loss = max(0.5, loss * 0.93 + rng.uniform(-0.05, 0.05))
        fps = 32 * args.steps_per_epoch / max(time.time() - t0, 1e-6)
        log("epoch[%d], iter[%d], loss:%.7f, mean_fps:%.2fimgs/sec" % (epoch, step, loss, fps))
        if rank == args.fail_rank and epoch == args.fail_epoch:
            print("Traceback (most recent call last):", file=sys.stderr)
            print('  File "train.py", line 1, in <module>', file=sys.stderr)
            print("RuntimeError: demo failure injected on rank %d at epoch %d" % (rank, epoch), file=sys.stderr, flush=True)
            sys.exit(1)
        if saves and args.ckpt_interval > 0 and epoch % args.ckpt_interval == 0:
            os.makedirs(ckpt_dir, exist_ok=True)
            path = os.path.join(ckpt_dir, "%d-%d_%d.ckpt" % (rank, epoch, step))
            with open(path, "wb") as f:
                f.write(os.urandom(4096))
            log("saved checkpoint %s" % path)

    # Evaluation: this rank's shard of the validation set, then the in-script allreduce.
    tot = args.eval_samples // size + (1 if rank < args.eval_samples % size else 0)
    top1 = int(tot * rng.uniform(0.78, 0.81))
    top5 = int(tot * rng.uniform(0.93, 0.95))
    print("before results=[[%d], [%d], [%d]]" % (top1, top5, tot), flush=True)
    total = allreduce_sum([top1, top5, tot], rank, size, run_id)
    if total is None:
        log("allreduce timed out: not every rank reached evaluation")
        sys.exit(2)
    t1, t5, n = total
    print("after allreduce eval: top1_correct=%d, tot=%d,acc=%.2f%%(TOP1)" % (t1, n, 100.0 * t1 / n), flush=True)
    print("after allreduce eval: top5_correct=%d, tot=%d,acc=%.2f%%(TOP5)" % (t5, n, 100.0 * t5 / n), flush=True)
    print("Inference Performance: %.2f img/sec" % (tot / 0.5), flush=True)


if __name__ == "__main__":
    main()
