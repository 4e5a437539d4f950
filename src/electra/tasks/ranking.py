"""Supervised rerankers: a cross-encoder ``[CLS] context [SEP] candidate [SEP]`` -> one scalar per candidate,
trained over whole lists with :mod:`electra.tasks.runner`.

Two losses over the softmax of a list's scores (the head's ``loss``):

listwise (ASR n-best, MT candidates; Lee et al. 2021, DrNMT)
    KL(target || softmax(scores)) with ``target = softmax(-cost / T)``. Costs are the hypothesis' WER (ASR) or
    ``-sentence-BLEU / 100`` (MT), min-max normalised within each list to [0, 1] before the temperature
    (``T`` = ``--temperature``, default 0.1), so one ``T`` suits both; a list whose costs are all equal
    is uniform (and teaches nothing).
multiple choice (MuTual, generic lists with a ``label``)
    cross-entropy on the gold candidate (BERT-MC's recipe).

Tasks: ``asr-nbest`` (HyPoradise JSON), ``mt-rerank`` (a WMT folder: source, ``ref.A``, ``system-outputs/``),
``mutual`` (MuTual JSONL) and ``ranking`` (the generic JSONL of :mod:`electra.data.ranking`). A batch holds
whole lists: ``--batch-size`` counts candidates (sequences), so lists per batch = batch size // list length.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from electra.data import ranking as R
from electra.errors import ElectraError
from electra.files import write_text_atomic
from electra.metrics.ranking import rank, ranking_metrics
from electra.metrics.speech import wer, word_errors
from electra.metrics.text import bleu, sentence_bleu
from electra.tasks.classification import prepare_tokenizer
from electra.tasks.heads import RankingHead
from electra.tasks.runner import (
    Batch,
    FinetuneConfig,
    TaskModel,
    finetune,
    load_encoder,
    run_tokenizer_dir,
    set_seed,
    train_subset_indices,
)
from electra.tokenization import encode_candidates, special_tokens

RANKING_TASKS = ("asr-nbest", "mt-rerank", "mutual", "ranking")


def listwise_target(costs: Sequence[float], temperature: float) -> list[float]:
    """``softmax(-c / T)`` of the costs min-max normalised to [0, 1] within the list."""
    c = np.asarray(costs, dtype=np.float64)
    span = c.max() - c.min()
    z = -(c - c.min()) / span / temperature if span > 0 else np.zeros_like(c)
    p = np.exp(z - z.max())
    return (p / p.sum()).tolist()


# ---- data -----------------------------------------------------------------------------------------------------
@dataclass
class RankingData:
    train: list[R.RankItem]
    dev: list[R.RankItem]
    loss: str
    metric: str  # the dev metric: "r1" (labels), "wer" (asr), "bleu" (mt), "mean_cost" (generic costs)


def _split(items: list[R.RankItem], fraction: float) -> tuple[list[R.RankItem], list[R.RankItem]]:
    n_dev = max(1, int(round(len(items) * fraction)))
    if n_dev >= len(items):
        raise ElectraError(f"--dev-fraction {fraction}: leaves no training lists out of {len(items)}")
    return items[:-n_dev], items[-n_dev:]  # contiguous: the last segments (documents stay together)


def _pick(folder: Path, patterns: Sequence[str]) -> Path | None:
    for pat in patterns:
        found = sorted(folder.glob(pat))
        if found:
            return found[0]
    return None


def load_ranking_data(task: str, data: str | Path, dev_file: str | Path | None = None, dev_fraction: float = 0.1
                      ) -> RankingData:
    """Training and dev lists of ``task`` from a file or folder (see the module docstring)."""
    data = Path(data)
    if task == "mt-rerank":
        return _load_mt(data, dev_fraction)
    reader = {"asr-nbest": R.read_hyporadise, "mutual": R.read_mutual, "ranking": R.read_jsonl}[task]
    ext = "*.json" if task == "asr-nbest" else "*.jsonl"
    if data.is_dir():
        train_f = _pick(data, [f"train{ext[1:]}", f"train*{ext[1:]}"])
        dev_f = Path(dev_file) if dev_file else _pick(data, [f"dev{ext[1:]}", f"*dev*{ext[1:]}", f"valid*{ext[1:]}"])
        if train_f is None:
            raise ElectraError(f"{data}: no train{ext[1:]} file in this folder")
    else:
        train_f, dev_f = data, Path(dev_file) if dev_file else None
    train = reader(train_f)
    dev = reader(dev_f) if dev_f is not None else None
    if dev is None:
        train, dev = _split(train, dev_fraction)
    if task == "asr-nbest":
        dev_ids = {it.id for it in dev}
        train = [it for it in train if not it.id or it.id not in dev_ids]  # ATIS: 39 ids in train and test
        for name, its in (("train", train), ("dev", dev)):
            missing = [i for i, it in enumerate(its) if not it.references]
            if missing:
                raise ElectraError(f"asr-nbest {name}: item {missing[0]} has no reference (\"output\")")
        for it in (*train, *dev):
            it.costs = _wer_costs(it)
        return RankingData(train, dev, "listwise", "wer")
    if task == "mutual" or all(it.label is not None for it in (*train, *dev)):
        for name, its in (("train", train), ("dev", dev)):
            if any(it.label is None for it in its):
                raise ElectraError(f"{task} {name}: every list needs its gold \"label\" (or \"answers\")")
        return RankingData(train, dev, "choice", "r1")
    for name, its in (("train", train), ("dev", dev)):
        bad = next((i for i, it in enumerate(its) if it.costs is None), None)
        if bad is not None:
            raise ElectraError(f"ranking {name}: list {bad} has neither \"costs\" nor \"label\"")
    return RankingData(train, dev, "listwise", "mean_cost")


def _wer_costs(item: R.RankItem) -> list[float]:
    out = []
    for c in item.candidates:
        e, n = word_errors(item.references[0], c)
        out.append(e / max(n, 1))
    return out


def _load_mt(folder: Path, dev_fraction: float) -> RankingData:
    if not folder.is_dir():
        raise ElectraError(f"{folder}: mt-rerank needs a folder with a source (*.src.*), a reference (*.ref.A.*) "
                           "and system-outputs/")
    src, ref = _pick(folder, ["*.src.*"]), _pick(folder, ["*.ref.A.*", "*.ref*"])
    systems = folder / "system-outputs"
    if src is None or ref is None or not systems.is_dir():
        raise ElectraError(f"{folder}: expected *.src.*, *.ref.A.* and system-outputs/ in this folder")
    items, _ = R.read_mt(src, [systems], [ref])
    for it in items:
        it.costs = [-sentence_bleu(c, it.references) / 100 for c in it.candidates]
    train, dev = _split(items, dev_fraction)
    return RankingData(train, dev, "listwise", "bleu")


# ---- features and batches ----------------------------------------------------------------------------------------
def encode_lists(tok: Any, items: Sequence[R.RankItem], max_len: int, loss: str, temperature: float
                 ) -> list[dict[str, Any]]:
    """Per list: the candidates' token ids (context first, cut from its left), and the target or label."""
    out = []
    for it in items:
        encs = encode_candidates(tok, it.candidates, [it.context] * len(it.candidates) if it.context else None,
                                 max_len)
        f: dict[str, Any] = {"ids": [e.ids for e in encs], "types": [e.type_ids for e in encs]}
        if loss == "listwise" and it.costs is not None:
            f["target"] = listwise_target(it.costs, temperature)
        elif it.label is not None:
            f["label"] = it.label
        out.append(f)
    return out


def collate_lists(lists: Sequence[dict[str, Any]], pad_id: int = 0) -> Batch:
    """(lists x max candidates) sequences, padded with ``pad_id``; absent candidates are dummies of two tokens (the
    first candidate's first and last: ``[CLS] [SEP]``), masked out of the list."""
    k = max(len(f["ids"]) for f in lists)
    rows, types, mask = [], [], []
    for f in lists:
        for j in range(k):
            if j < len(f["ids"]):
                rows.append(f["ids"][j])
                types.append(f["types"][j])
            else:
                rows.append(f["ids"][0][:1] + f["ids"][0][-1:])
                types.append([0, 0])
            mask.append(1 if j < len(f["ids"]) else 0)
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    att = np.zeros_like(ids)
    tt = np.zeros_like(ids)
    for i, (r, t) in enumerate(zip(rows, types)):
        ids[i, :len(r)], att[i, :len(r)], tt[i, :len(t)] = r, 1, t
    batch: Batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(att),
                    "token_type_ids": torch.from_numpy(tt),
                    "candidate_mask": torch.tensor(mask, dtype=torch.long).view(len(lists), k)}
    if all("target" in f for f in lists):
        batch["target"] = torch.tensor([f["target"] + [0.0] * (k - len(f["target"])) for f in lists])
    elif all("label" in f for f in lists):
        batch["labels"] = torch.tensor([f["label"] for f in lists])
    return batch


class ListBatches:
    """Shuffled (seed + epoch) batches of whole lists, ``lists_per_batch`` each."""

    def __init__(self, features: list[dict[str, Any]], lists_per_batch: int, seed: int, pad_id: int = 0):
        self.features, self.per, self.seed, self.pad_id = features, max(1, lists_per_batch), seed, pad_id

    def __len__(self) -> int:
        return math.ceil(len(self.features) / self.per)

    def __call__(self, epoch: int) -> list[Batch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.features))
        feats = [self.features[i] for i in order]
        return [collate_lists(feats[i:i + self.per], self.pad_id) for i in range(0, len(feats), self.per)]


@torch.inference_mode()
def list_scores(model: TaskModel, features: list[dict[str, Any]], lists_per_batch: int = 8, pad_id: int = 0
                ) -> list[list[float]]:
    """The model's score of every candidate of every list."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[float]] = []
    try:
        for i in range(0, len(features), lists_per_batch):
            chunk = features[i:i + lists_per_batch]
            batch = {k: v.to(device) for k, v in collate_lists(chunk, pad_id).items() if k not in ("target", "labels")}
            logits = model(batch)["logits"].float().cpu().numpy()
            out.extend(row[:len(f["ids"])].tolist() for row, f in zip(logits, chunk))
    finally:
        model.train(was)
    return out


def list_metrics(metric: str, items: Sequence[R.RankItem], scores: Sequence[Sequence[float]]) -> dict[str, float]:
    """Dev metrics of choosing each list's top-scored candidate (ties: the lower index)."""

    rankings = [rank(s) for s in scores]
    choice = [r[0] for r in rankings]
    if metric == "r1":
        m = ranking_metrics(rankings, [int(it.label) for it in items])  # type: ignore[arg-type]
        return {"r1": m["r1"], "r2": m["r2"], "mrr": m["mrr"]}
    if metric == "wer":

        refs = [it.references[0] for it in items]
        return {"wer": wer(refs, [it.candidates[c] for it, c in zip(items, choice)]),
                "one_best_wer": wer(refs, [it.candidates[0] for it in items])}
    if metric == "bleu":

        hyp = [it.candidates[c] for it, c in zip(items, choice)]
        return {"bleu": bleu(hyp, [[it.references[0] for it in items]])["score"]}
    return {"mean_cost": float(np.mean([it.costs[c] for it, c in zip(items, choice)]))}  # type: ignore[index]


# ---- fine-tuning ----------------------------------------------------------------------------------------------
@dataclass
class RankingOptions:
    max_seq_len: int = 256
    temperature: float = 0.1
    dev_fraction: float = 0.1
    train_limit: int | None = None
    dev_limit: int | None = None
    random_init: bool = False
    tokenizer: str | None = None


def finetune_ranking(task: str, model_path: str | Path, data: str | Path, out_dir: str | Path,
                     config: FinetuneConfig, options: RankingOptions, dev_file: str | Path | None = None,
                     resume: bool = False) -> dict[str, Any]:
    """Fine-tune a cross-encoder reranker on ``task``; the best dev model goes to ``out_dir/best``."""

    if task not in RANKING_TASKS:
        raise ElectraError(f"--task {task!r}: expected one of {', '.join(RANKING_TASKS)}")
    if options.temperature <= 0:
        raise ElectraError(f"--temperature {options.temperature}: must be > 0")
    set_seed(config.seed)
    rd = load_ranking_data(task, data, dev_file, options.dev_fraction)
    train, dev = rd.train, rd.dev
    if not train or not dev:
        raise ElectraError(f"{task}: {'no training lists' if not train else 'no dev lists'} in {data}")
    if options.train_limit:
        train = [train[i] for i in train_subset_indices(len(train), options.train_limit)]
    if options.dev_limit:
        dev = dev[: options.dev_limit]
    encoder = load_encoder(model_path, random_init=options.random_init, seed=config.seed)
    cfg = encoder.config
    tok = prepare_tokenizer(options.tokenizer, model_path, cfg.vocab_size, options.max_seq_len,
                            cfg.max_position_embeddings)
    tok.no_truncation()  # lists are cut by encode_candidates (context from the left)
    pad_id = special_tokens(tok).pad_id
    train_f = encode_lists(tok, train, options.max_seq_len, rd.loss, options.temperature)
    dev_f = encode_lists(tok, dev, options.max_seq_len, rd.loss, options.temperature)
    width = max(len(f["ids"]) for f in train_f)
    per = max(1, config.batch_size // width)
    spec = {"task": task, "loss": rd.loss, "metric": rd.metric, "max_seq_len": options.max_seq_len,
            "temperature": options.temperature, "pretrained": str(model_path), "lists_per_batch": per,
            "random_init": options.random_init}
    torch.manual_seed(config.seed)
    model = TaskModel(encoder, RankingHead(cfg, loss=rd.loss), spec)

    def evaluate(m: TaskModel) -> dict[str, float]:
        return list_metrics(rd.metric, dev, list_scores(m, dev_f, max(1, 64 // width), pad_id))

    batches = ListBatches(train_f, per, config.seed, pad_id)
    results = finetune(model, batches, len(batches), evaluate, rd.metric, out_dir, config,
                       tokenizer=options.tokenizer or run_tokenizer_dir(model_path),
                       greater_is_better=rd.metric not in ("wer", "mean_cost"), resume=resume)
    results.update(train_lists=len(train), dev_lists=len(dev), lists_per_batch=per,
                   examples_seen=results["steps"] * per)

    write_text_atomic(Path(out_dir) / "results.json", json.dumps(results, indent=2) + "\n", "results")
    return results
