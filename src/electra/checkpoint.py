"""Our checkpoint directory: ``config.json`` + ``model.safetensors`` (+ ``tokenizer/``, + training state).

Written atomically (a temporary sibling directory, then a rename) and read without unpickling anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.files import atomic_directory
from electra.modeling import Electra

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
FORMAT = "electra-checkpoint"
TRAINING_FORMAT = "electra-training-checkpoint"  # a run's step folder (electra.training.checkpointing)


def _shared_keys(model: Electra) -> set[str]:
    """Keys of the generator whose tensors are the discriminator's (es sharing): stored once, under the
    discriminator's name."""
    disc = {id(v) for v in model.discriminator.state_dict(keep_vars=True).values()}
    return {f"generator.{k}" for k, v in model.generator.state_dict(keep_vars=True).items() if id(v) in disc}


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


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint directory's weights file, read without unpickling anything."""
    file = path / WEIGHTS_FILE
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ElectraError(f"{file}: unreadable weights file ({e})") from None


def load_state(path: Path, model: torch.nn.Module, skip: set[str] = frozenset(),
               optional_prefix: str | None = None, tensors: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Load safetensors weights (``tensors``, else the file's) into ``model`` strictly, checking every shape;
    returns keys left at init."""
    file = path / WEIGHTS_FILE
    if tensors is None:
        tensors = read_tensors(path)
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", keep_gdes: bool = False) -> Electra:
    """Load an :class:`Electra` from a checkpoint directory (a missing generator is left randomly initialised).

    A GDES checkpoint comes back merged (:meth:`Electra.merge_gdes`: the discriminator's own table E_G + E_delta),
    as every user of a trained model wants it; ``keep_gdes`` keeps E_delta apart (to write a GDES checkpoint
    again)."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    config = ModelConfig.from_dict(meta["model"], source=str(path / CONFIG_FILE))
    model = Electra(config)
    load_state(path, model, skip=_shared_keys(model),
               optional_prefix=None if meta.get("has_generator", True) else "generator.")
    if not keep_gdes:
        model.merge_gdes()
    return model.to(map_location)


def convert_sharing(tensors: dict[str, torch.Tensor], source: str,
                    target: ModelConfig) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint's tensors written under ``source`` embedding sharing, rewritten for a model with ``target``'s
    (the networks compute what they computed before wherever that is possible), and a note of what changed.

    es -> nes / gdes: the generator gets copies of the shared module's tables (gdes: E_delta = 0); nes / gdes ->
    es: the one module is the discriminator's (the generator's own tables are dropped, said in the note);
    gdes -> nes and nes -> gdes: E_D = E_G + E_delta, both ways exactly."""
    goal = target.embedding_sharing
    if source == goal:
        return tensors, ""
    out = dict(tensors)
    disc, gen = "discriminator.encoder.embeddings.", "generator.encoder.embeddings."
    if source == "gdes":  # to nes first: the discriminator's own tables
        for k in [k for k in out if k.startswith(disc) and k.endswith(".delta")]:
            base = gen + k[len(disc):-len(".delta")] + ".weight"
            out[k[:-len(".delta")] + ".weight"] = out.pop(k) + out[base]
    # to nes: the generator gets a copy of each shared tensor it does not hold (all of them for a shared module; the
    # tables only for a narrower deberta generator, whose LayerNorm and projection are its own)
    out.update({gen + k[len(disc):]: v.clone() for k, v in list(out.items())
                if k.startswith(disc) and gen + k[len(disc):] not in out})
    note = f"embedding sharing {source} -> {goal}"
    if goal == "es":  # one module; a narrower deberta generator keeps its own LayerNorm / projection, sharing tables
        d, g = target.discriminator, target.generator
        tables_only = d.architecture == "deberta-v2" and d.hidden_size != g.hidden_size
        dropped = [k for k in out if k.startswith(gen) and (not tables_only or k.endswith(
            ("word_embeddings.weight", "position_embeddings.weight")))]
        for k in dropped:
            del out[k]
        if dropped and source != "es":
            note += " (the generator's own embedding tables dropped: both networks now use the discriminator's)"
    elif goal == "gdes":
        for table in ("word_embeddings", "position_embeddings"):
            k = f"{disc}{table}.weight"
            if k in out and f"{gen}{table}.weight" in out:
                out[f"{disc}{table}.delta"] = out.pop(k) - out[f"{gen}{table}.weight"]
    return out, note


def check_tokenizer_fits(tok: Any, vocab_rows: int, tokenizer: str | Path, model: str | Path) -> None:
    """A tokenizer may have fewer ids than the model's word-embedding rows (multilingual-e5: 250,002 of 250,037),
    never more: an id past the table would index out of it. One line naming both sizes otherwise."""
    n = tok.get_vocab_size()
    if n > vocab_rows:
        raise ElectraError(f"{tokenizer}: the tokenizer has {n} tokens but the model {model} has a vocabulary of "
                           f"{vocab_rows} (word-embedding rows): they do not belong together")


def tokenizer_dir(path: str | Path) -> Path | None:
    """The tokenizer folder stored in a checkpoint, if any."""
    d = Path(path) / TOKENIZER_DIR
    return d if d.is_dir() else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run folder (its newest valid checkpoint)."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file() or not (path / "checkpoints").is_dir():
        return path
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

CHECKPOINTS_DIR = "checkpoints"


MANIFEST_FILE = "manifest.json"


_STEP_DIR = re.compile(r"^step-(\d+)$")


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(directory: Path, step: int) -> None:
    files = {f.relative_to(directory).as_posix(): {"size": f.stat().st_size, "sha256": _sha256(f)}
             for f in sorted(directory.rglob("*")) if f.is_file()}
    manifest = {"format": TRAINING_FORMAT, "version": 1, "step": step, "files": files}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


def verify_checkpoint(path: str | Path) -> str | None:
    """``None`` when every file listed in the manifest has its size and sha256, else the reason it fails."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        return f"no {MANIFEST_FILE} (incomplete save)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable {MANIFEST_FILE} ({e})"
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != want["size"]:
            return f"{name} has {f.stat().st_size} bytes, manifest says {want['size']}"
        if _sha256(f) != want["sha256"]:
            return f"{name} does not match its sha256 in the manifest"
    return None


def checkpoint_step(path: str | Path) -> int | None:
    """The step number of a ``step-NNNNNNNN`` folder, else ``None``."""
    m = _STEP_DIR.match(Path(path).name)
    return int(m.group(1)) if m else None


def _step_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir() and checkpoint_step(d) is not None]
    return sorted(dirs, key=checkpoint_step, reverse=True)


def find_latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint in ``run_dir/checkpoints`` that verifies; damaged ones are logged and skipped."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") and any(s in d.name for s in (".tmp-", ".old-", ".del-")):
            log.warning("skipping %s: leftover of an interrupted save", d)
    for d in _step_dirs(root):
        reason = verify_checkpoint(d)
        if reason is None:
            return d
        log.warning("skipping damaged checkpoint %s: %s", d, reason)
    return None
