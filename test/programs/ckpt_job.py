"""Saves checkpoints on the cadence npurun hands over (NPURUN_CKPT_*), MindSpore-style names.

--fail_rank R --fail_epoch E: rank R crashes in the middle of writing its epoch-E checkpoint.
--slow_rank R: rank R writes each checkpoint slowly (in pieces with pauses).
Prints the checkpoint it resumes from (NPURUN_RESUME_CKPT) first.
"""
import argparse, os, sys, time
ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=8)
ap.add_argument("--fail_rank", type=int, default=-1)
ap.add_argument("--fail_epoch", type=int, default=-1)
ap.add_argument("--slow_rank", type=int, default=-1)
ap.add_argument("--epoch_time", type=float, default=0.3)
ap.add_argument("--step_per_epoch", type=int, default=100)
a = ap.parse_args()
rank = int(os.environ["NPURUN_RANK"])
interval = int(os.environ.get("NPURUN_CKPT_INTERVAL", "1"))
saves = os.environ.get("NPURUN_CKPT_SAVE") == "1"
ckdir = os.environ["NPURUN_CKPT_DIR"]
print("RESUME %s" % os.environ.get("NPURUN_RESUME_CKPT", "-"), flush=True)
start = int(os.environ.get("NPURUN_RESUME_EPOCH", "0")) + 1
os.makedirs(ckdir, exist_ok=True)
for epoch in range(start, a.epochs + 1):
    time.sleep(a.epoch_time)
    step = epoch * a.step_per_epoch
    print("epoch[%d], iter[%d], loss:%.4f, mean_fps:100.0imgs/sec" % (epoch, step, 1.0 / epoch), flush=True)
    if not saves or epoch % interval:
        continue
    path = os.path.join(ckdir, "%d-%d_%d.ckpt" % (rank, epoch, step))
    with open(path, "wb") as f:
        for piece in range(8):
            f.write(b"w" * 1024)
            f.flush()
            if rank == a.fail_rank and epoch == a.fail_epoch and piece == 3:
                print("crashing mid-save of %s" % path, flush=True)
                os._exit(1)
            if rank == a.slow_rank:
                time.sleep(0.01)
