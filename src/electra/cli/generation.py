"""`electra detect`, `fill`, `generate`, `correct`, `augment`, `rescore`: generator + discriminator applications."""

from __future__ import annotations

import argparse
import json

from electra.checkpoint import load_checkpoint, resolve_checkpoint
from electra.cli.common import add_backend_args, add_framework_arg, load_model_and_tokenizer, pipeline_for
from electra.data.pretraining_data import PretrainingData
from electra.detection_eval import evaluate_on_data
from electra.errors import ElectraError
from electra.generation import (
    MASK_ANY,
    Corrector,
    Detection,
    augment_file,
    correct_lines,
    detect,
    fill_mask,
    fill_text,
    generate,
    load_pair,
    parse_markers,
    read_vocabulary,
)
from electra.rescoring import rescore_file
from electra.tasks.classification import resolve_task


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


def run_detect(args: argparse.Namespace) -> None:
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
        model, tokenizer = load_model_and_tokenizer(args.model)
        result = detect(model, tokenizer, args.text)
    else:

        result = Detection(**pipeline_for(args, "detect")([args.text])[0])
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    for tok, p in zip(result.tokens, result.replaced_prob):
        print(f"{tok:>16}  {p:.3f}  {'#' * round(p * 30)}")
    print(f"sequence score (probability the text is unaltered, geometric mean): {result.sequence_score:.3f}")


def _detect_on_data(args: argparse.Namespace) -> None:
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
    p = sub.add_parser("fill", help="fill [MASK] tokens (or the model's own mask token, e.g. <mask>) with the "
                                    "generator: top-k per mask, or (adjacent [MASK]s, [MASK*], or --iterations) "
                                    "whole spans by mask-predict")
    p.add_argument("--model", required=True, help="checkpoint or run folder")
    p.add_argument("--top-k", type=int, default=5, help="candidates per [MASK] (top-k mode); with --samples: "
                                                        "sample from the top k")
    p.add_argument("--iterations", type=int, help="mask-predict iterations T (1: one-shot); default 4 for spans")
    _add_mask_predict_args(p)
    p.add_argument("--json", action="store_true")
    add_backend_args(p)
    add_framework_arg(p)
    p.add_argument("text", help="text with [MASK] (one token; adjacent ones form a span; the model's own mask "
                                "token, e.g. <mask>, works too) or [MASK*] (a span of unknown length, "
                                "1..--max-span tokens tried)")
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
    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False))
        return
    for r in results:
        print(f"{r.score:8.4f}  {r.text}")


def run_fill(args: argparse.Namespace) -> None:
    spans = args.iterations is not None or MASK_ANY in args.text or args.samples > 1 or any(
        n != 1 for _, _, n in parse_markers(args.text))
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
        model, tokenizer = load_model_and_tokenizer(args.model)
        result = fill_mask(model, tokenizer, args.text, args.top_k)
    else:
        pipe = pipeline_for(args, "fill")
        found = pipe.run([pipe.prepare(args.text, args.top_k)])[0]
        per_mask = found if found and isinstance(found[0], list) else [found]
        result = [[(c["token_str"], c["score"]) for c in cands] for cands in per_mask]
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for i, cands in enumerate(result):
        print(f"mask #{i + 1}: " + ", ".join(f"{t} ({p:.2f})" for t, p in cands))


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
    task = resolve_task(args.task, args.text_fields.split(",") if args.text_fields else None, args.label_field)
    pair = load_pair(args.model, args.backend, args.precision, "augment")
    n, new = augment_file(pair, task, args.input, args.out, args.copies, args.mask_prob, args.seed, progress=True)
    print(f"wrote {args.out}: {n} examples + {new} augmented rows")


def add_rescore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rescore", help="rerank candidates (ASR n-best, MT system outputs, dialogue responses) with "
                                       "a pre-trained pair's sentence scores; lambda/beta tuned on --dev")
    p.add_argument("--task", required=True, choices=["asr", "mt", "dialogue"])
    p.add_argument("--model", required=True, help="pre-trained checkpoint or run folder (generator + discriminator)")
    p.add_argument("--input", required=True, help="asr: HyPoradise JSON; mt: the source file; dialogue: MuTual JSONL")
    p.add_argument("--dev", help="asr/dialogue: a file of the same format with references, to tune lambda and beta")
    p.add_argument("--out", required=True, help="JSON Lines: the chosen candidate and full ranking per list")
    p.add_argument("--json", action="store_true", help="print one JSON object of the metrics")
    p.add_argument("--scorer", default="rtd", help="rtd (default), pll, pll-word, similarity (cosine to the "
                   "source/context, mean-pooled; torch), or a combination: rtd+similarity")
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
