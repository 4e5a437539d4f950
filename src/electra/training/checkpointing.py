"""Training checkpoints in a run folder: weights, optimizer, RNG and loop state, verified by a manifest.

Layout of ``RUN/checkpoints/step-00001000/`` (written atomically, ``manifest.json`` last)::

    config.json, model.safetensors      the model, as :func:`electra.checkpoint.write_model` writes it
    optimizer.json (+ .safetensors)     optimizer state: tensors in safetensors, the rest in JSON
    rng.json (+ .safetensors)           python, numpy, torch CPU (and CUDA) generator states, per rank
    state.json (+ .safetensors)         the caller's state (step, data position, config, metrics, ...)
    tokenizer/                          a copy of the tokenizer files, when given
    manifest.json                       every other file with its size and sha256

Nothing is pickled: JSON holds the structure, tuples and non-string keys are tagged, tensors are stored in
safetensors by name. A step folder is loadable as a plain model checkpoint with ``load_checkpoint``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim import Optimizer

from electra.checkpoint import (
    CHECKPOINTS_DIR,
    WEIGHTS_FILE,
    _shared_keys,
    _step_dirs,
    _write_manifest,
    load_state,
    read_checkpoint_meta,
    verify_checkpoint,
    write_model,
)
from electra.errors import ElectraError
from electra.files import atomic_directory
from electra.modeling import Electra

log = logging.getLogger(__name__)

def _unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _alias_keys(model: nn.Module) -> set[str]:
    """State-dict keys whose tensor is the same as an earlier key's (tied weights; stored once)."""
    seen, alias = set(), set()
    for k, v in model.state_dict().items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
        if v.numel() and ident in seen:
            alias.add(k)
        seen.add(ident)
    return alias


# ---- a JSON + safetensors encoding of nested state (no pickle) ----------------------------------------
def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        assert key not in tensors, key
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, f"{key}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, f"{key}/{k}#", tensors), _encode(v, f"{key}/{k}", tensors)]
                              for k, v in obj.items()]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{key}: cannot store a {type(obj).__name__} in a training checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.array(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _write_tree(directory: Path, name: str, obj: Any) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(obj, name, tensors)
    (directory / f"{name}.json").write_text(json.dumps(tree) + "\n")
    if tensors:
        save_file(tensors, str(directory / f"{name}.safetensors"))


def _read_tree(directory: Path, name: str) -> Any:
    file = directory / f"{name}.json"
    try:
        tree = json.loads(file.read_text(encoding="utf-8"))
        st = directory / f"{name}.safetensors"
        tensors = load_file(str(st)) if st.exists() else {}
        return _decode(tree, tensors)
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ElectraError(f"{file}: unreadable training state ({e})") from None


# ---- RNG -------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and (when initialised) CUDA generator states."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": list(cuda)}


def collect_rng_states() -> list[dict[str, Any]]:
    """Every rank's :func:`rng_state`, in rank order; a collective, so call it on all ranks before saving."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [rng_state()]
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(rng_state(), "rng", tensors)
    payload = {"tree": tree, "tensors": {k: [str(v.dtype).removeprefix("torch."), v.tolist()]
                                         for k, v in tensors.items()}}
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    data = torch.tensor(list(json.dumps(payload).encode()), dtype=torch.uint8, device=device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([len(data)], device=device))
    n = max(int(x) for x in sizes)
    bufs = [torch.zeros(n, dtype=torch.uint8, device=device) for _ in sizes]
    dist.all_gather(bufs, torch.cat([data, data.new_zeros(n - len(data))]))
    out = []
    for buf, size in zip(bufs, sizes):
        p = json.loads(bytes(buf[: int(size)].tolist()).decode())
        ts = {k: torch.tensor(v, dtype=getattr(torch, dt)) for k, (dt, v) in p["tensors"].items()}
        out.append(_decode(p["tree"], ts))
    return out


def _set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        for i, t in enumerate(s["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(t, i)


# ---- manifest --------------------------------------------------------------------------------------
# ---- public API ------------------------------------------------------------------------------------
def save_training_checkpoint(run_dir: str | Path, step: int, model: nn.Module, optimizer: Optimizer,
                             state: dict[str, Any], tokenizer_dir: str | Path | None = None,
                             keep_last: int = 3, *, has_generator: bool = True,
                             write_fn: Callable[[nn.Module, Path], None] | None = None,
                             rng_states: list[dict[str, Any]] | None = None) -> Path:
    """Write ``run_dir/checkpoints/step-{step:08d}/`` atomically, then keep only the newest ``keep_last``.

    ``model`` is an :class:`Electra` (written by ``write_model``) or any module: its state dict goes to
    ``model.safetensors`` (tied tensors once), or ``write_fn(module, directory)`` writes it when given.
    ``keep_last <= 0`` keeps every checkpoint. Call it on the main process only; under DDP pass
    ``rng_states=collect_rng_states()`` (called on every rank) so each rank resumes its own random streams.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    path = root / f"step-{step:08d}"
    module = _unwrap(model)
    previous = [d for d in _step_dirs(root) if d != path]
    intact = (f"the previous checkpoint {previous[0].name} is intact" if previous else "no checkpoint was written")
    with atomic_directory(path, f"checkpoint of step {step}", intact) as tmp:
        if write_fn is not None:
            write_fn(module, tmp)
        elif isinstance(module, Electra):
            write_model(module, tmp, has_generator=has_generator)
        else:
            skip = _alias_keys(module)
            tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file({k: v for k, v in tensors.items() if k not in skip}, str(tmp / WEIGHTS_FILE))
        _write_tree(tmp, "optimizer", optimizer.state_dict())
        _write_tree(tmp, "rng", {"ranks": rng_states or [rng_state()]})
        _write_tree(tmp, "state", state)
        if tokenizer_dir is not None:
            shutil.copytree(tokenizer_dir, tmp / "tokenizer")
        _write_manifest(tmp, step)
    if (reason := verify_checkpoint(path)) is not None:  # never prune older checkpoints for a bad new one
        raise ElectraError(f"{path}: the checkpoint just written does not verify ({reason}); {intact}")
    for d in root.iterdir():  # interrupted saves and deletions are never valid checkpoints
        if d.name.startswith(".") and (".tmp-" in d.name or ".del-" in d.name):
            shutil.rmtree(d, ignore_errors=True)
    if keep_last > 0:  # the newest keep_last, counting the new one (verified above)
        for old in [d for d in _step_dirs(root) if d != path][keep_last - 1:]:
            gone = old.with_name(f".{old.name}.del-{os.getpid()}")
            os.replace(old, gone)
            shutil.rmtree(gone, ignore_errors=True)
    return path


def read_training_state(path: str | Path) -> dict[str, Any]:
    """The caller's ``state`` dict of a checkpoint, without loading any model (e.g. to rebuild its config)."""
    return _read_tree(Path(path), "state")


def load_training_checkpoint(path: str | Path, model: nn.Module, optimizer: Optimizer | None = None,
                             *, restore_rng: bool = True, verify: bool = True,
                             rank: int = 0) -> dict[str, Any]:
    """Restore weights (strictly), optimizer state and RNG states; return the caller's ``state`` dict.

    Load the model onto its device first; the optimizer state follows its parameters' devices. Each rank
    gets the RNG states saved for ``rank`` (rank 0's, with a warning, if the checkpoint has fewer ranks).
    """
    path = Path(path)
    if verify and (reason := verify_checkpoint(path)) is not None:
        raise ElectraError(f"{path}: damaged checkpoint: {reason}")
    module = _unwrap(model)
    if isinstance(module, Electra):
        meta = read_checkpoint_meta(path)
        load_state(path, module, skip=_shared_keys(module),
                   optional_prefix=None if meta.get("has_generator", True) else "generator.")
    else:
        load_state(path, module, skip=_alias_keys(module))
    if optimizer is not None:
        try:
            optimizer.load_state_dict(_read_tree(path, "optimizer"))
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            raise ElectraError(f"{path / 'optimizer.json'}: does not fit this optimizer ({e})") from None
    if restore_rng:
        try:
            ranks = _read_tree(path, "rng")["ranks"]
            if rank >= len(ranks):
                log.warning("%s has RNG states of %d rank(s); rank %d takes rank 0's", path, len(ranks), rank)
            _set_rng_state(ranks[rank if rank < len(ranks) else 0])
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            raise ElectraError(f"{path / 'rng.json'}: malformed RNG states ({e})") from None
    state = read_training_state(path)
    if not isinstance(state, dict):
        raise ElectraError(f"{path / 'state.json'}: expected an object, got {type(state).__name__}")
    return state
