"""init_distributed and the collectives: single process, and two gloo processes under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from electra.errors import ElectraError
from electra.training.distributed import DistInfo, all_reduce_mean, all_reduce_sum, barrier, init_distributed

TESTS = Path(__file__).resolve().parent


def test_single_process_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert info.is_main and not info.distributed
    x = torch.tensor([1.0, 2.0])
    barrier()
    assert torch.equal(all_reduce_sum(x), x) and torch.equal(all_reduce_mean(x), x)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_request_without_cuda_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ElectraError, match="CUDA is not available"):
        init_distributed("cuda")


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Run tests/_dist_worker.py in two gloo processes under torchrun; each rank's JSON report."""
    tmp_path = tmp_path_factory.mktemp("dist")
    path = os.pathsep.join([str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(TESTS / "_dist_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_two_gloo_processes_reduce_across_ranks(two_rank_results: list[dict]) -> None:
    for r, res in enumerate(two_rank_results):
        assert (res["rank"], res["world_size"], res["local_rank"], res["device"]) == (r, 2, r, "cpu")
        assert res["is_main"] == (r == 0)
        assert res["sum"] == [3.0, 10.0] and res["mean"] == [1.5, 5.0] and res["int_mean"] == 0.5
        assert res["input_unchanged"] == [r + 1.0, 10.0 * r]


def test_each_rank_resumes_its_own_rng_stream(two_rank_results: list[dict]) -> None:
    assert all(res["rng_restored"] for res in two_rank_results)
    assert two_rank_results[0]["draw"] != two_rank_results[1]["draw"]
