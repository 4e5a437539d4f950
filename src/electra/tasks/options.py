"""Build a :class:`FinetuneConfig` from ``electra finetune`` arguments (shared by the QA and tagging tasks)."""

from __future__ import annotations

from typing import Any

from electra.checkpoint import read_checkpoint_meta
from electra.config import ModelConfig
from electra.tasks.runner import FinetuneConfig, official_hparams


def finetune_config_from_args(args: Any, default_epochs: float) -> FinetuneConfig:
    """The official recipe by model width, overridden by whichever options ``args`` carries."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    shape = ModelConfig.from_dict(read_checkpoint_meta(args.model)["model"]).discriminator
    official = official_hparams(shape)
    decay = get("layerwise_decay") if get("layerwise_decay") is not None else official["layerwise_decay"]
    return FinetuneConfig(lr=get("lr") or official["lr"], epochs=get("epochs") or default_epochs,
                          max_steps=get("max_steps"), batch_size=get("batch_size") or 32,
                          warmup_fraction=get("warmup_fraction", 0.1), weight_decay=get("weight_decay", 0.0),
                          layerwise_decay=None if decay == 1 else decay,
                          bias_correction=bool(get("bias_correction", False)), eval_every=get("eval_every"),
                          seed=get("seed", 42), device=get("device", "auto"), progress=not get("quiet", False))
