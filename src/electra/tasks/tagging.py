"""Token tagging (NER and other BIO/BIOES tasks) from CoNLL column files.

google-research/electra's ``tagging_tasks.py``: one linear layer over each token's hidden state, the label
on each word's first sub-token, cross-entropy over those positions. Scored with entity-level
precision/recall/F1 as seqeval computes them (``electra.metrics.tagging``).
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from electra.config import Rule, at_least, one_of, validate
from electra.data.conll import Sentence, TagFeature, label_list, make_tag_features, read_conll, to_iob2
from electra.errors import ElectraError
from electra.files import write_text_atomic
from electra.metrics.tagging import entity_scores
from electra.tasks.heads import TokenClassificationHead
from electra.tasks.runner import (
    Batch,
    FinetuneConfig,
    RunLoader,
    TaskModel,
    check_tokenizer_fits,
    collate,
    finetune,
    load_encoder,
    load_run_with_tokenizer,
    official_hparams,
    run_inference,
    run_tokenizer_dir,
)
from electra.tokenization import load_tokenizer


@dataclass(frozen=True)
class TagTask:
    name: str
    iob2: bool  # rewrite IOB1 labels to BIO when reading
    files: tuple[str, str, str] | None  # train, dev, test file names inside --data, if a directory


TASKS: dict[str, TagTask] = {
    "conll2003": TagTask("conll2003", True, ("train.txt", "valid.txt", "test.txt")),
    "tags": TagTask("tags", False, None),
}


def get_task(name: str) -> TagTask:
    if name not in TASKS:
        raise ElectraError(f"--task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]


def _read(path: str | Path, task: TagTask, unlabelled: bool = False) -> list[Sentence]:
    sentences = read_conll(path, unlabelled=unlabelled)
    if task.iob2:
        for s in sentences:
            s.labels = to_iob2(s.labels)
    return sentences


def batches(features: list[TagFeature], batch_size: int, training: bool, seed: int | None = None
            ) -> Iterator[Batch]:
    order = list(range(len(features)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    for i in range(0, len(order), batch_size):
        chunk = [features[j] for j in order[i:i + batch_size]]
        dicts = [{"input_ids": f.input_ids, "attention_mask": [1] * len(f.input_ids), "feature_index": j}
                 for f, j in zip(chunk, order[i:i + batch_size])]
        if training:
            for d, f in zip(dicts, chunk):
                d["labels"] = f.labels
        yield collate(dicts, chunk[0].pad_id)


def predict_labels(model: TaskModel, sentences: list[Sentence], tokenizer: Any, batch_size: int = 64
                   ) -> list[list[str]]:
    """One predicted label per word of each sentence."""
    labels = model.spec["labels"]
    label_ids = {label: i for i, label in enumerate(labels)}
    features = make_tag_features(sentences, tokenizer, label_ids, model.spec.get("max_seq_length", 128))
    out: list[list[str]] = [[] for _ in sentences]
    pieces: dict[tuple[int, int], list[str]] = {}
    for batch, res in run_inference(model, batches(features, batch_size, False)):
        pred = res["logits"].argmax(-1)
        for row, fi in enumerate(batch["feature_index"].tolist()):
            f = features[fi]
            pieces[(f.sentence_index, f.word_offset)] = [labels[int(pred[row, t])] for t in f.first_tokens]
    for (si, _), labs in sorted(pieces.items()):
        out[si].extend(labs)
    return out


def score(model: TaskModel, sentences: list[Sentence], tokenizer: Any, batch_size: int = 64) -> dict[str, Any]:
    pred = predict_labels(model, sentences, tokenizer, batch_size)
    return entity_scores([s.labels for s in sentences], pred)


@dataclass
class TagParams:
    task: str
    model: str
    out: str
    train: str
    dev: str
    max_seq_length: int = 128
    max_train_sentences: int | None = None
    max_dev_sentences: int | None = None
    random_init: bool = False
    tokenizer: str | None = None  # default: the checkpoint's tokenizer/

    KIND: ClassVar[str] = "tagging option"
    RULES: ClassVar[dict[str, Rule]] = {
        "task": one_of(*TASKS), "max_seq_length": at_least(3), "max_train_sentences": at_least(1).optional(),
        "max_dev_sentences": at_least(1).optional(),
        "train": Rule("an existing file", lambda v: Path(v).is_file()),
        "dev": Rule("an existing file", lambda v: Path(v).is_file()),
    }

    def __post_init__(self) -> None:
        validate(self)


def resolve_files(task: TagTask, data: str | Path, split: str = "train") -> Path:
    """A task's file in a data directory (``split``: train, dev or test), or ``data`` itself if a file."""
    data = Path(data)
    if data.is_file():
        return data
    if task.files is None:
        raise ElectraError(f"{data}: give a CoNLL file for --task {task.name}")
    name = dict(zip(("train", "dev", "test"), task.files))[split]
    if not (data / name).is_file():
        raise ElectraError(f"{data}: no {name} ({split} split of {task.name})")
    return data / name


def finetune_tagging(params: TagParams, config: FinetuneConfig | None = None, resume: bool = False
                     ) -> dict[str, Any]:
    """Fine-tune on a tagging task; the best dev model (entity F1) goes to ``out/best``; ``resume`` continues
    the run in ``out`` from its last checkpoint."""
    task = get_task(params.task)
    encoder = load_encoder(params.model, params.random_init)
    if config is None:
        config = FinetuneConfig(**official_hparams(encoder.config), epochs=3.0, batch_size=32)
    tok_dir = params.tokenizer or run_tokenizer_dir(params.model)
    if tok_dir is None:
        raise ElectraError(f"{params.model}: checkpoint has no tokenizer/ folder (give --tokenizer)")
    tokenizer = load_tokenizer(tok_dir)
    check_tokenizer_fits(tokenizer, encoder.config.vocab_size, tok_dir, params.model)
    train = _read(params.train, task)[:params.max_train_sentences]
    dev = _read(params.dev, task)[:params.max_dev_sentences]
    labels = label_list(train)
    unseen = sorted({label for s in dev for label in s.labels} - set(labels))
    if unseen:
        print(f"electra: warning: {params.dev}: labels not in training data: {', '.join(unseen[:5])}",
              file=sys.stderr)
    max_len = min(params.max_seq_length, encoder.config.max_position_embeddings)
    label_ids = {label: i for i, label in enumerate(labels)}
    feats = make_tag_features(train, tokenizer, label_ids, max_len)
    spec = {"task": task.name, "labels": labels, "max_seq_length": max_len, "iob2": task.iob2}
    torch.manual_seed(config.seed)  # the new head's weights: reproducible whatever ran before in this process
    model = TaskModel(encoder, TokenClassificationHead(encoder.config, num_labels=len(labels)), spec)

    def evaluate(m: TaskModel) -> dict[str, float]:
        res = score(m, dev, tokenizer)
        return {k: float(v) for k, v in res.items() if k != "types"}

    print(f"{task.name}: {len(train)} train sentences -> {len(feats)} pieces, {len(dev)} dev sentences, "
          f"{len(labels)} labels", file=sys.stderr)
    results = finetune(model, lambda epoch: batches(feats, config.batch_size, True, config.seed + epoch),
                       math.ceil(len(feats) / config.batch_size), evaluate, "f1", params.out, config,
                       tokenizer=tok_dir, resume=resume)
    results["best_types"] = score(model, dev, tokenizer)["types"]
    write_text_atomic(Path(params.out) / "results.json", json.dumps(results, indent=2) + "\n", "results")
    return results


def load_tagging_run(run: str | Path) -> tuple[TaskModel, Any]:
    return load_run_with_tokenizer(run, TASKS, "tagging")


def evaluate_file(run: str | Path, data: str | Path) -> dict[str, Any]:
    model, tokenizer = load_tagging_run(run)
    sentences = _read(data, get_task(model.spec["task"]))
    return score(model, sentences, tokenizer)


def predict_file(run: str | Path, data: str | Path, out: str | Path, load: RunLoader | None = None) -> int:
    """Write ``word<TAB>predicted label`` lines (blank line between sentences); returns the sentence count.
    ``load(run)`` gives the model and tokenizer another way than PyTorch fp32 (``--backend onnx``: see
    :func:`electra.inference.load_task_runner`)."""
    model, tokenizer = load(run) if load is not None else load_tagging_run(run)
    sentences = read_conll(data, unlabelled=True)
    pred = predict_labels(model, sentences, tokenizer)
    with open(out, "w", encoding="utf-8") as f:
        for s, labs in zip(sentences, pred):
            f.writelines(f"{w}\t{label}\n" for w, label in zip(s.words, labs))
            f.write("\n")
    return len(sentences)
