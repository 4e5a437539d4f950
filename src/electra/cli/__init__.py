"""The ``electra`` command. It only parses arguments and calls library functions; one module per command group:
:mod:`~electra.cli.data` (tokenizer, prepare, wordvectors), :mod:`~electra.cli.pretrain` (pretrain, plot, demo),
:mod:`~electra.cli.tasks` (finetune, evaluate, predict, score, answer), :mod:`~electra.cli.generation` (detect,
fill, generate, correct, augment, rescore), :mod:`~electra.cli.deploy` (export, import-hf, serve) and
:mod:`~electra.cli.vocab` (trim-vocab)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import torch

from electra import __version__, extras
from electra.cli import data, deploy, generation, pretrain, tasks, vocab
from electra.cli.common import needed_extras
from electra.errors import ElectraError, os_reason
from electra.training.allocator import tune_malloc

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    data.add_tokenizer, data.add_prepare, data.add_wordvectors, pretrain.add_pretrain, tasks.add_finetune,
    tasks.add_evaluate, tasks.add_predict, tasks.add_score, tasks.add_answer, generation.add_detect,
    generation.add_fill, generation.add_generate, generation.add_correct, generation.add_augment, pretrain.add_demo,
    pretrain.add_plot, deploy.add_export, deploy.add_import_hf, deploy.add_serve, generation.add_rescore,
    vocab.add_trim_vocab,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="electra", description="Pre-train and fine-tune ELECTRA text encoders.")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def version_line() -> str:
    """``electra X (torch Y)``: the package's version (one place: ``electra.__version__``) and torch's."""
    return f"electra {__version__} (torch {torch.__version__})"


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    tune_malloc()  # every command moves batch-sized tensors: keep them in the heap (see allocator.py)
    try:
        for extra in needed_extras(args):
            extras.require(extra, args.command)
        code = args.handler(args)
    except ElectraError as e:
        print(f"electra: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a file operation no library function turned into an ElectraError: still one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"electra: error: {where}{os_reason(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("electra: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
