"""Build a :class:`FinetuneConfig` from ``electra finetune`` arguments (shared by the QA and tagging tasks)."""

from __future__ import annotations

from typing import Any

from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
from electra.config import ModelConfig
from electra.tasks.runner import FinetuneConfig, official_hparams


def arg(args: Any, name: str, default: Any = None) -> Any:
    """``args.name`` when given (even 0 or ""), else ``default``: an explicit value is never replaced silently."""
    value = getattr(args, name, None)
    return default if value is None else value


def finetune_config_from_args(args: Any, default_epochs: float) -> FinetuneConfig:
    """The official recipe by model width, overridden by whichever options ``args`` carries."""
    def get(name: str, default: Any = None) -> Any:
        return arg(args, name, default)

    ckpt = resolve_checkpoint(args.model)
    shape = ModelConfig.from_dict(read_checkpoint_meta(ckpt)["model"], source=str(ckpt)).discriminator
    official = official_hparams(shape)
    decay = get("layerwise_decay", official["layerwise_decay"])
    return FinetuneConfig(lr=get("lr", official["lr"]), epochs=get("epochs", default_epochs),
                          max_steps=get("max_steps"), batch_size=get("batch_size", 32),
                          warmup_fraction=get("warmup_fraction", 0.1), weight_decay=get("weight_decay", 0.0),
                          layerwise_decay=None if decay == 1 else decay,
                          bias_correction=bool(get("bias_correction", False)), eval_every=get("eval_every"),
                          seed=get("seed", 42), device=get("device", "auto"), precision=get("precision", "fp32"),
                          save_every=get("save_every"), keep_last=get("keep_last", 2),
                          progress=not get("quiet", False))
