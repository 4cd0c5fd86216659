"""A rank that checks its rank-table entry like HCCL would, then trains and saves a checkpoint per epoch.

Prints `RANK r WORLD n HOST h TABLE ok|bad|none RESUME path|-` first, then model-zoo epoch lines, and
`DONE r` at the end. Resumes from NPURUN_RESUME_EPOCH. --epochs N, --epoch_time S.
"""
import argparse
import json
import os
import subprocess
import time

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--epoch_time", type=float, default=0.5)
a = ap.parse_args()
rank = int(os.environ["NPURUN_RANK"])
world = int(os.environ["NPURUN_WORLD_SIZE"])

table = "none"
if os.environ.get("RANK_TABLE_FILE"):
    with open(os.environ["RANK_TABLE_FILE"]) as f:
        t = json.load(f)
    addrs = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    mine = {l.split()[3].split("/")[0] for l in addrs.splitlines()}
    entries = [s for s in t["server_list"] for d in s["device"] if d["rank_id"] == str(rank)]
    ranks = sum(len(s["device"]) for s in t["server_list"])
    ok = len(entries) == 1 and entries[0]["server_id"] in mine and ranks == world and t["server_count"] == str(len(t["server_list"]))
    table = "ok" if ok else "bad"
print("RANK %d WORLD %d HOST %s TABLE %s RESUME %s" % (
    rank, world, os.environ["NPURUN_HOST"], table, os.environ.get("NPURUN_RESUME_CKPT", "-")), flush=True)

ckdir = os.environ.get("NPURUN_CKPT_DIR")
saves = os.environ.get("NPURUN_CKPT_SAVE") == "1"
if ckdir:
    os.makedirs(ckdir, exist_ok=True)
start = int(os.environ.get("NPURUN_RESUME_EPOCH", "0")) + 1
for epoch in range(start, a.epochs + 1):
    time.sleep(a.epoch_time)
    step = epoch * 10
    print("epoch[%d], iter[%d], loss:%.4f, mean_fps:100.0imgs/sec" % (epoch, step, 1.0 / epoch), flush=True)
    if saves and ckdir:
        with open(os.path.join(ckdir, "%d-%d_%d.ckpt" % (rank, epoch, step)), "wb") as f:
            f.write(b"w" * 4096)
print("DONE %d" % rank, flush=True)
