"""The ``electra`` command. It only parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from electra.errors import ElectraError

Handler = Callable[[argparse.Namespace], int | None]


# ---- export / import ----------------------------------------------------------------------------------
def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to Hugging Face transformers format")
    p.add_argument("--checkpoint", required=True, help="our checkpoint directory")
    p.add_argument("--format", choices=["hf"], default="hf")
    p.add_argument("--out", required=True, help="output directory (gets discriminator/ and generator/)")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> None:
    from electra.hf import export_hf

    out = export_hf(args.checkpoint, args.out)
    print(f"wrote {out}/discriminator (ElectraForPreTraining) and {out}/generator (ElectraForMaskedLM)")


def add_import_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-hf", help="import transformers ELECTRA checkpoint directories")
    p.add_argument("--discriminator", required=True, help="directory with config.json + weights")
    p.add_argument("--generator", help="generator directory (optional)")
    p.add_argument("--out", required=True, help="our checkpoint directory to write")
    p.set_defaults(handler=run_import_hf)


def run_import_hf(args: argparse.Namespace) -> None:
    from electra.hf import import_hf

    out = import_hf(args.discriminator, args.out, args.generator)
    print(f"wrote checkpoint {out}")


# ---- plot ----------------------------------------------------------------------------------------------
def add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw RUN/curves.png from a run's metrics.csv")
    p.add_argument("run", metavar="RUN", help="run folder (holds metrics.csv)")
    p.add_argument("--smoothing", type=float, default=0.6, help="EMA weight for long curves (0: none)")
    p.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> None:
    from electra.training.plot import plot_curves

    print(plot_curves(args.run, smoothing=args.smoothing))


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_export, add_import_hf, add_plot]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="electra", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except ElectraError as e:
        print(f"electra: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("electra: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
