"""Training checkpoints: exact resume, rotation, and never resuming from a damaged checkpoint."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from electra.checkpoint import find_latest_checkpoint, load_checkpoint, verify_checkpoint
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.training.checkpointing import load_training_checkpoint, read_training_state, save_training_checkpoint
from electra.training.optim import AdamW, param_groups

IDS = torch.tensor([[2, 5, 9, 11, 3, 7, 1, 0], [4, 8, 15, 16, 23, 42, 6, 0]])


def make(seed: int = 0) -> tuple[Electra, AdamW]:
    torch.manual_seed(seed)
    model = Electra(ModelConfig.preset("tiny", vocab_size=50, generator_size=0.25))
    return model, AdamW(param_groups(model, lr=1e-3, weight_decay=0.01))


def train_step(model: Electra, opt: AdamW) -> None:
    """One step whose result depends on dropout, i.e. on the torch RNG."""
    model.train()
    loss = model.discriminator(IDS).pow(2).mean() + model.generator(IDS).logsumexp(-1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def save(run: Path, step: int, model: Electra, opt: AdamW, **kw) -> Path:
    return save_training_checkpoint(run, step, model, opt, {"step": step, "data": {"shard": 1, "offset": 64}},
                                    **kw)


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resumed_step_is_bitwise_equal_to_uninterrupted_step(tmp_path: Path) -> None:
    model, opt = make(0)
    for _ in range(2):
        train_step(model, opt)
    path = save(tmp_path, 2, model, opt)
    train_step(model, opt)
    expected = params(model)

    model2, opt2 = make(1)
    state = load_training_checkpoint(path, model2, opt2)
    train_step(model2, opt2)
    assert state == {"step": 2, "data": {"shard": 1, "offset": 64}}
    got = params(model2)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_optimizer_state_and_hyperparameters_round_trip(tmp_path: Path) -> None:
    model, opt = make(0)
    train_step(model, opt)
    opt.param_groups[0]["lr"] = 0.123
    path = save(tmp_path, 1, model, opt)
    model2, opt2 = make(1)
    load_training_checkpoint(path, model2, opt2)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert isinstance(b["param_groups"][0]["betas"], tuple)
    for i, s in a["state"].items():
        assert all(torch.equal(s[k], b["state"][i][k]) for k in s)


def test_rng_states_are_restored(tmp_path: Path) -> None:
    model, opt = make(0)
    path = save(tmp_path, 1, model, opt)
    expected = (torch.rand(5), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    load_training_checkpoint(path, model, opt)
    got = (torch.rand(5), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_step_folder_is_a_plain_model_checkpoint_with_tokenizer(tmp_path: Path) -> None:
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    model, opt = make(0)
    path = save(tmp_path / "run", 1, model, opt, tokenizer_dir=tok)
    assert (path / "tokenizer" / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"
    assert path == tmp_path / "run" / "checkpoints" / "step-00000001"
    loaded = load_checkpoint(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_keep_last_rotation_keeps_the_newest(tmp_path: Path) -> None:
    model, opt = make(0)
    for step in (10, 20, 30, 40, 50):
        save(tmp_path, step, model, opt, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000040", "step-00000050"]


def test_keep_last_never_deletes_the_checkpoint_just_written(tmp_path: Path) -> None:
    model, opt = make(0)
    for step in (30, 40, 10):
        save(tmp_path, step, model, opt, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000010", "step-00000040"]


def test_corrupted_weights_fall_back_to_previous_checkpoint(tmp_path: Path, caplog) -> None:
    model, opt = make(0)
    good = save(tmp_path, 1, model, opt)
    bad = save(tmp_path, 2, model, opt)
    f = bad / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert find_latest_checkpoint(tmp_path) == good
    assert "step-00000002" in caplog.text and "sha256" in caplog.text
    assert verify_checkpoint(good) is None


def test_missing_manifest_falls_back_to_previous_checkpoint(tmp_path: Path, caplog) -> None:
    model, opt = make(0)
    good = save(tmp_path, 1, model, opt)
    (save(tmp_path, 2, model, opt) / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING):
        assert find_latest_checkpoint(tmp_path) == good
    assert "manifest.json" in caplog.text


def test_leftover_temporary_directory_is_ignored(tmp_path: Path, caplog) -> None:
    model, opt = make(0)
    good = save(tmp_path, 1, model, opt)
    leftover = tmp_path / "checkpoints" / ".step-00000002.tmp-abc123"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    with caplog.at_level(logging.WARNING):
        assert find_latest_checkpoint(tmp_path) == good
    assert ".tmp-abc123" in caplog.text


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    assert find_latest_checkpoint(tmp_path) is None


def test_loading_a_damaged_checkpoint_is_an_error(tmp_path: Path) -> None:
    model, opt = make(0)
    path = save(tmp_path, 1, model, opt)
    (path / "optimizer.json").write_text("{}")
    with pytest.raises(ElectraError, match="optimizer.json"):
        load_training_checkpoint(path, model, opt)


def test_any_module_with_tied_weights_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    net[1].weight = net[0].weight
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    net(torch.arange(3)).sum().backward()
    opt.step()
    path = save_training_checkpoint(tmp_path, 1, net, opt, {"epoch": 0, "best": (0.5, 3)})
    torch.manual_seed(1)
    net2 = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    net2[1].weight = net2[0].weight
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-2)
    assert load_training_checkpoint(path, net2, opt2) == {"epoch": 0, "best": (0.5, 3)}
    assert torch.equal(net[0].weight, net2[0].weight) and torch.equal(net[1].bias, net2[1].bias)
    assert read_training_state(path)["epoch"] == 0


def test_write_fn_writes_the_model_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    net = nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    calls = []

    def write(module: nn.Module, directory: Path) -> None:
        calls.append(module)
        save_file(dict(module.state_dict()), str(directory / "model.safetensors"))
        (directory / "task.json").write_text("{}")

    path = save_training_checkpoint(tmp_path, 1, net, opt, {}, write_fn=write)
    assert calls == [net] and (path / "task.json").exists() and verify_checkpoint(path) is None
    net2 = nn.Linear(3, 2)
    load_training_checkpoint(path, net2, torch.optim.SGD(net2.parameters(), lr=0.1))
    assert torch.equal(net.weight, net2.weight)
