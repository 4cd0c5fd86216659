"""Prints model-zoo training lines (epoch[E], iter[I], loss:L, mean_fps:F) every --step-time seconds.

--fail-rank R --fail-at S: rank R prints a Python traceback at step S and exits 7 (the others go on
until npurun stops them). Rank 5 is a straggler (half the fps) when --slow-rank 5 is given.
"""
import argparse, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--step-time", type=float, default=0.05)
ap.add_argument("--fail-rank", type=int, default=-1)
ap.add_argument("--fail-at", type=int, default=-1)
ap.add_argument("--slow-rank", type=int, default=-1)
a = ap.parse_args()
rank = int(os.environ.get("NPURUN_RANK", "0"))
for step in range(1, a.steps + 1):
    time.sleep(a.step_time)
    if rank == a.fail_rank and step == a.fail_at:
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "train.py", line 42, in <module>', file=sys.stderr)
        print("ValueError: loss exploded on rank %d" % rank, file=sys.stderr, flush=True)
        sys.exit(7)
    loss = 5.0 / (1 + 0.1 * step) + 0.01 * rank
    fps = 1000.0 * (0.5 if rank == a.slow_rank else 1.0) + rank
    print("epoch[%d], iter[%d], loss:%.5f, mean_fps:%.2fimgs/sec" % (1 + step // 5, step, loss, fps), flush=True)
