"""Run by test_training_distributed under torchrun: report rank info and collective results as JSON."""

import json
import sys
from pathlib import Path

import torch

from electra.training.checkpointing import (
    collect_rng_states,
    load_training_checkpoint,
    save_training_checkpoint,
)
from electra.training.distributed import all_reduce_mean, all_reduce_sum, barrier, cleanup, init_distributed

info = init_distributed("cpu")
out = Path(sys.argv[1])
x = torch.tensor([info.rank + 1.0, 10.0 * info.rank])
result = {
    "rank": info.rank, "world_size": info.world_size, "local_rank": info.local_rank,
    "device": str(info.device), "is_main": info.is_main,
    "sum": all_reduce_sum(x).tolist(), "mean": all_reduce_mean(x).tolist(),
    "int_mean": all_reduce_mean(torch.tensor(info.rank)).item(), "input_unchanged": x.tolist(),
}

# Per-rank random streams survive a checkpoint written by rank 0 alone.
torch.manual_seed(100 + info.rank)
model = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
states = collect_rng_states()
if info.is_main:
    save_training_checkpoint(out / "run", 1, model, opt, {"step": 1}, rng_states=states)
barrier()
expected = torch.rand(4)
torch.manual_seed(0)
load_training_checkpoint(out / "run" / "checkpoints" / "step-00000001", model, opt, rank=info.rank)
result["rng_restored"] = torch.equal(torch.rand(4), expected)
result["draw"] = expected.tolist()

barrier()
(out / f"rank{info.rank}.json").write_text(json.dumps(result))
cleanup()
