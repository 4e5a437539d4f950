"""Our checkpoint directory: ``config.json`` + ``model.safetensors`` (+ ``tokenizer/``, + training state).

Written atomically (a temporary sibling directory, then a rename) and read without unpickling anything.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from electra.config import ModelConfig
from electra.errors import ElectraError, os_reason
from electra.modeling import Electra

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
FORMAT = "electra-checkpoint"


@contextlib.contextmanager
def atomic_directory(path: str | Path, what: str = "folder", intact: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` in one rename.

    A failed write (a full disk, a file-size limit, a read-only folder: any ``OSError``) leaves ``path`` as it
    was, removes the temporary directory and raises one ``ElectraError`` saying so (``intact`` names what is
    kept, by default ``path``'s previous contents)."""
    path = Path(path)
    tmp: Path | None = None
    recover_swap(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        yield tmp
        for f in tmp.rglob("*"):  # make the bytes durable before the rename makes them visible
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except (OSError, SafetensorError) as e:  # safetensors reports its I/O errors as SafetensorError
        kept = intact or (f"the previous {path.name} is unchanged" if path.exists() else "nothing was written")
        raise ElectraError(f"{path}: could not write the {what} ({write_reason(e)}); {kept}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_swap(path: str | Path) -> bool:
    """Undo a replacement that was killed between its two renames: ``path`` is missing but its previous
    version (``.NAME.old-PID``, complete) is still there. Returns whether it restored one."""
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    olds = sorted(path.parent.glob(f".{glob.escape(path.name)}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.replace(olds[-1], path)
    return True


def write_reason(e: Exception) -> str:
    """Why a write failed, briefly: "File too large", "No space left on device", ..."""
    if isinstance(e, OSError):
        return os_reason(e)
    return re.sub(r"\s*\(os error \d+\)$", "", str(e).rsplit("I/O error: ", 1)[-1])


def write_text_atomic(path: str | Path, text: str, what: str = "file") -> None:
    """Write a small text file through a temporary sibling and a rename: the old file or the new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
        raise ElectraError(f"{path}: could not write the {what} ({os_reason(e)}); {kept}") from None


def _shared_keys(model: Electra) -> set[str]:
    """Keys of the generator that alias the discriminator's embeddings (stored once)."""
    if not model.config.tie_embeddings:
        return set()
    return {k for k in model.state_dict() if k.startswith("generator.encoder.embeddings.")}


def write_model(model: Electra, directory: Path, *, has_generator: bool = True,
                extra: dict[str, Any] | None = None) -> None:
    """Write config and weights of ``model`` into an existing directory (not atomic on its own)."""
    skip = _shared_keys(model) | (set() if has_generator else
                                  {k for k in model.state_dict() if k.startswith("generator.")})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in skip}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    meta = {"format": FORMAT, "version": 1, "has_generator": has_generator,
            "model": model.config.to_dict(), **(extra or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def save_checkpoint(model: Electra, path: str | Path, *, tokenizer_dir: str | Path | None = None,
                    has_generator: bool = True, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (and a copy of the tokenizer files) as a checkpoint directory, atomically."""
    path = Path(path)
    with atomic_directory(path, "checkpoint") as tmp:
        write_model(model, tmp, has_generator=has_generator, extra=extra)
        if tokenizer_dir is not None:
            shutil.copytree(tokenizer_dir, tmp / TOKENIZER_DIR)
    return path


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint, with one-line errors for anything amiss."""
    path = Path(path)
    if not path.is_dir():
        raise ElectraError(f"{path}: not a checkpoint directory (it does not exist or is a file)")
    cfg = path / CONFIG_FILE
    if not cfg.is_file():
        raise ElectraError(f"{path}: not a checkpoint: no {CONFIG_FILE}")
    try:
        meta = json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ElectraError(f"{cfg}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ElectraError(f"{cfg}: not UTF-8 text (byte {e.start})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
        raise ElectraError(f"{cfg}: not an electra checkpoint config (expected \"format\": \"{FORMAT}\" "
                           "and a \"model\" object; use `electra import-hf` for transformers checkpoints)")
    if not (path / WEIGHTS_FILE).is_file():
        raise ElectraError(f"{path}: checkpoint has no {WEIGHTS_FILE}")
    return meta


def load_state(path: Path, model: torch.nn.Module, skip: set[str] = frozenset(),
               optional_prefix: str | None = None) -> list[str]:
    """Load safetensors weights into ``model`` strictly, checking every shape; returns keys left at init."""
    file = path / WEIGHTS_FILE
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ElectraError(f"{file}: unreadable weights file ({e})") from None
    expected = {k: v for k, v in model.state_dict().items() if k not in skip}
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ElectraError(f"{file}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all) "
                           "for this config")
    missing = sorted(set(expected) - set(tensors))
    left = [k for k in missing if optional_prefix and k.startswith(optional_prefix)]
    if len(left) != len(missing):
        first = next(k for k in missing if k not in left)
        raise ElectraError(f"{file}: missing tensor {first!r} ({len(missing) - len(left)} in all)")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ElectraError(f"{file}: tensor {k!r} has shape {tuple(v.shape)} but the config expects "
                               f"{tuple(expected[k].shape)}")
    model.load_state_dict(tensors, strict=False)
    return left


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Electra:
    """Load an :class:`Electra` from a checkpoint directory (a missing generator is left randomly initialised)."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    config = ModelConfig.from_dict(meta["model"], source=str(path / CONFIG_FILE))
    model = Electra(config)
    load_state(path, model, skip=_shared_keys(model),
               optional_prefix=None if meta.get("has_generator", True) else "generator.")
    return model.to(map_location)


def tokenizer_dir(path: str | Path) -> Path | None:
    """The tokenizer folder stored in a checkpoint, if any."""
    d = Path(path) / TOKENIZER_DIR
    return d if d.is_dir() else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run folder (its newest valid checkpoint)."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file() or not (path / "checkpoints").is_dir():
        return path
    from electra.training.checkpointing import find_latest_checkpoint

    latest = find_latest_checkpoint(path)
    if latest is None:
        raise ElectraError(f"{path}: run folder has no complete checkpoint yet")
    return latest


def load_encoder_for_finetuning(path: str | Path) -> tuple[ModelConfig, torch.nn.Module, Path | None]:
    """The encoder to fine-tune from a checkpoint or run folder, plus the tokenizer directory.

    The discriminator's for every objective (``electra``, ``electra-15``, two-stage and adversarial runs, and
    ``replace-mlm`` / ``all-tokens-mlm``, whose discriminator-sized MLM network is the discriminator's encoder
    with an extra head kept in ``objective.safetensors``), except ``mlm``: the generator network, trained at
    the discriminator's size."""
    ckpt = resolve_checkpoint(path)
    meta = read_checkpoint_meta(ckpt)
    model = load_checkpoint(ckpt)
    objective = meta.get("objective", "electra")
    encoder = model.generator.encoder if objective == "mlm" else model.discriminator.encoder
    return model.config, encoder, tokenizer_dir(ckpt)
