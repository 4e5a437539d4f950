"""Tiny models of every kind for the export, inference and serving tests: a pre-trained checkpoint and
fine-tuned-run folders (classification, regression, QA joint + answerability, QA independent, tagging) built
directly from it with non-trivial head weights (no training: these tests check plumbing and parity)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from electra.data.squad import WindowConfig
from electra.tasks.heads import ClassificationHead
from electra.tasks.qa import SpanQAHead
from electra.tasks.runner import TaskModel, load_encoder, run_tokenizer_dir, save_task_model
from electra.tasks.tagging import TokenClassificationHead
from qa_fixtures import tiny_checkpoint

ZH = "孙悟空大闹天宫"
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def _save(ckpt: Path, out: Path, head: torch.nn.Module, spec: dict, seed: int) -> Path:
    encoder = load_encoder(ckpt)
    torch.manual_seed(seed)
    for p in head.parameters():  # larger than the 0.02 init, so outputs differ clearly between inputs
        torch.nn.init.normal_(p, std=0.5)
    return save_task_model(TaskModel(encoder, head, spec), out / "best", run_tokenizer_dir(ckpt))


def tiny_models(root: Path) -> dict[str, Path]:
    """``{"pretrained", "classification", "regression", "qa", "qa_independent", "tagging"}`` -> folder."""
    ckpt = tiny_checkpoint(root, extra_text=[ZH, "hello world banana [MASK]"])
    cfg = load_encoder(ckpt).config
    runs = {"pretrained": ckpt}
    runs["classification"] = _save(ckpt, root / "cls", ClassificationHead(cfg, num_labels=3, style="transformers"),
                                   {"task": "mnli", "labels": ["contradiction", "entailment", "neutral"],
                                    "regression": False, "max_seq_len": 128}, 1).parent
    runs["regression"] = _save(ckpt, root / "reg", ClassificationHead(cfg, num_labels=1),
                               {"task": "stsb", "labels": [], "regression": True, "max_seq_len": 128}, 2).parent
    window = asdict(WindowConfig(48, 16, 16))
    runs["qa"] = _save(ckpt, root / "qa", SpanQAHead(cfg, joint=True, answerable=True, beam_size=5, inner_size=32),
                       {"task": "squad2", "window": window, "n_best": 5, "max_answer_length": 10,
                        "na_threshold": 100.0}, 3).parent
    runs["qa_independent"] = _save(ckpt, root / "qai", SpanQAHead(cfg, joint=False),
                                   {"task": "squad1", "window": window, "n_best": 5, "max_answer_length": 10}, 4).parent
    runs["tagging"] = _save(ckpt, root / "tag", TokenClassificationHead(cfg, num_labels=len(TAGS)),
                            {"task": "conll2003", "labels": TAGS, "max_seq_length": 128, "iob2": True}, 5).parent
    return runs
