"""Sequence classification and regression (GLUE, ChnSentiCorp, LCQMC, ATEC, custom data): encode, fine-tune
with :mod:`electra.tasks.runner`, evaluate (one run or an ensemble) and predict in GLUE submission format.

The recipe is google-research/electra's: ``[CLS]`` -> dropout -> linear (regression: one output, MSE), max
length 128, batch 32, 3 epochs (10 for RTE/STS-B), MRPC/STS-B pairs also trained in swapped order, peak LR
and layer-wise decay by model size (see :func:`electra.tasks.runner.official_hparams`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tokenizers import Tokenizer

from electra import metrics as M
from electra.config import Rule, at_least, check_values, interval, one_of, validate
from electra.data.glue import TASKS, Example, TaskDef, custom_task, get_task, load_split, read_examples
from electra.errors import ElectraError
from electra.files import write_text_atomic
from electra.tasks.heads import ClassificationHead
from electra.tasks.runner import (
    BEST_DIR,
    Batch,
    FinetuneConfig,
    RunLoader,
    TaskModel,
    check_tokenizer_fits,
    collate,
    finetune,
    load_encoder,
    load_task_model,
    pick_device,
    read_task_meta,
    resolve_run,
    run_inference,
    run_tokenizer_dir,
    set_seed,
    train_subset_indices,
)
from electra.tokenization import continuation_prefix, load_tokenizer, special_tokens, word_start_table

Augmenter = Callable[[Sequence[Example], int, int], list[Example]]  # (examples, copies, seed) -> new examples


@dataclass
class TaskOptions:
    """Task-side settings (the optimiser's are in :class:`FinetuneConfig`)."""

    max_seq_len: int = 128
    head: str = "electra"  # "electra": dropout -> linear; "transformers": dense -> gelu -> dropout -> linear
    pooling: str = "cls"  # what the head reads: the first token ("cls"), or the mean of the real tokens ("mean")
    swap_pairs: bool | None = None  # None: the task's default (MRPC, STS-B)
    token_dropout: float = 0.0  # augmentation: drop each word with this probability (training only)
    word_swap: float = 0.0  # augmentation: swap each word with its right neighbour with this probability
    train_limit: int | None = None  # a fixed random subset of the training split (for quick runs)
    dev_limit: int | None = None  # the first N dev examples
    random_init: bool = False  # baseline: same shape as the checkpoint, random weights
    tokenizer: str | None = None  # tokenizer folder; default: the checkpoint's tokenizer/
    augment: int = 0  # SSMBA-style copies per training example from the checkpoint's generator (0: off)

    KIND: ClassVar[str] = "task option"
    RULES: ClassVar[dict[str, Rule]] = {
        "max_seq_len": at_least(3), "head": one_of("electra", "transformers"), "pooling": one_of("cls", "mean"),
        "token_dropout": interval(0, 1, "[)"), "word_swap": interval(0, 1, "[]"),
        "train_limit": at_least(1).optional(), "dev_limit": at_least(1).optional(), "augment": at_least(0),
        "tokenizer": Rule("an existing tokenizer folder or file", lambda v: v is None or Path(v).exists()),
    }

    def __post_init__(self) -> None:
        validate(self)


# ---- task and tokenizer ------------------------------------------------------------------------------------
def resolve_task(name: str, text_fields: Sequence[str] | None = None, label_field: str | None = None,
                 regression: bool = False) -> TaskDef:
    if name != "custom":
        return get_task(name)
    if not text_fields or not label_field:
        raise ElectraError("task custom needs --text-fields a[,b] and --label-field y")
    return custom_task(text_fields, label_field, regression)


def task_from_spec(spec: dict[str, Any]) -> TaskDef:
    """The task definition a run was trained on (custom tasks carry their fields and labels)."""
    if spec["task"] == "custom":
        return custom_task(spec["text_fields"], spec["label_field"], spec["regression"], spec.get("labels"))
    return get_task(spec["task"])


def label_names(spec: dict[str, Any]) -> list[str]:
    """What a classification run's labels mean, for people (SST-2: negative, positive), in label order: stored
    in the run, or for runs written before names were stored, from the task's table; else the labels."""
    labels = [str(label) for label in spec.get("labels") or []]
    names = spec.get("label_names")
    if isinstance(names, list) and len(names) == len(labels):
        return [str(n) for n in names]
    task = TASKS.get(spec.get("task", ""))
    return [task.label_name(label) for label in labels] if task is not None else labels


def prepare_tokenizer(tokenizer_path: str | Path | None, model_path: str | Path, vocab_size: int,
                      max_seq_len: int, max_positions: int) -> Tokenizer:
    """Load the tokenizer, check it fits the model's vocabulary and positions, set truncation."""
    path = tokenizer_path or run_tokenizer_dir(model_path)
    if path is None:
        raise ElectraError(f"{model_path}: no tokenizer/ folder in the model; pass --tokenizer DIR")
    tok = load_tokenizer(path)
    check_tokenizer_fits(tok, vocab_size, path, model_path)
    if max_seq_len > max_positions:
        raise ElectraError(f"--max-seq-len {max_seq_len} exceeds the model's {max_positions} positions")
    tok.no_padding()
    tok.enable_truncation(max_seq_len, strategy="longest_first")
    return tok


def label_index(task: TaskDef) -> dict[str, int] | None:
    return None if task.regression else {label: i for i, label in enumerate(task.labels or ())}


def encode(tok: Tokenizer, examples: Sequence[Example], labels: dict[str, int] | None,
           regression: bool = False) -> list[dict[str, Any]]:
    """Token ids, segment ids and label of each example (the tokenizer's template: ``[CLS] a [SEP] (b [SEP])`` for
    BERT's), unpadded."""
    inputs = [e.texts[0] if len(e.texts) == 1 else tuple(e.texts) for e in examples]
    out = []
    for e, enc in zip(examples, tok.encode_batch(inputs)):
        f: dict[str, Any] = {"input_ids": enc.ids, "attention_mask": enc.attention_mask,
                             "token_type_ids": enc.type_ids}
        if e.label is not None:
            f["labels"] = float(e.label) if regression else labels[e.label]
        out.append(f)
    return out


# ---- augmentation (training only, off by default) ----------------------------------------------------------
def augment(ids: list[int], types: list[int], continuation: np.ndarray, special: set[int],
            rng: np.random.Generator, drop: float, swap: float) -> tuple[list[int], list[int]]:
    """Drop whole words and swap neighbouring words inside each segment; special tokens stay in place."""
    units: list[list[int]] = []  # positions of each unit: a special token, or a word with its continuation pieces
    for i, t in enumerate(ids):
        if units and t not in special and continuation[t] and units[-1] and ids[units[-1][0]] not in special:
            units[-1].append(i)
        else:
            units.append([i])
    is_word = [ids[u[0]] not in special for u in units]
    keep = [not w or rng.random() >= drop for w in is_word]
    if not any(k for k, w in zip(keep, is_word) if w):
        keep = [True] * len(units)
    units = [u for u, k in zip(units, keep) if k]
    is_word = [w for w, k in zip(is_word, keep) if k]
    i = 0
    while i < len(units) - 1:
        if is_word[i] and is_word[i + 1] and rng.random() < swap:
            units[i], units[i + 1] = units[i + 1], units[i]
            i += 2
        else:
            i += 1
    order = [p for u in units for p in u]
    return [ids[p] for p in order], [types[p] for p in order]  # swaps stay inside a segment


def continuation_mask(tok: Tokenizer) -> np.ndarray:
    """Per id, whether the piece continues a word (WordPiece's ``##piece``; with SentencePiece's Metaspace, a piece
    not starting with ``▁``); special tokens never do. A vocabulary marking no boundaries: every piece is a word."""
    if continuation_prefix(tok) is None:
        return np.zeros(tok.get_vocab_size(), dtype=bool)
    return ~word_start_table(tok)


class TrainBatches:
    """Shuffled (seed + epoch) batches of the training features, with optional augmentation."""

    def __init__(self, features: list[dict[str, Any]], batch_size: int, seed: int, pad_id: int = 0,
                 tok: Tokenizer | None = None, token_dropout: float = 0.0, word_swap: float = 0.0):
        self.features, self.batch_size, self.seed, self.pad_id = features, batch_size, seed, pad_id
        self.drop, self.swap = token_dropout, word_swap
        if (token_dropout or word_swap) and tok is not None:
            self.continuation = continuation_mask(tok)
            self.special = set(special_tokens(tok).all_ids)

    def __len__(self) -> int:
        return (len(self.features) + self.batch_size - 1) // self.batch_size

    def __call__(self, epoch: int) -> list[Batch]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.features))
        feats = [self.features[i] for i in order]
        if self.drop or self.swap:
            feats = [self._augment(f, rng) for f in feats]
        return batches(feats, self.batch_size, self.pad_id)

    def _augment(self, f: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        ids, types = augment(f["input_ids"], f["token_type_ids"], self.continuation, self.special, rng,
                             self.drop, self.swap)
        return {**f, "input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids)}


def batches(features: list[dict[str, Any]], batch_size: int, pad_id: int = 0) -> list[Batch]:
    return [collate(features[i:i + batch_size], pad_id) for i in range(0, len(features), batch_size)]


# ---- scoring -----------------------------------------------------------------------------------------------
def scores(model: TaskModel, features: list[dict[str, Any]], batch_size: int = 64, pad_id: int = 0,
           device: str | torch.device | None = None) -> np.ndarray:
    """Class probabilities (n, classes), or predicted values (n,) for regression."""
    out = []
    for _, o in run_inference(model, batches(features, batch_size, pad_id), device):
        logits = o["logits"]
        out.append(logits if logits.ndim == 1 else torch.softmax(logits, -1))
    return torch.cat(out).numpy()


def task_metrics(task: TaskDef, gold: np.ndarray, predicted: np.ndarray, num_labels: int) -> dict[str, float]:
    """All metrics of the task's kind; the task's official ones are named in ``task.report``."""
    if task.regression:
        return M.regression_metrics(gold, predicted)
    return M.classification_metrics(gold, predicted.argmax(-1), num_classes=num_labels)


def _gold(features: list[dict[str, Any]], regression: bool) -> np.ndarray:
    return np.array([f["labels"] for f in features], dtype=np.float64 if regression else np.int64)


# ---- fine-tuning -------------------------------------------------------------------------------------------
def finetune_task(task: TaskDef, model_path: str | Path, data_dir: str | Path, out_dir: str | Path,
                  config: FinetuneConfig, options: TaskOptions | None = None, resume: bool = False,
                  augmenter: Augmenter | None = None) -> dict[str, Any]:
    """Fine-tune one model on ``task``; returns the runner's results (best dev metrics etc.). ``resume``
    continues the run in ``out_dir`` from its last checkpoint (see :func:`electra.tasks.runner.finetune`).
    ``augmenter(examples, copies, seed)`` adds ``options.augment`` new versions of each training example (the
    checkpoint's generator and discriminator: :func:`electra.generation.augmentation.augmenter`)."""
    options = options or TaskOptions()
    set_seed(config.seed)
    encoder = load_encoder(model_path, random_init=options.random_init, seed=config.seed)
    enc_cfg = encoder.config
    tok = prepare_tokenizer(options.tokenizer, model_path, enc_cfg.vocab_size, options.max_seq_len,
                            enc_cfg.max_position_embeddings)
    train = load_split(task, data_dir, "train")
    dev = load_split(task, data_dir, "dev")
    if task.labels is None and not task.regression:  # custom: labels from the training data
        found = sorted({str(e.label) for e in train}, key=lambda s: (not _is_number(s), _num(s), s))
        task = dataclasses.replace(task, labels=tuple(found))
        dev = load_split(task, data_dir, "dev")  # re-read: checks dev labels against the training ones
    if options.train_limit:
        train = [train[i] for i in train_subset_indices(len(train), options.train_limit)]
    if options.dev_limit:
        dev = dev[: options.dev_limit]
    if options.augment:
        if augmenter is None:
            raise ElectraError("--augment: no augmenter given (electra.generation.augmentation.augmenter)")
        train = train + augmenter(train, options.augment, config.seed)
    swap = task.swap_pairs if options.swap_pairs is None else options.swap_pairs
    if swap:
        train = train + [dataclasses.replace(e, texts=e.texts[::-1]) for e in train if len(e.texts) == 2]
    labels = label_index(task)
    num_labels = 1 if task.regression else len(task.labels or ())
    pad_id = special_tokens(tok).pad_id
    train_f = encode(tok, train, labels, task.regression)
    dev_f = encode(tok, dev, labels, task.regression)
    gold = _gold(dev_f, task.regression)

    spec = {"task": task.name, "labels": list(task.labels or []), "regression": task.regression,
            "label_names": [task.label_name(label) for label in task.labels or ()],
            "max_seq_len": options.max_seq_len, "metric": task.metric, "report": list(task.report),
            "text_fields": [str(c) for c in task.labelled.text], "label_field": str(task.labelled.label),
            "pretrained": str(model_path), "random_init": options.random_init}
    torch.manual_seed(config.seed)
    model = TaskModel(encoder, ClassificationHead(enc_cfg, num_labels=num_labels, style=options.head,
                                                      pooling=options.pooling), spec)
    device = pick_device(config.device)

    def evaluate(m: TaskModel) -> dict[str, float]:
        return task_metrics(task, gold, scores(m, dev_f, pad_id=pad_id, device=device), num_labels)

    train_batches = TrainBatches(train_f, config.batch_size, config.seed, pad_id, tok, options.token_dropout,
                                 options.word_swap)
    tokenizer_dir = options.tokenizer or run_tokenizer_dir(model_path)
    results = finetune(model, train_batches, len(train_batches), evaluate, task.metric, out_dir, config,
                       tokenizer=tokenizer_dir, resume=resume)
    results.update(train_examples=len(train), dev_examples=len(dev), report=list(task.report))
    mismatched = [Path(data_dir) / n for n in task.files.get("dev_mismatched", ())]
    if any(f.is_file() for f in mismatched):  # MNLI: also score the best model on the mismatched dev set
        mm_f = encode(tok, load_split(task, data_dir, "dev_mismatched"), labels)
        mm_scores = scores(model, mm_f, pad_id=pad_id, device=device)
        results["dev_mismatched"] = task_metrics(task, _gold(mm_f, False), mm_scores, num_labels)
    write_text_atomic(Path(out_dir) / "results.json", json.dumps(results, indent=2) + "\n", "results")
    return results




def finetune_seeds(task: TaskDef, model_path: str | Path, data_dir: str | Path, out_dir: str | Path,
                   config: FinetuneConfig, options: TaskOptions | None = None, seeds: int = 1,
                   resume: bool = False, augmenter: Augmenter | None = None) -> dict[str, Any]:
    """``seeds`` fine-tunings (seed, seed+1, ...) into ``out_dir/seed-N``; median and spread of metrics."""
    check_values("finetune option", {"seeds": seeds}, {"seeds": at_least(1)})
    if seeds == 1:
        return finetune_task(task, model_path, data_dir, out_dir, config, options, resume, augmenter)
    runs = []
    for k in range(seeds):
        seed = config.seed + k
        runs.append(finetune_task(task, model_path, data_dir, Path(out_dir) / f"seed-{seed}",
                                  dataclasses.replace(config, seed=seed), options, resume, augmenter))
    names = sorted(runs[0]["best"])
    summary = {"task": task.name, "main_metric": task.metric, "report": list(task.report),
               "seeds": [config.seed + k for k in range(seeds)],
               "runs": [str(Path(out_dir) / f"seed-{config.seed + k}") for k in range(seeds)],
               "best": {m: M.median_and_spread([r["best"][m] for r in runs]) for m in names}}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _num(s: str) -> float:
    return float(s) if _is_number(s) else 0.0


# ---- evaluation and prediction with one run or an ensemble -------------------------------------------------
def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories; a multi-seed directory expands into its ``seed-N`` runs."""
    out: list[Path] = []
    for p in map(Path, paths):
        seeds = sorted(d for d in p.glob("seed-*") if (d / BEST_DIR).is_dir())
        out.extend(seeds if seeds and not (p / BEST_DIR).is_dir() else [p])
    return out


def single_run(path: str | Path) -> Path:
    path = Path(path)
    runs = expand_runs([path])
    if len(runs) > 1:
        raise ElectraError(f"{path}: holds {len(runs)} seed runs; pass one ({runs[0]}) or --ensemble {path}")
    resolve_run(path)
    return path


def ensemble_scores(runs: Sequence[str | Path], examples: Sequence[Example], device: str = "auto",
                    load: RunLoader | None = None) -> tuple[np.ndarray, dict[str, Any], TaskDef]:
    """Average of the runs' probabilities (or values) on ``examples``; all runs must share labels. ``load``
    gives each run's model another way than PyTorch fp32 (``electra predict --backend onnx``: an onnxruntime
    session, see :mod:`electra.inference`)."""
    total, first_spec = None, None
    dev = pick_device(device)
    for run in runs:
        spec = read_task_meta(run)["spec"]
        if first_spec is None:
            first_spec = spec
        elif (spec["labels"], spec["regression"]) != (first_spec["labels"], first_spec["regression"]):
            raise ElectraError(f"{run}: its labels {spec['labels']} differ from {runs[0]}'s "
                               f"{first_spec['labels']}: cannot ensemble")
        model = load(run)[0] if load is not None else load_task_model(run, dev)
        tok = prepare_tokenizer(None, run, model.encoder.config.vocab_size, spec["max_seq_len"],
                                model.encoder.config.max_position_embeddings)
        feats = encode(tok, [dataclasses.replace(e, label=None) for e in examples], None)
        s = scores(model, feats, pad_id=special_tokens(tok).pad_id, device=dev)
        total = s if total is None else total + s
    assert total is not None and first_spec is not None
    return total / len(runs), first_spec, task_from_spec(first_spec)




def _check_task(requested: str | None, spec: dict[str, Any], run: Path) -> None:
    if requested and requested != spec["task"]:
        other = get_task(requested) if requested != "custom" else None
        same = other is not None and (list(other.labels or []), other.regression) == (spec["labels"],
                                                                                       spec["regression"])
        if not same:
            raise ElectraError(f"{run}: was fine-tuned on {spec['task']}, whose labels differ from "
                               f"{requested}'s")


def evaluate_runs(runs: Sequence[str | Path], data_dir: str | Path, split: str = "dev",
                  task: str | None = None, device: str = "auto") -> dict[str, Any]:
    """Metrics of one run (or the ensemble of several) on a labelled split of ``data_dir``."""
    runs = expand_runs(runs)
    spec = read_task_meta(runs[0])["spec"]
    _check_task(task, spec, runs[0])
    taskdef = task_from_spec(spec) if not task or task == spec["task"] else get_task(task)
    taskdef = dataclasses.replace(taskdef, labels=tuple(spec["labels"]) or taskdef.labels)
    examples = load_split(taskdef, data_dir, split)
    if any(e.label is None for e in examples):
        raise ElectraError(f"{data_dir}: the {split} split has no labels to evaluate against")
    avg, spec, _ = ensemble_scores(runs, examples, device)
    labels = label_index(taskdef)
    gold = np.array([float(e.label) if taskdef.regression else labels[e.label] for e in examples])
    result: dict[str, Any] = task_metrics(taskdef, gold, avg, max(1, len(spec["labels"])))
    if not taskdef.regression:  # per-class scores and the confusion matrix (rows: gold, columns: predicted)
        k = len(spec["labels"])
        prf = M.precision_recall_f1(gold, avg.argmax(-1), k)
        result["per_class"] = {label: {m: float(prf[m][i]) for m in ("precision", "recall", "f1", "support")}
                               for i, label in enumerate(spec["labels"])}
        result["confusion_matrix"] = M.confusion_matrix(gold, avg.argmax(-1), k).tolist()
    return {"task": taskdef.name, "split": split, "examples": len(examples), "runs": len(runs),
            "main_metric": spec["metric"], **result}


def predict_file(runs: Sequence[str | Path], input_file: str | Path, out_file: str | Path,
                 task: str | None = None, device: str = "auto", load: RunLoader | None = None,
                 names: bool = False) -> int:
    """Write ``index<TAB>prediction`` (GLUE submission format), one row per input row, in order; ``names``:
    the labels' names instead (SST-2: negative / positive; :func:`label_names`), for people, not the GLUE
    server."""
    runs = expand_runs(runs)
    spec = read_task_meta(runs[0])["spec"]
    _check_task(task, spec, runs[0])
    taskdef = task_from_spec(spec)
    examples = read_examples(taskdef, input_file)
    avg, spec, taskdef = ensemble_scores(runs, examples, device, load)
    shown = label_names(spec) if names else spec["labels"]
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", encoding="utf-8") as f:
        f.write("index\tprediction\n")
        for e, s in zip(examples, avg):
            if taskdef.regression:
                value = float(np.clip(s, 0.0, 5.0)) if taskdef.name == "stsb" else float(s)
                f.write(f"{e.guid}\t{value:.3f}\n")
            else:
                f.write(f"{e.guid}\t{shown[int(np.argmax(s))]}\n")
    return len(examples)
