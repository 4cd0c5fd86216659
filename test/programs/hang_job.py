# A gloo job where one rank stops before a collective while the others block in it (a hang as HCCL
# users meet it): every rank prints "step N" after each all_reduce; rank HANG_RANK sleeps instead of
# joining the all_reduce of step HANG_STEP.
import os
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
hang_rank = int(os.environ.get("HANG_RANK", "3"))
hang_step = int(os.environ.get("HANG_STEP", "3"))
t = torch.ones(4)
for step in range(1, 1000):
    if rank == hang_rank and step == hang_step:
        time.sleep(600)
    dist.all_reduce(t)
    print("step %d" % step, flush=True)
    time.sleep(0.2)
