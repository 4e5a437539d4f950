"""Arguments several command groups share (backend, precision, framework) and loading a model for them."""

from __future__ import annotations

import argparse

from electra.checkpoint import load_checkpoint, resolve_checkpoint, tokenizer_dir
from electra.errors import ElectraError
from electra.inference import load_model
from electra.pipelines import pipelines_for
from electra.tokenization import load_tokenizer

COMMAND_EXTRAS = {"serve": "serve", "wordvectors": "wordvectors", "demo": "wordvectors"}
EXPORT_EXTRAS = {"onnx": "onnx", "tf-savedmodel": "tf"}


def needed_extras(args: argparse.Namespace) -> list[str]:
    """The optional extras (:mod:`electra.extras`) a parsed command needs: checked before it does any work."""
    needed = [COMMAND_EXTRAS[args.command]] if args.command in COMMAND_EXTRAS else []
    if args.command == "export" and args.format in EXPORT_EXTRAS:
        needed.append(EXPORT_EXTRAS[args.format])
    if getattr(args, "backend", None) == "onnx":
        needed.append("onnx")
    if getattr(args, "framework", None) == "tf":
        needed.append("tf")
    return needed


def add_framework_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framework", choices=["torch", "tf"], default="torch",
                   help="torch (default) or tf: the Keras 3 implementation (electra.tf; pip install \"electra[tf]\")")


def add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch (default) or onnxruntime (a checkpoint/run is exported on the fly; or give a "
                        "folder written by `electra export --format onnx`)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                   help="fp32 (default); bf16 (torch, CPUs with native bf16 only); int8 (dynamic quantization)")


def load_model_and_tokenizer(path: str):  # noqa: ANN202
    ckpt = resolve_checkpoint(path)
    tok = tokenizer_dir(ckpt)
    if tok is None:
        raise ElectraError(f"{ckpt}: checkpoint has no tokenizer/ folder")
    return load_checkpoint(ckpt), load_tokenizer(tok)


def pipeline_for(args: argparse.Namespace, task: str):  # noqa: ANN202
    pipelines = pipelines_for(load_model(args.model, args.backend, args.precision))
    if task not in pipelines:
        raise ElectraError(f"{args.model}: this model does not {task} (it does: {', '.join(pipelines)})")
    return pipelines[task]
