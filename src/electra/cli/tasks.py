"""`electra finetune`, `evaluate`, `predict`, `score`, `answer`: fine-tuning, dispatched through the task registry.

Options that a library dataclass owns are declared without a default here: :mod:`electra.tasks.options` passes on
only what the user set, so every default is written once (the help texts quote them from the dataclasses).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from electra.cli.common import add_backend_args
from electra.errors import ElectraError
from electra.generation import augmenter, load_pair
from electra.inference import load_task_runner
from electra.metrics.files import TEXT_TASKS, score_text_files
from electra.metrics.ranking import score_mutual_file
from electra.metrics.squad import score_files
from electra.tasks.classification import Augmenter, TaskOptions
from electra.tasks.options import finetune_config_from_args
from electra.tasks.qa import QAParams, answer
from electra.tasks.ranking import RankingOptions
from electra.tasks.registry import CLASSIFICATION, FAMILIES, TASKS, Family, family_of_run, get_task, task_of_run
from electra.tasks.runner import FinetuneConfig, RunLoader

D = FinetuneConfig()  # the defaults quoted in --help
QA_TASKS = tuple(name for name, t in TASKS.items() if t.family.name == "qa")


def _task_list() -> str:
    return "; ".join(f"{family}: " + " ".join(n for n, t in TASKS.items() if t.family.name == family)
                     for family in FAMILIES)


def add_finetune(sub: argparse._SubParsersAction) -> None:
    o, q, r = TaskOptions, QAParams, RankingOptions
    p = sub.add_parser("finetune", help="fine-tune a checkpoint on a task (classification/regression, QA, "
                                        "tagging, ranking)")
    p.add_argument("--task", required=True, choices=list(TASKS), metavar="TASK", help=_task_list())
    p.add_argument("--model", required=True, help="pre-trained checkpoint directory (ours or `import-hf`'s)")
    p.add_argument("--data", required=True, help="directory with train and dev files")
    p.add_argument("--out", required=True, help="run directory to write (best/, metrics.csv, results.json)")
    p.add_argument("--tokenizer", help="tokenizer folder (default: the checkpoint's tokenizer/)")
    p.add_argument("--text-fields", help="custom: one or two text fields, comma-separated")
    p.add_argument("--label-field", help="custom: the label field")
    p.add_argument("--regression", action="store_true", help="custom: the label is a number")
    p.add_argument("--epochs", type=float, help="default: the task's (3; 10 for RTE and STS-B; 2 for QA and ranking)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--lr", type=float, help="peak LR (default by size: 3e-4 Small, 1e-4 Base, 5e-5 Large)")
    p.add_argument("--layerwise-decay", type=float, help="default: 0.8 Small/Base, 0.9 Large; 1 = off")
    p.add_argument("--batch-size", type=int, help=f"default {D.batch_size}")
    p.add_argument("--max-seq-len", type=int, help="default: the task's (128; 384 SQuAD, 512 CMRC 2018; 64 "
                                                   "asr-nbest, 128 mt-rerank, 256 other rankers)")
    p.add_argument("--warmup-fraction", type=float, help=f"default {D.warmup_fraction}")
    p.add_argument("--weight-decay", type=float, help=f"default {D.weight_decay}")
    p.add_argument("--bias-correction", action="store_true", default=None,
                   help="Adam bias correction (official: none)")
    p.add_argument("--eval-every", type=int, help="evaluate on dev every N steps (default: each epoch)")
    p.add_argument("--seed", type=int, help=f"default {D.seed}")
    p.add_argument("--seeds", type=int, help="fine-tune N times; report the median (default 1)")
    p.add_argument("--head", choices=["electra", "transformers"],
                   help=f"electra (default {o.head}): dropout -> linear; transformers: dense -> gelu -> dropout -> "
                        "linear")
    p.add_argument("--pooling", choices=["cls", "mean"],
                   help="classification: what the head reads, the first token (cls, the default: ELECTRA's) or the "
                        "mean of the real tokens (mean: what sentence encoders such as multilingual-e5 were "
                        "trained for)")
    p.add_argument("--no-swap-pairs", action="store_true", help="MRPC/STS-B: don't also train swapped pairs")
    p.add_argument("--token-dropout", type=float,
                   help=f"augmentation: word drop probability (default {o.token_dropout})")
    p.add_argument("--word-swap", type=float,
                   help=f"augmentation: neighbour swap probability (default {o.word_swap})")
    p.add_argument("--augment", type=int, metavar="N", help="augmentation: N corrupt-and-reconstruct copies of each "
                   "training example from the checkpoint's generator (SSMBA; default 0: off)")
    p.add_argument("--search", metavar="GRID", help='hyperparameter grid, e.g. "lr=1e-4,3e-4;epochs=2,3": every '
                   "point over --seeds seeds, chosen on dev; trials.tsv in --out, the best run becomes --out")
    p.add_argument("--train-limit", type=int, help="train on a fixed random subset of N examples")
    p.add_argument("--dev-limit", type=int, help="evaluate on the first N dev examples")
    p.add_argument("--random-init", action="store_true", default=None,
                   help="baseline: same shape, random weights")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["fp32", "bf16"], help=f"{D.precision} (default) or bf16: autocast "
                                                                  "training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(same options; gives the same model as an uninterrupted run)")
    p.add_argument("--save-every", type=int, help="write a resumable checkpoint every N steps (default: at the end)")
    p.add_argument("--keep-last", type=int, help=f"resumable checkpoints kept (0: all; default {D.keep_last})")
    g = p.add_argument_group("question answering (squad1, squad2, cmrc2018) and tagging (conll2003, tags)")
    g.add_argument("--dev-file", help="dev file (default: *dev*.json / valid.txt in --data, else a split of "
                   "--data by article)")
    g.add_argument("--dev-fraction", type=float, help=f"QA, ranking: share of the data held out for dev when --data "
                   f"is one file (default {q.dev_fraction})")
    g.add_argument("--doc-stride", type=int, help=f"QA: tokens between window starts (default {q.doc_stride})")
    g.add_argument("--max-query-length", type=int, help=f"QA: question tokens kept (default {q.max_query_length})")
    g.add_argument("--n-best", type=int, help=f"QA: start/end candidates kept when decoding (default {q.n_best})")
    g.add_argument("--max-answer-length", type=int, help=f"QA: longest answer, in tokens (default "
                   f"{q.max_answer_length})")
    g.add_argument("--independent", action="store_true", help="QA: independent start/end head (not joint)")
    g.add_argument("--no-answerable", action="store_true", help="QA: no answerability classifier "
                   "(SQuAD 2.0 then needs --independent)")
    g = p.add_argument_group("rerankers (asr-nbest, mt-rerank, mutual, ranking: generic JSONL)")
    g.add_argument("--temperature", type=float, help=f"listwise target softmax(-cost/T) (default {r.temperature})")
    p.set_defaults(handler=run_finetune)


def run_finetune(args: argparse.Namespace) -> None:
    task = get_task(args.task)
    config = finetune_config_from_args(args, task.epochs)
    if args.max_seq_len is None and task.max_seq_len is not None:
        args.max_seq_len = task.max_seq_len
    res = task.family.finetune(args, config, _augmenter(args.model) if args.augment else None)
    if "trials" in res:  # --search
        for t in res["trials"]:
            print(f"{t['trial']}: {task.metric} median {t['median']:.4f} (min {t['min']:.4f}, max {t['max']:.4f})"
                  + ("  <- best" if t["trial"] == res["best_trial"] else ""))
        print(f"wrote {args.out} (the best trial's run) and {args.out}/trials.tsv")
        print(json.dumps({"task": task.name, "best_trial": res["best_trial"], "best": res["best"]}))
        return
    if "seeds" in res and isinstance(res["seeds"], list):  # --seeds N > 1: medians
        parts = [f"{m} median {res['best'][m]['median']:.4f} (min {res['best'][m]['min']:.4f}, "
                 f"max {res['best'][m]['max']:.4f})" for m in res["report"]]
        print(f"{task.name} dev over {len(res['seeds'])} seeds: " + "; ".join(parts))
        print(f"wrote {args.out}")
        print(json.dumps({"task": task.name, "best": res["best"]}))
        return
    if task.family is CLASSIFICATION:
        best = {m: res["best"][m] for m in res.get("report", task.report) if m in res["best"]}
    else:
        best = {k: v for k, v in res["best"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    seen = f", {res['examples_seen']} lists seen" if "lists_per_batch" in res else ""
    print(f"{task.name} dev: " + ", ".join(f"{k} {v:.4f}" for k, v in best.items())
          + f" (best at step {res['best_step']}/{res['steps']}{seen})")
    print(f"wrote {args.out}")
    print(json.dumps({"task": task.name, "best": best if task.family is not CLASSIFICATION else res["best"]}))


def _augmenter(model: str) -> Augmenter:
    """``--augment``: SSMBA copies from the pre-trained checkpoint's generator and discriminator."""
    return augmenter(load_pair(model, command="finetune --augment"))


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=list(TASKS), metavar="TASK",
                   help="the task (default: the one the run was fine-tuned on)")
    p.add_argument("--model", help="fine-tuned run directory")
    p.add_argument("--ensemble", nargs="+", metavar="RUN", help="classification: average the probabilities of "
                   "several runs (a multi-seed run directory counts as all its seeds)")
    p.add_argument("--device", default="auto")


def _family(args: argparse.Namespace) -> Family:
    """From ``--task``, else the run's ``task.json``; an ensemble, or a folder of seed runs, is classification."""
    if args.task:
        return get_task(args.task).family
    if not args.model or args.ensemble:
        return CLASSIFICATION
    try:
        return family_of_run(args.model)
    except ElectraError:
        return CLASSIFICATION  # e.g. a multi-seed folder: classification's own checks give the message


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a fine-tuned run on a labelled split")
    _add_run_args(p)
    p.add_argument("--data", required=True, help="directory with the split's file")
    p.add_argument("--split", default="dev", help="dev (default), train, dev_mismatched (MNLI), test")
    p.add_argument("--json", action="store_true", help="print one JSON object of the metrics")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    family = _family(args)
    if family.evaluate is None:
        raise ElectraError(f"electra evaluate: {family.name} runs are scored on dev while fine-tuning "
                           "(RUN/results.json); use `electra rescore --model RUN` on new lists")
    res = family.evaluate(args)
    if family is CLASSIFICATION:
        if args.json:
            print(json.dumps(res))
            return
        report = TASKS[res["task"]].report if res["task"] != "custom" else [res["main_metric"]]
        print(f"{res['task']} {res['split']} ({res['examples']} examples, {res['runs']} run(s)): "
              + ", ".join(f"{m} {res[m]:.4f}" for m in report))
        return
    task = args.task or task_of_run(args.model)
    if args.json:
        print(json.dumps({"task": task, **res}))
    else:
        flat = {k: v for k, v in res.items() if not isinstance(v, dict)}
        print(f"{task}: " + ", ".join(f"{k} {v:.4f}" for k, v in flat.items()))


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict a file with a fine-tuned run (GLUE submission format; QA: the "
                                       "official predictions JSON; tagging: word<TAB>label)")
    _add_run_args(p)
    p.add_argument("--input", required=True, help="a file in the task's layout (e.g. GLUE test.tsv)")
    p.add_argument("--out", required=True, help="where to write the predictions")
    p.add_argument("--label-names", action="store_true", help="classification: write what each label means "
                   "(SST-2: negative / positive) instead of the labels of the submission format (0 / 1)")
    add_backend_args(p)
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    family = _family(args)
    if family.predict is None:
        raise ElectraError(f"electra predict: not available for {family.name} runs (rank lists with "
                           "`electra rescore --model RUN`)")
    load: RunLoader | None = None
    if (args.backend, args.precision) != ("torch", "fp32"):
        def load(run: Path) -> tuple:
            return load_task_runner(run, args.backend, args.precision, family.name)
    n = family.predict(args, load)
    print(f"wrote {n} predictions to {args.out}")


def add_score(sub: argparse._SubParsersAction) -> None:
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
    if args.task in QA_TASKS:

        if not args.data:
            raise ElectraError(f"score: --task {args.task} needs --data (the SQuAD-format JSON)")
        res = score_files(args.task, args.data, args.predictions, args.na_probs, args.na_prob_thresh)
    elif args.task == "mutual":

        if not args.references:
            raise ElectraError("score: --task mutual needs --references FILE (MuTual JSONL with answers)")
        res = score_mutual_file(args.predictions, args.references[0])
    else:

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
