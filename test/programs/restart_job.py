# A deterministic data-parallel job for restart tests: 6 epochs of a linear model, gradients
# all-reduced by hand in a fixed order (bit-exact across restarts), a checkpoint per epoch (model,
# optimizer, epoch) written atomically, resumed from NPURUN_RESUME_CKPT. With CRASH_AT=E, rank
# CRASH_RANK dies right after saving epoch E in the first attempt (no checkpoint to resume from yet);
# with CRASH_AT_START=R, rank R dies before training in every attempt.
import hashlib
import os
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
if os.environ.get("CRASH_AT_START") == str(rank):
    print("crashing at start", flush=True)
    os._exit(9)
torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
start = 0
resume = os.environ.get("NPURUN_RESUME_CKPT")
if resume:
    state = torch.load(resume)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    start = state["epoch"]
    print("resumed from %s at epoch %d" % (os.path.basename(resume), start), flush=True)
ckpt_dir = os.environ["NPURUN_CKPT_DIR"]
os.makedirs(ckpt_dir, exist_ok=True)
for epoch in range(start + 1, 7):
    gen = torch.Generator().manual_seed(1000 * epoch + rank)
    x = torch.randn(64, 8, generator=gen)
    y = x.sum(1, keepdim=True)
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world
    opt.step()
    print("epoch[%d], iter[%d], loss:%.6f" % (epoch, epoch, loss.item()), flush=True)
    path = os.path.join(ckpt_dir, "%d-%d_%d.ckpt" % (rank, epoch, epoch))
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch}, path + ".tmp")
    os.replace(path + ".tmp", path)
    if not resume and str(epoch) == os.environ.get("CRASH_AT") and str(rank) == os.environ.get("CRASH_RANK", "1"):
        print("crashing after epoch %d" % epoch, flush=True)
        os._exit(9)
    time.sleep(1.5)  # lets npurun see each checkpoint settle
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
print("FINAL %s" % digest, flush=True)
