"""The ``electra`` command. It only parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from electra.errors import ElectraError

Handler = Callable[[argparse.Namespace], int | None]


# ---- pre-training ------------------------------------------------------------------------------------
def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train generator + discriminator on prepared shards")
    p.add_argument("--data", required=True, help="folder written by `electra prepare`")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, tb/, curves.png)")
    p.add_argument("--preset", default="small", choices=["tiny", "small", "base", "large"])
    p.add_argument("--config", help="TOML/JSON with a [model] table and/or a [pretrain] table")
    p.add_argument("--objective", choices=["electra", "mlm"], help="replaced-token detection or BERT MLM")
    for flag, typ in [("--max-steps", int), ("--batch-size", int), ("--grad-accum", int), ("--lr", float),
                      ("--warmup-steps", int), ("--weight-decay", float), ("--mask-prob", float),
                      ("--generator-weight", float), ("--discriminator-weight", float),
                      ("--temperature", float), ("--save-every", int), ("--keep-last", int),
                      ("--log-every", int), ("--seed", int), ("--grad-clip", float)]:
        p.add_argument(flag, type=typ)
    p.add_argument("--generator-size", type=float, help="generator width as a fraction of the discriminator's")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the step when possible")
    p.add_argument("--bias-correction", action="store_true", default=None, help="Adam bias correction (off)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="delete an existing run in --out first")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_pretrain)


def pretrain_config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from electra.config import PretrainConfig, load_mapping

    file_values: dict = {}
    model_values: dict = {}
    if args.config:
        from pathlib import Path

        data = load_mapping(Path(args.config))
        file_values = dict(data.get("pretrain", {}))
        model_values = dict(data.get("model", {}))
    preset = file_values.pop("preset", None) or args.preset
    names = ["objective", "max_steps", "batch_size", "grad_accum", "lr", "warmup_steps", "weight_decay",
             "mask_prob", "generator_weight", "discriminator_weight", "temperature", "save_every", "keep_last",
             "log_every", "seed", "grad_clip", "precision", "device", "compile", "bias_correction"]
    overrides = {**file_values, **{n: getattr(args, n) for n in names if getattr(args, n) is not None}}
    cfg = PretrainConfig.for_preset(preset, data=args.data, out=args.out, **overrides)
    if args.generator_size is not None:
        model_values["generator_size"] = args.generator_size
    return cfg, model_values


def run_pretrain(args: argparse.Namespace) -> None:
    from electra.training.pretrainer import pretrain

    cfg, model_values = pretrain_config_from_args(args)
    run = pretrain(cfg, model_overrides=model_values, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress)
    print(f"run folder: {run} (metrics.csv, tb/, curves.png, checkpoints/)")


def add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="probability that each token was replaced (discriminator)")
    p.add_argument("--model", required=True, help="checkpoint or run folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("text")
    p.set_defaults(handler=run_detect)


def _load_model_and_tokenizer(path: str):  # noqa: ANN202
    from electra.checkpoint import load_checkpoint, resolve_checkpoint, tokenizer_dir
    from electra.tokenization import load_tokenizer

    ckpt = resolve_checkpoint(path)
    tok = tokenizer_dir(ckpt)
    if tok is None:
        raise ElectraError(f"{ckpt}: checkpoint has no tokenizer/ folder")
    return load_checkpoint(ckpt), load_tokenizer(tok)


def run_detect(args: argparse.Namespace) -> None:
    import json

    from electra.generation import detect

    model, tokenizer = _load_model_and_tokenizer(args.model)
    result = detect(model, tokenizer, args.text)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    for tok, p in zip(result.tokens, result.replaced_prob):
        print(f"{tok:>16}  {p:.3f}  {'#' * round(p * 30)}")
    print(f"sequence score (probability the text is unaltered, geometric mean): {result.sequence_score:.3f}")


def add_fill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fill", help="fill [MASK] tokens with the generator's top-k")
    p.add_argument("--model", required=True, help="checkpoint or run folder")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument("text")
    p.set_defaults(handler=run_fill)


def run_fill(args: argparse.Namespace) -> None:
    import json

    from electra.generation import fill_mask

    model, tokenizer = _load_model_and_tokenizer(args.model)
    result = fill_mask(model, tokenizer, args.text, args.top_k)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for i, cands in enumerate(result):
        print(f"[MASK] #{i + 1}: " + ", ".join(f"{t} ({p:.2f})" for t, p in cands))


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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_pretrain, add_detect, add_fill, add_export, add_import_hf,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="electra", description="Pre-train and fine-tune ELECTRA text encoders.")
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
