"""A sharded evaluation with torch.distributed (gloo), printed the way the model-zoo eval scripts print it.

Each rank scores its shard of a synthetic validation set (labels and "predictions" are deterministic),
prints its own counts ("before results=[[top1], [top5], [total]]"), then all_reduces them and prints
the "after allreduce eval" lines.
"""
import datetime, os
import torch
import torch.distributed as dist

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
rank, world = dist.get_rank(), dist.get_world_size()
n = 1003
g = torch.Generator().manual_seed(7)
labels = torch.randint(0, 10, (n,), generator=g)
scores = torch.rand(n, 10, generator=g)
scores[torch.arange(n), labels] += torch.rand(n, generator=g) * 0.6
idx = torch.arange(rank, n, world)  # an unpadded shard
top5 = scores[idx].topk(5, dim=1).indices
top1_correct = int((top5[:, 0] == labels[idx]).sum())
top5_correct = int((top5 == labels[idx].unsqueeze(1)).any(dim=1).sum())
tot = len(idx)
print("before results=[[%d], [%d], [%d]]" % (top1_correct, top5_correct, tot), flush=True)
t = torch.tensor([top1_correct, top5_correct, tot], dtype=torch.int64)
dist.all_reduce(t)
t1, t5, total = (int(x) for x in t)
print("after allreduce eval: top1_correct=%d, tot=%d,acc=%.2f%%(TOP1)" % (t1, total, 100.0 * t1 / total), flush=True)
print("after allreduce eval: top5_correct=%d, tot=%d,acc=%.2f%%(TOP5)" % (t5, total, 100.0 * t5 / total), flush=True)
print('{"npurun":"metric","name":"samples_seen","value":%d,"reduce":"sum"}' % tot, flush=True)
print("TOTALS %d %d %d" % (t1, t5, total), flush=True)
dist.destroy_process_group()
