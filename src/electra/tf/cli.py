"""The ``--framework tf`` subset of the CLI: which options Keras supports, refused otherwise in one line."""

from __future__ import annotations

import argparse
from typing import Any

from electra.config import PretrainConfig
from electra.errors import ElectraError

# PretrainConfig fields the Keras trainer does not implement, with the value that means "off".
UNSUPPORTED = {"objective": "electra", "generator_training": "joint", "grad_accum": 1, "max_minutes": 0.0,
               "stop_step": 0, "init_embeddings": "", "compile": False, "position_init": "normal",
               "generator_output_grad": True, "train_word_embeddings": True, "temperature_start": 0.0,
               "word_embeddings_lr_scale": 1.0}
UNSUPPORTED_FLAGS = ("resume", "save_every", "keep_last")
SUPPORTED = ("--data --out --preset --config --init-from --max-steps --batch-size --lr --warmup-steps "
             "--weight-decay --mask-prob --generator-weight --discriminator-weight --temperature --log-every --seed "
             "--grad-clip --generator-size --bias-correction --overwrite --no-progress --xla")


def check_pretrain_options(cfg: PretrainConfig, args: argparse.Namespace | None = None) -> None:
    """One ``ElectraError`` for the first option ``electra pretrain --framework tf`` does not support."""
    for name in UNSUPPORTED_FLAGS:
        if args is not None and getattr(args, name, None):
            raise ElectraError(f"--framework tf does not support --{name.replace('_', '-')} (supported: {SUPPORTED})")
    for name, off in UNSUPPORTED.items():
        if getattr(cfg, name) != off:
            raise ElectraError(f"--framework tf does not support {name} = {getattr(cfg, name)!r} (supported: "
                               f"{SUPPORTED})")
    if cfg.precision not in ("auto", "fp32"):
        raise ElectraError(f"--framework tf trains in fp32 only (got --precision {cfg.precision})")
    if cfg.device not in ("auto", "cpu"):
        raise ElectraError(f"--framework tf picks its device itself (got --device {cfg.device})")
    if not cfg.bias_correction:
        print("note: --framework tf: Keras' AdamW always corrects Adam's bias (the PyTorch trainer here does not)")


def pretrain_tf(cfg: PretrainConfig, model_values: dict[str, Any], args: argparse.Namespace) -> None:
    check_pretrain_options(cfg, args)
    from electra.tf.training import pretrain

    jit: bool | str = "auto" if args.xla is None else bool(args.xla)
    run, history = pretrain(cfg, model_overrides=model_values or None, overwrite=args.overwrite, jit_compile=jit,
                            verbose=0 if args.no_progress else 1)
    if history:
        last = history[-1]
        print(f"step {last['step']}: loss {last['loss']:.3f} (mlm {last['mlm_loss']:.3f}, "
              f"disc {last['disc_loss']:.4f}), {last['tokens_per_s']:.0f} tokens/s")
    print(f"run folder: {run} (metrics.csv, checkpoints/)")


def check_inference_args(args: argparse.Namespace) -> None:
    """``detect``/``fill --framework tf``: fp32 Keras, a TEXT; no --backend/--precision/--data."""
    if getattr(args, "data", None) is not None:
        raise ElectraError("--framework tf: detect scores a TEXT (--data runs on --framework torch)")
    if args.backend != "torch" or args.precision != "fp32":
        raise ElectraError("--framework tf runs the Keras model in fp32: drop --backend/--precision")
