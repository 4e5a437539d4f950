"""`electra pretrain`, `electra plot`, `electra demo`: replaced-token-detection pre-training and its curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from electra.cli.common import add_framework_arg
from electra.config import EMBEDDING_SHARING, PRESETS, ModelConfig, PretrainConfig, load_mapping, table
from electra.demo import run_demo as demo
from electra.errors import ElectraError
from electra.training.plot import plot_curves
from electra.training.pretrainer import pretrain


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train generator + discriminator on prepared shards")
    p.add_argument("--data", required=True, help="folder written by `electra prepare`")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, tb/, curves.png)")
    p.add_argument("--preset", choices=["tiny", "cpu", "small", "base", "large", "continue"],
                   help="model shape + training recipe (default: small; continue with --init-from)")
    p.add_argument("--init-from", help="checkpoint or run folder to start from (ours, an imported ELECTRA pair or "
                                       "BERT): its weights and shape; optimizer and step start fresh")
    p.add_argument("--config", help="TOML/JSON with a [model] table and/or a [pretrain] table")
    p.add_argument("--held-out", help="folder written by `electra prepare` from text kept out of --data: the "
                                      "end-of-run detection report (detection.json) is measured there")
    p.add_argument("--objective", choices=["electra", "mlm", "electra-15", "replace-mlm", "all-tokens-mlm"],
                   help="replaced-token detection, BERT MLM, or the paper's §3.2 ablations")
    _add_variant_options(p)
    for flag, typ in [("--max-steps", int), ("--max-minutes", float), ("--stop-step", int), ("--batch-size", int),
                      ("--grad-accum", int),
                      ("--lr", float),
                      ("--warmup-steps", int), ("--weight-decay", float), ("--mask-prob", float),
                      ("--generator-weight", float), ("--discriminator-weight", float),
                      ("--temperature", float), ("--temperature-start", float), ("--save-every", int),
                      ("--keep-last", int),
                      ("--log-every", int), ("--seed", int), ("--grad-clip", float),
                      ("--freeze-body-steps", int), ("--new-parts-lr", float),
                      ("--word-embeddings-lr-scale", float)]:
        p.add_argument(flag, type=typ)
    p.add_argument("--generator-size", type=float, help="generator width as a fraction of the discriminator's")
    p.add_argument("--embedding-sharing", choices=EMBEDDING_SHARING,
                   help="es: one embeddings module for both networks (ELECTRA, default); nes: each its own; gdes: "
                        "DeBERTa-v3's gradient-disentangled sharing (discriminator tables = stop_gradient(generator's) "
                        "+ a delta of its own); with --init-from it converts the checkpoint's sharing")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the step when possible")
    p.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=None,
                   help="Adam bias correction (official: off; on in the tiny preset, whose warm-up is short)")
    p.add_argument("--generator-output-grad", action=argparse.BooleanOptionalAction, default=None,
                   help="the generator's tied softmax trains the word embeddings (paper: on); off keeps rare "
                        "tokens' rows from collapsing onto one direction in short runs")
    p.add_argument("--train-word-embeddings", action=argparse.BooleanOptionalAction, default=None,
                   help="off: the word embeddings keep their initialisation (random or --init-embeddings)")
    p.add_argument("--whole-word-masking", action="store_true", default=None,
                   help="mask whole words: the data's word starts (electra prepare --segmenter jieba, for Chinese) "
                        "or the vocabulary's (WordPiece ##, SentencePiece ▁); docs/whole-word-masking.md")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="delete an existing run in --out first")
    p.add_argument("--no-progress", action="store_true")
    add_framework_arg(p)
    p.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                   help="--framework tf: XLA-compile the step (default: Keras' choice)")
    p.set_defaults(handler=run_pretrain)


def pretrain_config_from_args(args: argparse.Namespace):  # noqa: ANN201
    file_values: dict = {}
    model_values: dict = {}
    if args.config:

        data = load_mapping(Path(args.config))
        file_values = table(data, "pretrain", args.config)
        model_values = table(data, "model", args.config)
    preset = file_values.pop("preset", None) or args.preset or ("continue" if args.init_from else "small")
    if file_values:  # errors in the file name the file
        PretrainConfig.for_preset(preset, source=args.config, **file_values)
    names = ["objective", "max_steps", "max_minutes", "stop_step", "batch_size", "grad_accum", "lr", "warmup_steps",
             "weight_decay", "mask_prob", "generator_weight", "discriminator_weight", "temperature",
             "temperature_start", "save_every",
             "keep_last",
             "log_every", "seed", "grad_clip", "precision", "device", "compile", "bias_correction", "init_from",
             "generator_output_grad", "train_word_embeddings", "whole_word_masking",
             "held_out", "freeze_body_steps", "new_parts_lr", "word_embeddings_lr_scale", *VARIANT_OPTIONS]
    overrides = {**file_values, **{n: getattr(args, n) for n in names if getattr(args, n) is not None}}
    cfg = PretrainConfig.for_preset(preset, data=args.data, out=args.out, **overrides)
    if model_values and cfg.preset in PRESETS and not cfg.init_from:  # errors in the file name the file
        ModelConfig.preset(cfg.preset, source=args.config, **model_values)
    if args.embedding_sharing is not None:
        model_values["embedding_sharing"] = args.embedding_sharing
    if args.generator_size is not None:
        model_values["generator_size"] = args.generator_size
        ModelConfig.preset(cfg.preset if cfg.preset in PRESETS else "small", source="pretrain option",
                           **model_values)
    return cfg, model_values


VARIANT_OPTIONS = ["generator_training", "two_stage_generator_steps", "adversarial_mlm_steps",
                   "adversarial_baseline", "adversarial_entropy", "init_embeddings", "position_init"]


def _add_variant_options(p: argparse.ArgumentParser) -> None:
    """The paper's alternative generator training and word-vector initialisation (electra.objectives)."""
    p.add_argument("--generator-training", choices=["joint", "two-stage", "adversarial"],
                   help="joint MLE (default); two-stage (needs --generator-size 1.0); adversarial (REINFORCE)")
    p.add_argument("--two-stage-generator-steps", type=int, help="two-stage: generator-only steps (default: half)")
    p.add_argument("--adversarial-mlm-steps", type=int, help="adversarial: MLM warm-start steps (default 0)")
    p.add_argument("--adversarial-baseline", choices=["learned", "mean"], help="adversarial: REINFORCE baseline")
    p.add_argument("--adversarial-entropy", type=float, help="adversarial: entropy bonus coefficient (default 0)")
    p.add_argument("--init-embeddings", metavar="FILE",
                   help="initialise word embeddings from word2vec (text/.bin) or GloVe vectors")
    p.add_argument("--position-init", choices=["normal", "sinusoidal"],
                   help="position table at step 0: normal (BERT's) or sinusoids (electra.init.positions)")


def run_pretrain(args: argparse.Namespace) -> None:
    cfg, model_values = pretrain_config_from_args(args)
    if args.framework == "tf" and cfg.whole_word_masking:
        raise ElectraError("--whole-word-masking: PyTorch only, not with --framework tf (its objective masks tokens "
                           "independently)")
    if args.framework == "tf" and model_values.get("embedding_sharing") == "gdes":
        raise ElectraError("--embedding-sharing gdes: PyTorch only, not with --framework tf (the Keras networks "
                           "share embeddings as es or nes)")
    if args.framework == "tf":
        from electra.tf.cli import pretrain_tf

        pretrain_tf(cfg, model_values, args)
        return
    if args.xla is not None:
        raise ElectraError("--xla applies to --framework tf only")
    run = pretrain(cfg, model_overrides=model_values, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress)
    print(f"run folder: {run} (metrics.csv, tb/, curves.png, checkpoints/)")


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the bundled text: a tiny ELECTRA from scratch, then a warm start "
                                    "from the installed all-MiniLM-L6-v2, each for half the budget -> held-out "
                                    "detection reports, detect/fill, an honest verdict")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--minutes", type=float, help="pre-training budget in minutes, split evenly between the "
                   "from-scratch and the warm-start leg (default 3: 1.5 each; all of it from scratch when "
                   "all-MiniLM-L6-v2 is not installed)")
    p.add_argument("--steps", type=int, help="train exactly this many steps in each leg instead of --minutes")
    p.add_argument("--batch-size", type=int, help="from-scratch leg's batch size (default 32)")
    p.add_argument("--seed", type=int)
    p.add_argument("--bert", help="BERT directory to warm-start from (default: the all-MiniLM-L6-v2 that make "
                                  "install puts in .venv)")
    p.add_argument("--no-warm-start", action="store_true", help="skip the warm-start leg")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> None:
    given = {k: getattr(args, k) for k in ("minutes", "steps", "batch_size", "seed", "bert")
             if getattr(args, k) is not None}
    demo(args.out, progress=not args.no_progress, warm_start=not args.no_warm_start, **given)


def add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw RUN/curves.png from a run's metrics.csv")
    p.add_argument("run", metavar="RUN", help="run folder (holds metrics.csv)")
    p.add_argument("--smoothing", type=float, default=0.6, help="EMA weight for long curves (0: none)")
    p.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> None:
    print(plot_curves(args.run, smoothing=args.smoothing))
