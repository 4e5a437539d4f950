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
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="delete an existing run in --out first")
    p.add_argument("--no-progress", action="store_true")
    add_framework_arg(p)
    p.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                   help="--framework tf: XLA-compile the step (default: Keras' choice)")
    p.set_defaults(handler=run_pretrain)


def add_framework_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framework", choices=["torch", "tf"], default="torch",
                   help="torch (default) or tf: the Keras 3 implementation (electra.tf; pip install \"electra[tf]\")")


def pretrain_config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from electra.config import PRESETS, ModelConfig, PretrainConfig, load_mapping, table

    file_values: dict = {}
    model_values: dict = {}
    if args.config:
        from pathlib import Path

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
             "generator_output_grad", "train_word_embeddings",
             "held_out", "freeze_body_steps", "new_parts_lr", "word_embeddings_lr_scale", *VARIANT_OPTIONS]
    overrides = {**file_values, **{n: getattr(args, n) for n in names if getattr(args, n) is not None}}
    cfg = PretrainConfig.for_preset(preset, data=args.data, out=args.out, **overrides)
    if model_values and cfg.preset in PRESETS and not cfg.init_from:  # errors in the file name the file
        ModelConfig.preset(cfg.preset, source=args.config, **model_values)
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
                   help="position table at step 0: normal (BERT's) or sinusoids (electra.position_init)")


def run_pretrain(args: argparse.Namespace) -> None:
    from electra.training.pretrainer import pretrain

    cfg, model_values = pretrain_config_from_args(args)
    if args.framework == "tf":
        from electra.tf.cli import pretrain_tf

        pretrain_tf(cfg, model_values, args)
        return
    if args.xla is not None:
        raise ElectraError("--xla applies to --framework tf only")
    run = pretrain(cfg, model_overrides=model_values, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress)
    print(f"run folder: {run} (metrics.csv, tb/, curves.png, checkpoints/)")


def add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="probability that each token was replaced (discriminator); with --data, "
                                      "detection quality (AUC, recall, ...) on prepared held-out shards")
    p.add_argument("--model", required=True, help="checkpoint or run folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data", help="a folder written by `electra prepare` (text the model has not trained on)")
    p.add_argument("--batches", type=int, default=32, help="--data: batches of 32 examples to score")
    p.add_argument("--seed", type=int, default=1, help="--data: masking and sampling seed")
    add_backend_args(p)
    add_framework_arg(p)
    p.add_argument("text", nargs="?")
    p.set_defaults(handler=run_detect)


def add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="torch (default) or onnxruntime (a checkpoint/run is exported on the fly; or give a "
                        "folder written by `electra export --format onnx`)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                   help="fp32 (default); bf16 (torch, CPUs with native bf16 only); int8 (dynamic quantization)")


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

    if (args.text is None) == (args.data is None):
        raise ElectraError("detect: give either a TEXT or --data DIR (prepared shards), not both")
    if args.framework == "tf":
        from electra.tf.cli import check_inference_args
        from electra.tf.inference import detect as tf_detect
        from electra.tf.inference import load_pretrained

        check_inference_args(args)
        result = tf_detect(load_pretrained(args.model), args.text)
    elif args.data is not None:
        _detect_on_data(args)
        return
    elif (args.backend, args.precision) == ("torch", "fp32"):
        model, tokenizer = _load_model_and_tokenizer(args.model)
        result = detect(model, tokenizer, args.text)
    else:
        from electra.generation import Detection

        result = Detection(**_pipeline(args, "detect")([args.text])[0])
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    for tok, p in zip(result.tokens, result.replaced_prob):
        print(f"{tok:>16}  {p:.3f}  {'#' * round(p * 30)}")
    print(f"sequence score (probability the text is unaltered, geometric mean): {result.sequence_score:.3f}")


def _pipeline(args: argparse.Namespace, task: str):  # noqa: ANN202
    from electra.inference import load_model
    from electra.pipelines import pipelines_for

    pipelines = pipelines_for(load_model(args.model, args.backend, args.precision))
    if task not in pipelines:
        raise ElectraError(f"{args.model}: this model does not {task} (it does: {', '.join(pipelines)})")
    return pipelines[task]


def _detect_on_data(args: argparse.Namespace) -> None:
    import json

    from electra.checkpoint import load_checkpoint, resolve_checkpoint
    from electra.data.pretraining_data import PretrainingData
    from electra.detection_eval import evaluate_on_data

    if args.batches < 1:
        raise ElectraError(f"--batches {args.batches}: must be >= 1")
    model = load_checkpoint(resolve_checkpoint(args.model))
    data = PretrainingData(args.data, seed=0)
    vocab = model.config.discriminator.vocab_size
    if data.vocab_size != vocab:
        raise ElectraError(f"{args.data}: prepared with a {data.vocab_size}-entry vocabulary; the model has {vocab}")
    report = evaluate_on_data(model, data, args.batches, seed=args.seed)
    print(json.dumps(report.to_dict()) if args.json else report.format())


def add_fill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fill", help="fill [MASK] tokens with the generator: top-k per [MASK], or (adjacent "
                                    "[MASK]s, [MASK*], or --iterations) whole spans by mask-predict")
    p.add_argument("--model", required=True, help="checkpoint or run folder")
    p.add_argument("--top-k", type=int, default=5, help="candidates per [MASK] (top-k mode); with --samples: "
                                                        "sample from the top k")
    p.add_argument("--iterations", type=int, help="mask-predict iterations T (1: one-shot); default 4 for spans")
    _add_mask_predict_args(p)
    p.add_argument("--json", action="store_true")
    add_backend_args(p)
    add_framework_arg(p)
    p.add_argument("text", help="text with [MASK] (one token; adjacent ones form a span) or [MASK*] (a span of "
                                "unknown length, 1..--max-span tokens tried)")
    p.set_defaults(handler=run_fill)


def _add_mask_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--confidence", choices=["generator", "discriminator"], default="generator",
                   help="what picks the tokens to re-mask: the generator's probability (mask-predict's) or the "
                        "discriminator's p(original)")
    p.add_argument("--max-span", type=int, default=5, help="[MASK*]: longest span tried (default 5)")
    p.add_argument("--samples", type=int, default=1, help="fillings drawn (ranked by the discriminator)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def _print_filled(results: list, as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False))
        return
    for r in results:
        print(f"{r.score:8.4f}  {r.text}")


def run_fill(args: argparse.Namespace) -> None:
    import json

    from electra.generation import MASK_ANY, _parse_markers, fill_mask, fill_text, load_pair

    spans = args.iterations is not None or MASK_ANY in args.text or args.samples > 1 or any(
        n != 1 for _, _, n in _parse_markers(args.text))
    if spans and args.framework == "tf":
        raise ElectraError("fill --framework tf: single [MASK] tokens only (spans, [MASK*], --iterations and "
                           "--samples run on the PyTorch side)")
    if spans:
        pair = load_pair(args.model, args.backend, args.precision, "fill")
        res = fill_text(pair, args.text, args.iterations or 4, args.confidence, args.max_span, args.samples,
                        args.top_k if args.samples > 1 else 0, args.temperature, args.seed)
        _print_filled(res, args.json)
        return
    if args.framework == "tf":
        from electra.tf.cli import check_inference_args
        from electra.tf.inference import fill_mask as tf_fill
        from electra.tf.inference import load_pretrained

        check_inference_args(args)
        result = tf_fill(load_pretrained(args.model), args.text, args.top_k)
    elif (args.backend, args.precision) == ("torch", "fp32"):
        model, tokenizer = _load_model_and_tokenizer(args.model)
        result = fill_mask(model, tokenizer, args.text, args.top_k)
    else:
        pipe = _pipeline(args, "fill")
        found = pipe.run([pipe.prepare(args.text, args.top_k)])[0]
        per_mask = found if found and isinstance(found[0], list) else [found]
        result = [[(c["token_str"], c["score"]) for c in cands] for cands in per_mask]
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for i, cands in enumerate(result):
        print(f"[MASK] #{i + 1}: " + ", ".join(f"{t} ({p:.2f})" for t, p in cands))


def add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue a prompt (or fill its [MASK]/[MASK*]) by mask-predict with the "
                                        "generator; candidates ranked by the discriminator")
    p.add_argument("--model", required=True, help="checkpoint or run folder (generator + discriminator)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--length", type=int, default=8, help="new tokens after the prompt (default 8)")
    p.add_argument("--iterations", type=int, default=10, help="mask-predict iterations T (default 10)")
    p.add_argument("--top-k", type=int, default=0, help="sample from the top k (0: argmax; 10 when --samples > 1)")
    _add_mask_predict_args(p)
    p.add_argument("--json", action="store_true")
    add_backend_args(p)
    p.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> None:
    from electra.generation import generate, load_pair

    pair = load_pair(args.model, args.backend, args.precision, "generate")
    res = generate(pair, args.prompt, args.length, args.iterations, args.samples, args.confidence, args.top_k,
                   args.temperature, args.seed)
    _print_filled(res, args.json)


def add_correct(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("correct", help="detect replaced/wrong words (discriminator) and correct them (generator "
                                       "proposals kept when the discriminator's sentence score improves)")
    p.add_argument("--model", required=True, help="checkpoint or run folder (generator + discriminator)")
    p.add_argument("--json", action="store_true", help='{"text", "edits": [{"start", "end", "original", '
                                                       '"replacement", "p_replaced"}]} per text')
    p.add_argument("--input", help="a file of texts, one per line (streamed: each result as it is done); "
                                   "empty lines are passed through")
    p.add_argument("--nbest", action="store_true", help="--input lines are JSON lists of hypotheses: the first is "
                                                       "corrected with words from the others as the only candidates")
    p.add_argument("--threshold", type=float, default=0.8, help="flag words with p(replaced) above this "
                                                              "(default 0.8; lower: more fixes, less precision)")
    p.add_argument("--top-k", type=int, default=10, help="candidates tried per flagged word (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="detect-and-correct rounds at most (default 3)")
    p.add_argument("--vocabulary", help="a file of candidate words, one per line: only these are proposed")
    p.add_argument("--max-new-p", type=float, default=0.1, help="keep a fix only if the discriminator's "
                   "p(replaced) of the new word is at most this (default 0.1)")
    p.add_argument("--min-generator-prob", type=float, default=0.6, help="propose only generator tokens at least "
                   "this probable (default 0.6; lower: more fixes, less precision)")
    p.add_argument("--edit-names", action="store_true", help="also propose words for capitalised words inside a "
                   "sentence (by default taken for names and left alone)")
    add_backend_args(p)
    p.add_argument("text", nargs="?")
    p.set_defaults(handler=run_correct)


def run_correct(args: argparse.Namespace) -> None:
    import json

    from electra.generation import Corrector, correct_lines, load_pair, read_vocabulary

    if (args.text is None) == (args.input is None):
        raise ElectraError("correct: give either a TEXT or --input FILE, not both")
    if args.nbest and args.input is None:
        raise ElectraError("--nbest goes with --input FILE (JSON lists of hypotheses, one per line)")
    vocabulary = read_vocabulary(args.vocabulary) if args.vocabulary else None
    corrector = Corrector(load_pair(args.model, args.backend, args.precision, "correct"), args.threshold,
                          args.top_k, args.rounds, vocabulary=vocabulary, max_new_p=args.max_new_p,
                          min_generator_prob=args.min_generator_prob, keep_names=not args.edit_names)
    if args.text is not None:
        results = [corrector.correct(args.text)]
    else:
        results = correct_lines(corrector, args.input, args.nbest)
    for res in results:
        print(json.dumps(res.to_dict(), ensure_ascii=False) if args.json else res.text, flush=True)


def add_augment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("augment", help="corrupt-and-reconstruct augmentation (SSMBA) of a training TSV with the "
                                       "generator, filtered by the discriminator")
    p.add_argument("--model", required=True, help="checkpoint or run folder (generator + discriminator)")
    p.add_argument("--input", required=True, help="training file (TSV in the task's layout, e.g. SST-2 train.tsv)")
    p.add_argument("--out", required=True, help="TSV to write: the input's lines, then the new rows")
    p.add_argument("--copies", type=int, default=1, help="new rows per example (default 1)")
    p.add_argument("--task", default="sst2", help="the file's layout (default sst2); or custom with --text-fields")
    p.add_argument("--text-fields", help="custom: the text field(s), comma-separated")
    p.add_argument("--label-field", default="label", help="custom: the label field")
    p.add_argument("--mask-prob", type=float, default=0.15, help="share of words resampled (default 0.15)")
    p.add_argument("--seed", type=int, default=0)
    add_backend_args(p)
    p.set_defaults(handler=run_augment)


def run_augment(args: argparse.Namespace) -> None:
    from electra.generation import augment_file, load_pair
    from electra.tasks.classification import resolve_task

    task = resolve_task(args.task, args.text_fields.split(",") if args.text_fields else None, args.label_field)
    pair = load_pair(args.model, args.backend, args.precision, "augment")
    n, new = augment_file(pair, task, args.input, args.out, args.copies, args.mask_prob, args.seed, progress=True)
    print(f"wrote {args.out}: {n} examples + {new} augmented rows")


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="tokenizer -> prepare -> pre-train tiny on the bundled text for a wall-clock "
                                    "budget -> held-out detection report, detect/fill, an honest verdict")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--minutes", type=float, default=3.0, help="pre-training budget (default 3)")
    p.add_argument("--steps", type=int, help="train exactly this many steps instead of --minutes")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> None:
    from electra.demo import run_demo as demo

    demo(args.out, minutes=args.minutes, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
         progress=not args.no_progress)


# ---- export / import ----------------------------------------------------------------------------------
def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to Hugging Face transformers format, or a checkpoint "
                                      "or fine-tuned run to ONNX")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or run folder, or (onnx) a fine-tuned run")
    p.add_argument("--format", choices=["hf", "onnx", "tf-savedmodel"], default="hf",
                   help="hf (transformers), onnx, or tf-savedmodel (TensorFlow Serving; needs electra[tf])")
    p.add_argument("--out", required=True, help="output directory (a checkpoint gets discriminator/ and generator/)")
    p.add_argument("--quantize", choices=["int8", "int8-tensor"],
                   help="onnx: int8 dynamic quantization of the encoder; int8: activations per row (each input's "
                        "result independent of its batch mates), int8-tensor: per tensor (onnxruntime's default)")
    p.add_argument("--calibration", help="onnx, int8-tensor: text file (one input per line, TAB between a pair's "
                                         "texts; the first 1,000 lines) to smooth activations on (SmoothQuant) "
                                         "before quantizing")
    p.add_argument("--opset", type=int, default=17, help="onnx: opset version (default 17)")
    p.add_argument("--no-optimize", action="store_true", help="onnx: skip onnxruntime's transformer fusions")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> None:
    from electra.hf import export_hf

    if args.format == "tf-savedmodel":
        if args.quantize or args.no_optimize or args.calibration:
            raise ElectraError("--quantize/--no-optimize/--calibration apply to --format onnx only")
        from electra.tf.export import export_savedmodel

        for folder in export_savedmodel(args.checkpoint, args.out):
            print(f"wrote {folder} (SavedModel, signature serving_default)")
        return
    if args.format == "onnx":
        import json

        from electra.export.onnx import export_onnx, read_meta

        for folder in export_onnx(args.checkpoint, args.out, quantize=args.quantize, opset=args.opset,
                                  optimize=not args.no_optimize, calibration=args.calibration):
            meta = read_meta(folder)
            fused = ", ".join(f"{k} {v}" for k, v in meta["fused_operators"].items()) or "none"
            print(f"wrote {folder / 'model.onnx'} ({meta['kind']}; fused: {fused}; "
                  f"{meta['quantization'] or 'fp32'}; parity {json.dumps(meta['parity'])})")
        return
    if args.quantize or args.no_optimize or args.calibration:
        raise ElectraError("--quantize/--no-optimize/--calibration apply to --format onnx only")
    out = export_hf(args.checkpoint, args.out)
    written = [f"{out / kind} ({cls})" for kind, cls in (("discriminator", "ElectraForPreTraining"),
                                                        ("generator", "ElectraForMaskedLM")) if (out / kind).is_dir()]
    print("wrote " + " and ".join(written))


def add_import_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-hf", help="import transformers ELECTRA or BERT-architecture checkpoint directories")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--discriminator", help="ELECTRA discriminator directory with config.json + weights")
    src.add_argument("--bert", help="BERT-architecture directory (BertModel / BertForMaskedLM / "
                                    "BertForPreTraining): its body becomes the discriminator")
    p.add_argument("--generator", help="ELECTRA generator directory (optional; with --discriminator)")
    p.add_argument("--generator-size", type=float,
                   help="with --bert: generator width as a fraction of the BERT's (default 1 with truncate; 0.25 "
                        "with new)")
    p.add_argument("--generator-depth", type=float, help="with --bert: generator depth as a fraction (default 1/6 "
                                                         "with truncate; 1 with new)")
    p.add_argument("--generator-init", choices=["new", "truncate"],
                   help="with --bert: the BERT's lowest blocks + its MLM head when it has one (truncate, the default), "
                        "or a new generator")
    p.add_argument("--seed", type=int, default=0, help="with --bert: seed of the new weights")
    p.add_argument("--out", required=True, help="our checkpoint directory to write")
    p.set_defaults(handler=run_import_hf)


def run_import_hf(args: argparse.Namespace) -> None:
    if args.bert is None:
        if args.generator_size is not None or args.generator_depth is not None or args.generator_init is not None:
            raise ElectraError("--generator-size/--generator-depth/--generator-init apply to --bert imports only")
        from electra.hf import import_hf

        print(f"wrote checkpoint {import_hf(args.discriminator, args.out, args.generator)}")
        return
    if args.generator is not None:
        raise ElectraError("--generator goes with --discriminator (ELECTRA pairs); --bert builds its own generator")
    from electra.hf_bert import DEFAULT_GENERATOR_INIT, import_bert

    out, report = import_bert(args.bert, args.out, generator_init=args.generator_init or DEFAULT_GENERATOR_INIT,
                              seed=args.seed, generator_size=args.generator_size, generator_depth=args.generator_depth)
    print(report.format())
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



# ---- tokenizer / prepare (data pipeline) --------------------------------------------------------------
def add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a WordPiece tokenizer, or build one from a vocab.txt")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    t = tsub.add_parser("train", help="train WordPiece (BERT normaliser/pre-tokeniser) on raw text")
    t.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help=".txt/.txt.gz/.jsonl files or folders")
    t.add_argument("--out", required=True, help="tokenizer directory to write")
    t.add_argument("--vocab-size", type=int, default=30522)
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--limit-alphabet", type=int, default=None,
                   help="keep only the N most frequent characters (default: all, as Chinese needs)")
    _add_case(t)
    _add_corpus_options(t)
    t.set_defaults(handler=run_tokenizer_train)
    v = tsub.add_parser("from-vocab", help="make a tokenizer directory from a vocab.txt (e.g. BERT's)")
    v.add_argument("--vocab", required=True, help="vocab.txt: one token per line, id = line number")
    v.add_argument("--out", required=True, help="tokenizer directory to write")
    _add_case(v)
    v.set_defaults(handler=run_tokenizer_from_vocab)


def _add_case(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lowercase", dest="lowercase", action="store_true", default=True,
                   help="lower-case and strip accents (default, BERT uncased)")
    g.add_argument("--cased", dest="lowercase", action="store_false", help="keep case and accents")


def _add_corpus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-field", default="text", help="field of .jsonl records holding the text")
    p.add_argument("--errors", choices=["strict", "replace", "skip"], default="strict",
                   help="bad UTF-8 or JSON: stop (strict), replace bytes / skip records, or skip lines")


def run_tokenizer_train(args: argparse.Namespace) -> None:
    from electra.data.corpus import Corpus
    from electra.tokenization import train_tokenizer

    corpus = Corpus(args.input, text_field=args.text_field, errors=args.errors)
    tok = train_tokenizer(corpus.texts(), args.out, args.vocab_size, lowercase=args.lowercase,
                          min_frequency=args.min_frequency, limit_alphabet=args.limit_alphabet)
    st = corpus.stats
    print(f"wrote {args.out}: {tok.get_vocab_size():,} tokens from {st.files} files, "
          f"{st.documents:,} documents, {st.lines:,} lines")
    for reason, n in sorted({**st.skipped, **st.altered}.items()):
        print(f"  {n:,} {reason} (e.g. {'; '.join(st.notes.get(reason, []))})")


def run_tokenizer_from_vocab(args: argparse.Namespace) -> None:
    from electra.tokenization import tokenizer_from_vocab

    tok = tokenizer_from_vocab(args.vocab, args.out, lowercase=args.lowercase)
    print(f"wrote {args.out}: {tok.get_vocab_size():,} tokens ({'uncased' if args.lowercase else 'cased'})")


def add_wordvectors(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wordvectors", help="train word vectors over WordPiece tokens for --init-embeddings")
    wsub = p.add_subparsers(dest="wordvectors_command", required=True, metavar="ACTION")
    t = wsub.add_parser("train", help="word2vec (gensim) over the tokens of raw text or prepared shards; writes "
                                      "a vector for every vocabulary entry (word2vec text format, id order)")
    t.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help=".txt/.txt.gz/.jsonl files or folders, or one folder written by `electra prepare`")
    t.add_argument("--tokenizer", help="tokenizer directory (required for raw text; prepared shards use their "
                                       "own copy, and a --tokenizer given too must have the same vocabulary)")
    t.add_argument("--out", required=True, help="vectors file to write (e.g. vectors.txt)")
    t.add_argument("--dim", type=int, default=100, help="vector size (default 100)")
    t.add_argument("--method", default="skipgram", help="skipgram (default) or cbow")
    t.add_argument("--window", type=int, default=5, help="context window in tokens (default 5)")
    t.add_argument("--epochs", type=int, default=5, help="passes over the corpus (default 5)")
    t.add_argument("--min-count", type=int, default=1,
                   help="tokens seen fewer times are filled in, not learned (default 1)")
    t.add_argument("--workers", type=int, default=1, help="gensim worker threads (default 1: gensim is only "
                                                          "reproducible with one worker)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-sentences", type=int, help="read only the first N sentences (lines) of the input")
    _add_corpus_options(t)
    t.set_defaults(handler=run_wordvectors_train)


def run_wordvectors_train(args: argparse.Namespace) -> None:
    from electra.wordvectors import train_word_vectors

    report = train_word_vectors(args.input, args.out, args.tokenizer, dim=args.dim, method=args.method,
                                window=args.window, epochs=args.epochs, min_count=args.min_count,
                                workers=args.workers, seed=args.seed, max_sentences=args.max_sentences,
                                text_field=args.text_field, errors=args.errors)
    print(report.format())


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="tokenize raw text into token shards for pre-training")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory (tokenizer.json or vocab.txt)")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help=".txt/.txt.gz/.jsonl files or folders")
    p.add_argument("--out", required=True, help="data directory to write")
    p.add_argument("--max-seq-len", type=int, default=128,
                   help="default example length (stored in meta.json)")
    p.add_argument("--workers", type=int, default=0,
                   help="tokenizer processes (0: one process, the tokenizer's own threads)")
    p.add_argument("--seed", type=int, default=0, help="default shuffling seed (stored in meta.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if made with another tokenizer")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_corpus_options(p)
    p.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> None:
    from electra.data.prepare import prepare

    summary = prepare(args.input, args.tokenizer, args.out, args.max_seq_len, workers=args.workers,
                      seed=args.seed, text_field=args.text_field, errors=args.errors,
                      overwrite=args.overwrite, progress=not args.quiet)
    print(summary.format())


# ---- fine-tuning: finetune / evaluate / predict ---------------------------------------------------------
def add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a checkpoint on a classification/regression task")
    p.add_argument("--task", required=True, help="cola sst2 mrpc stsb qqp mnli qnli rte wnli chnsenticorp "
                   "lcqmc atec, or custom; QA: squad1 squad2 cmrc2018; tagging: conll2003 tags; "
                   "rerankers: asr-nbest mt-rerank mutual ranking")
    p.add_argument("--model", required=True, help="pre-trained checkpoint directory (ours or `import-hf`'s)")
    p.add_argument("--data", required=True, help="directory with train and dev files")
    p.add_argument("--out", required=True, help="run directory to write (best/, metrics.csv, results.json)")
    p.add_argument("--tokenizer", help="tokenizer folder (default: the checkpoint's tokenizer/)")
    p.add_argument("--text-fields", help="custom: one or two text fields, comma-separated")
    p.add_argument("--label-field", help="custom: the label field")
    p.add_argument("--regression", action="store_true", help="custom: the label is a number")
    p.add_argument("--epochs", type=float, help="default: 3 (10 for RTE and STS-B)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--lr", type=float, help="peak LR (default by size: 3e-4 Small, 1e-4 Base, 5e-5 Large)")
    p.add_argument("--layerwise-decay", type=float, help="default: 0.8 Small/Base, 0.9 Large; 1 = off")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, help="default: 128 (384 SQuAD, 512 CMRC 2018)")
    p.add_argument("--warmup-fraction", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--bias-correction", action="store_true", help="Adam bias correction (official: none)")
    p.add_argument("--eval-every", type=int, help="evaluate on dev every N steps (default: each epoch)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--seeds", type=int, default=1, help="fine-tune N times; report the median")
    p.add_argument("--head", choices=["electra", "transformers"], default="electra",
                   help="electra: dropout -> linear; transformers: dense -> gelu -> dropout -> linear")
    p.add_argument("--no-swap-pairs", action="store_true", help="MRPC/STS-B: don't also train swapped pairs")
    p.add_argument("--token-dropout", type=float, default=0.0, help="augmentation: word drop probability")
    p.add_argument("--word-swap", type=float, default=0.0, help="augmentation: neighbour swap probability")
    p.add_argument("--augment", type=int, default=0, metavar="N", help="augmentation: N corrupt-and-reconstruct "
                   "copies of each training example from the checkpoint's generator (SSMBA; default 0: off)")
    p.add_argument("--search", metavar="GRID", help='hyperparameter grid, e.g. "lr=1e-4,3e-4;epochs=2,3": every '
                   "point over --seeds seeds, chosen on dev; trials.tsv in --out, the best run becomes --out")
    p.add_argument("--train-limit", type=int, help="train on a fixed random subset of N examples")
    p.add_argument("--dev-limit", type=int, help="evaluate on the first N dev examples")
    p.add_argument("--random-init", action="store_true", help="baseline: same shape, random weights")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(same options; gives the same model as an uninterrupted run)")
    p.add_argument("--save-every", type=int, help="write a resumable checkpoint every N steps (default: at the end)")
    p.add_argument("--keep-last", type=int, default=2, help="resumable checkpoints kept (0: all; default 2)")
    add_span_finetune_args(p)
    g = p.add_argument_group("rerankers (asr-nbest, mt-rerank, mutual, ranking: generic JSONL)")
    g.add_argument("--temperature", type=float, help="listwise target softmax(-cost/T) (default 0.1)")
    p.set_defaults(handler=run_finetune)


def run_finetune(args: argparse.Namespace) -> None:
    import json

    if _span_task(args.task):
        return run_span_finetune(args)
    if args.task in RANKING_TASKS:
        return run_ranking_finetune(args)

    from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
    from electra.config import ModelConfig
    from electra.tasks.classification import TaskOptions, finetune_seeds, resolve_task
    from electra.tasks.runner import FinetuneConfig, official_hparams

    fields = args.text_fields.split(",") if args.text_fields else None
    task = resolve_task(args.task, fields, args.label_field, args.regression)
    shape = ModelConfig.from_dict(read_checkpoint_meta(resolve_checkpoint(args.model))["model"]).discriminator
    official = official_hparams(shape)
    decay = args.layerwise_decay if args.layerwise_decay is not None else official["layerwise_decay"]
    config = FinetuneConfig(lr=args.lr if args.lr is not None else official["lr"],
                            epochs=args.epochs if args.epochs is not None else task.epochs,
                            max_steps=args.max_steps, batch_size=args.batch_size,
                            warmup_fraction=args.warmup_fraction, weight_decay=args.weight_decay,
                            layerwise_decay=None if decay == 1 else decay,
                            bias_correction=args.bias_correction,
                            eval_every=args.eval_every, seed=args.seed, device=args.device,
                            precision=args.precision, save_every=args.save_every, keep_last=args.keep_last,
                            progress=not args.quiet)
    options = TaskOptions(max_seq_len=args.max_seq_len if args.max_seq_len is not None else 128, head=args.head,
                          swap_pairs=False if args.no_swap_pairs else None, token_dropout=args.token_dropout,
                          word_swap=args.word_swap, train_limit=args.train_limit, dev_limit=args.dev_limit,
                          random_init=args.random_init, tokenizer=args.tokenizer, augment=args.augment)
    if args.search:
        from electra.tasks.search import parse_grid, search

        if args.resume:
            raise ElectraError("--search cannot --resume (start the search again in a new --out)")
        found = search(task, args.model, args.data, args.out, config, options, args.seeds, parse_grid(args.search))
        for t in found["trials"]:
            print(f"{t['trial']}: {task.metric} median {t['median']:.4f} (min {t['min']:.4f}, max {t['max']:.4f})"
                  + ("  <- best" if t["trial"] == found["best_trial"] else ""))
        print(f"wrote {args.out} (the best trial's run) and {args.out}/trials.tsv")
        print(json.dumps({"task": task.name, "best_trial": found["best_trial"], "best": found["best"]}))
        return
    res = finetune_seeds(task, args.model, args.data, args.out, config, options, args.seeds, resume=args.resume)
    if args.seeds > 1:
        parts = [f"{m} median {res['best'][m]['median']:.4f} (min {res['best'][m]['min']:.4f}, "
                 f"max {res['best'][m]['max']:.4f})" for m in task.report]
        print(f"{task.name} dev over {args.seeds} seeds: " + "; ".join(parts))
    else:
        parts = [f"{m} {res['best'][m]:.4f}" for m in task.report]
        print(f"{task.name} dev: " + ", ".join(parts) + f" (best at step {res['best_step']}/{res['steps']})")
    print(f"wrote {args.out}")
    print(json.dumps({"task": task.name, "best": res["best"]}))


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="the task (default: the one the run was fine-tuned on)")
    p.add_argument("--model", help="fine-tuned run directory")
    p.add_argument("--ensemble", nargs="+", metavar="RUN", help="average the probabilities of several runs "
                   "(a multi-seed run directory counts as all its seeds)")
    p.add_argument("--device", default="auto")


def _runs(args: argparse.Namespace) -> list[str]:
    from electra.errors import ElectraError
    from electra.tasks.classification import single_run

    if args.ensemble:
        return list(args.ensemble) + ([args.model] if args.model else [])
    if not args.model:
        raise ElectraError("give --model RUN or --ensemble RUN...")
    return [str(single_run(args.model))]


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a fine-tuned run on a labelled split")
    _add_run_args(p)
    p.add_argument("--data", required=True, help="directory with the split's file")
    p.add_argument("--split", default="dev", help="dev (default), train, dev_mismatched (MNLI), test")
    p.add_argument("--json", action="store_true", help="print one JSON object of the metrics")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    import json

    if _span_run(args):
        return run_span_evaluate(args)

    from electra.tasks.classification import evaluate_runs

    res = evaluate_runs(_runs(args), args.data, args.split, args.task, args.device)
    if args.json:
        print(json.dumps(res))
        return
    from electra.tasks.classification import get_task

    report = get_task(res["task"]).report if res["task"] != "custom" else [res["main_metric"]]
    print(f"{res['task']} {res['split']} ({res['examples']} examples, {res['runs']} run(s)): "
          + ", ".join(f"{m} {res[m]:.4f}" for m in report))


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict a file with a fine-tuned run (GLUE submission format)")
    _add_run_args(p)
    p.add_argument("--input", required=True, help="a file in the task's layout (e.g. GLUE test.tsv)")
    p.add_argument("--out", required=True, help="where to write index<TAB>prediction")
    add_backend_args(p)
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    if _span_run(args):
        return run_span_predict(args)
    from electra.tasks.classification import predict_file

    n = predict_file(_runs(args), args.input, args.out, args.task, args.device, args.backend, args.precision)
    print(f"wrote {n} predictions to {args.out}")


# ---- extractive QA (squad1, squad2, cmrc2018) and token tagging (conll2003, tags): score / answer, and the
# finetune / evaluate / predict dispatch to electra.tasks.qa and electra.tasks.tagging --------------------------
QA_TASKS = ("squad1", "squad2", "cmrc2018")
TAGGING_TASKS = ("conll2003", "tags")


RANKING_TASKS = ("asr-nbest", "mt-rerank", "mutual", "ranking")


def run_ranking_finetune(args: argparse.Namespace) -> None:
    import json

    from electra.tasks.ranking import finetune_from_args

    res = finetune_from_args(args)
    best = {k: v for k, v in res["best"].items() if isinstance(v, float)}
    print(f"{args.task} dev: " + ", ".join(f"{k} {v:.4f}" for k, v in best.items())
          + f" (best at step {res['best_step']}/{res['steps']}, {res['examples_seen']} lists seen)")
    print(f"wrote {args.out}")
    print(json.dumps({"task": args.task, "best": best}))


def _span_task(task: str | None) -> bool:
    return task in QA_TASKS or task in TAGGING_TASKS


def _span_run(args: argparse.Namespace) -> bool:
    """Whether ``--task``, or else the run given with ``--model``, is a QA or tagging task."""
    if args.task:
        return _span_task(args.task)
    if not args.model or getattr(args, "ensemble", None):
        return False
    from electra.tasks.runner import read_task_meta

    try:
        return _span_task(read_task_meta(args.model).get("spec", {}).get("task"))
    except ElectraError:
        return False


def add_span_finetune_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("question answering (squad1, squad2, cmrc2018) and tagging (conll2003, tags)")
    g.add_argument("--dev-file", help="dev file (default: *dev*.json / valid.txt in --data, else a split of "
                   "--data by article)")
    g.add_argument("--dev-fraction", type=float, default=0.1, help="QA: share of articles held out for dev "
                   "when --data is one file")
    g.add_argument("--doc-stride", type=int, default=128, help="QA: tokens between window starts")
    g.add_argument("--max-query-length", type=int, default=64, help="QA: question tokens kept")
    g.add_argument("--n-best", type=int, default=20, help="QA: start/end candidates kept when decoding")
    g.add_argument("--max-answer-length", type=int, default=30, help="QA: longest answer, in tokens")
    g.add_argument("--independent", action="store_true", help="QA: independent start/end head (not joint)")
    g.add_argument("--no-answerable", action="store_true", help="QA: no answerability classifier "
                   "(SQuAD 2.0 then needs --independent)")


def run_span_finetune(args: argparse.Namespace) -> None:
    import json

    if args.task in QA_TASKS:
        from electra.tasks.qa import finetune_from_args
    else:
        from electra.tasks.tagging import finetune_from_args
    res = finetune_from_args(args)
    best = {k: v for k, v in res["best"].items() if not isinstance(v, dict)}
    print(f"{args.task} dev: " + ", ".join(f"{k} {v:.4f}" for k, v in best.items())
          + f" (best at step {res['best_step']}/{res['steps']})")
    print(f"wrote {args.out}")
    print(json.dumps({"task": args.task, "best": best}))


def run_span_evaluate(args: argparse.Namespace) -> None:
    import json

    from electra.tasks.runner import read_task_meta

    task = args.task or read_task_meta(args.model)["spec"]["task"]
    if task in QA_TASKS:
        from electra.tasks.qa import evaluate_from_args
    else:
        from electra.tasks.tagging import evaluate_from_args
    res = evaluate_from_args(args)
    flat = {k: v for k, v in res.items() if not isinstance(v, dict)}
    if args.json:
        print(json.dumps({"task": task, **res}))
    else:
        print(f"{task}: " + ", ".join(f"{k} {v:.4f}" for k, v in flat.items()))


def run_span_predict(args: argparse.Namespace) -> None:
    from electra.tasks.runner import read_task_meta

    task = args.task or read_task_meta(args.model)["spec"]["task"]
    if task in QA_TASKS:
        from electra.tasks.qa import predict_from_args
    else:
        from electra.tasks.tagging import predict_from_args
    n = predict_from_args(args)
    print(f"wrote {n} predictions to {args.out}")


def add_score(sub: argparse._SubParsersAction) -> None:
    from electra.metrics.files import TEXT_TASKS

    p = sub.add_parser("score", help="score system outputs (WER/CER, BLEU/chrF, ROUGE; one segment per line) or a QA "
                                     "predictions file as the official SQuAD / CMRC 2018 scripts")
    p.add_argument("--task", required=True, choices=(*TEXT_TASKS, *QA_TASKS, "mutual"))
    p.add_argument("--predictions", required=True, help="text tasks: one segment per line; QA: JSON object "
                                                        "question id -> answer text; mutual: the submission file")
    p.add_argument("--references", nargs="+", help="text tasks: reference file(s), one segment per line "
                                                    "(several for multi-reference BLEU/chrF)")
    p.add_argument("--lang", default="en", help="text tasks: zh selects sacrebleu's zh tokenizer and ROUGE's CJK "
                                                 "tokenizer (ROUGE also detects CJK text by itself)")
    p.add_argument("--data", help="QA: the data set (SQuAD-format JSON)")
    p.add_argument("--na-probs", help="squad2: JSON object question id -> no-answer probability/score")
    p.add_argument("--na-prob-thresh", type=float, default=1.0, help="squad2: predict no answer above this")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_score)


def run_score(args: argparse.Namespace) -> None:
    import json

    if args.task in QA_TASKS:
        from electra.squad_metrics import score_files

        if not args.data:
            raise ElectraError(f"score: --task {args.task} needs --data (the SQuAD-format JSON)")
        res = score_files(args.task, args.data, args.predictions, args.na_probs, args.na_prob_thresh)
    elif args.task == "mutual":
        from electra.metrics.ranking import score_mutual_file

        if not args.references:
            raise ElectraError("score: --task mutual needs --references FILE (MuTual JSONL with answers)")
        res = score_mutual_file(args.predictions, args.references[0])
    else:
        from electra.metrics.files import score_text_files

        if not args.references:
            raise ElectraError(f"score: --task {args.task} needs --references FILE [FILE ...]")
        res = score_text_files(args.task, args.predictions, args.references, lang=args.lang)
    if args.json:
        print(json.dumps(res, ensure_ascii=False))
    else:
        for k, v in res.items():
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")


def add_answer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("answer", help="answer a question about a text with a fine-tuned QA run")
    p.add_argument("question")
    p.add_argument("--model", required=True, help="fine-tuned QA run directory")
    p.add_argument("--context", required=True, help="the text, or a file holding it")
    p.add_argument("--candidates", nargs="+", help="rank these answers by the model's span score instead")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_answer)


def run_answer(args: argparse.Namespace) -> None:
    import dataclasses
    import json
    from pathlib import Path

    from electra.tasks.qa import answer

    context = args.context
    if len(context) < 4096 and Path(context).is_file():
        context = Path(context).read_text(encoding="utf-8")
    res = answer(args.model, context, args.question, args.candidates)
    if args.json:
        out = [dataclasses.asdict(c) for c in res] if isinstance(res, list) else {
            k: v for k, v in dataclasses.asdict(res).items() if k != "nbest"}
        print(json.dumps(out, ensure_ascii=False))
    elif isinstance(res, list):
        for c in res:
            where = f"[{c.start}:{c.end}]" if c.start >= 0 else "(not in the context)"
            print(f"{c.score:10.4f}  {c.text}  {where}")
    elif res.start < 0:
        print(f"(no answer)  null score {res.null_score:.4f}")
    else:
        null = f", null score {res.null_score:.4f}" if res.null_score is not None else ""
        print(f"{res.text}\nscore {res.score:.4f}{null}, characters [{res.start}:{res.end}]")


# ---- serve ---------------------------------------------------------------------------------------------
def add_rescore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rescore", help="rerank candidates (ASR n-best, MT system outputs, dialogue responses) with "
                                       "a pre-trained pair's sentence scores; lambda/beta tuned on --dev")
    p.add_argument("--task", required=True, choices=["asr", "mt", "dialogue"])
    p.add_argument("--model", required=True, help="pre-trained checkpoint or run folder (generator + discriminator)")
    p.add_argument("--input", required=True, help="asr: HyPoradise JSON; mt: the source file; dialogue: MuTual JSONL")
    p.add_argument("--dev", help="asr/dialogue: a file of the same format with references, to tune lambda and beta")
    p.add_argument("--out", required=True, help="JSON Lines: the chosen candidate and full ranking per list")
    p.add_argument("--json", action="store_true", help="print one JSON object of the metrics")
    p.add_argument("--scorer", default="rtd", help="rtd (default), pll, pll-word, or a combination: rtd+pll")
    p.add_argument("--lambda", dest="lam", type=float, help="use this weight of every scorer (no tuning)")
    p.add_argument("--beta", type=float, default=0.0, help="with --lambda: the length weight (default 0)")
    p.add_argument("--folds", type=int, help="without --dev: k-fold tuning on the input's own references "
                   "(default: 5; mt: 2)")
    p.add_argument("--candidates", nargs="+", help="mt: a folder of candidate files, or the files (one per system)")
    p.add_argument("--references", nargs="*", default=[], help="mt: reference files the metrics are computed on")
    p.add_argument("--tune-references", nargs="*", help="mt: reference files to tune on (e.g. ref A; report on B)")
    p.add_argument("--lang", default="en", help="mt: target language for BLEU's tokenizer (zh: sacrebleu's zh)")
    p.add_argument("--submission", help="dialogue: also write MuTual's submission format here")
    p.add_argument("--max-length", type=int, default=256, help="tokens per scored sequence (context cut from the "
                   "left; default 256)")
    add_backend_args(p)
    p.set_defaults(handler=run_rescore)


def run_rescore(args: argparse.Namespace) -> None:
    import json

    from electra.rescoring import rescore_file

    metrics = rescore_file(args.task, args.model, args.input, args.out, dev=args.dev, scorer=args.scorer,
                           lam=args.lam, beta=args.beta, folds=args.folds, candidates=args.candidates,
                           references=args.references, tune_references=args.tune_references, lang=args.lang,
                           submission=args.submission, max_length=args.max_length, backend=args.backend,
                           precision=args.precision)
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False))
        return
    for k, v in metrics.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    print(f"wrote {args.out}")


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP service + web page: detect, fill, classify, answer, tag")
    p.add_argument("--model", required=True, nargs="+", action="extend", metavar="[NAME=]RUN",
                   help="checkpoint/run folder (detect + fill), fine-tuned run (classify/answer/tag) or ONNX "
                        "export folder; repeat for several")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    add_backend_args(p)
    p.add_argument("--threads", type=int, help="inference threads (default: torch's, one per core)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger bodies get 413 (default 1 MiB)")
    p.add_argument("--max-inputs", type=int, default=64, help="inputs per request, else 422 (default 64)")
    p.add_argument("--max-input-tokens", type=int, help="tokens per input, else 422 (default: the model's "
                                                        "maximum length); inputs are never truncated or split")
    p.add_argument("--max-batch-tokens", type=int, default=16384, help="padded tokens per forward pass")
    p.add_argument("--max-batch-size", type=int, default=64, help="inputs per forward pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long an input waits for batch mates")
    p.add_argument("--max-queue", type=int, default=1024, help="queued inputs per model and task, else 429")
    p.add_argument("--graceful-seconds", type=float, default=30.0, help="on SIGTERM/SIGINT: time for requests "
                                                                       "in flight to finish")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> None:
    from electra.serve.limits import Limits
    from electra.serve.server import serve

    limits = Limits(max_body_bytes=args.max_body_bytes, max_inputs=args.max_inputs,
                    max_input_tokens=args.max_input_tokens, max_batch_tokens=args.max_batch_tokens,
                    max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                    max_queue=args.max_queue).check()
    serve(args.model, args.host, args.port, args.backend, args.precision, limits, args.threads,
          args.graceful_seconds, args.log_level)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_tokenizer, add_prepare, add_wordvectors, add_pretrain, add_finetune, add_evaluate, add_predict, add_score,
    add_answer, add_detect, add_fill, add_generate, add_correct, add_augment, add_demo, add_plot, add_export,
    add_import_hf, add_serve, add_rescore,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="electra", description="Pre-train and fine-tune ELECTRA text encoders.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from electra.training.allocator import tune_malloc

    tune_malloc()  # every command moves batch-sized tensors: keep them in the heap (see allocator.py)
    try:
        code = args.handler(args)
    except ElectraError as e:
        print(f"electra: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a file operation no library function turned into an ElectraError: still one line
        from electra.errors import os_reason

        where = f"{e.filename}: " if e.filename else ""
        print(f"electra: error: {where}{os_reason(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("electra: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
