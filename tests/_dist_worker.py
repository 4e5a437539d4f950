"""Run by test_training_distributed under torchrun: report rank info and collective results as JSON."""

import json
import sys
from pathlib import Path

import torch

from electra.training.distributed import all_reduce_mean, all_reduce_sum, barrier, cleanup, init_distributed

info = init_distributed("cpu")
x = torch.tensor([info.rank + 1.0, 10.0 * info.rank])
result = {
    "rank": info.rank, "world_size": info.world_size, "local_rank": info.local_rank,
    "device": str(info.device), "is_main": info.is_main,
    "sum": all_reduce_sum(x).tolist(), "mean": all_reduce_mean(x).tolist(),
    "int_mean": all_reduce_mean(torch.tensor(info.rank)).item(), "input_unchanged": x.tolist(),
}
barrier()
(Path(sys.argv[1]) / f"rank{info.rank}.json").write_text(json.dumps(result))
cleanup()
