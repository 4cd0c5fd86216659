"""A real torch.distributed job: gloo all_reduce of (rank + 1) across every rank."""
import os
import torch
import torch.distributed as dist

dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=60))
rank = dist.get_rank()
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
print("ALLREDUCE rank=%d world=%d sum=%d host=%s" % (rank, dist.get_world_size(), int(t.item()), os.environ.get("NPURUN_HOST")), flush=True)
dist.destroy_process_group()
