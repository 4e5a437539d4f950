"""Every fine-tuning task in one table.

:data:`TASKS` maps each ``--task`` name to a :class:`Task`: its family and what is its own (the metric that picks
the best dev step and the metrics reported, the default epochs and length). A :class:`Family` is what its tasks
share: the head (whose ``kind`` names the family and whose ``output_names()`` are a run's ONNX outputs), how a run
is fine-tuned, evaluated and predicted, and how it is served (the pipeline, the HTTP endpoint and its section of
the page). ``electra finetune/evaluate/predict``, ``electra serve`` and the page dispatch through these tables,
``electra export --format onnx`` through the head, so a new task of an existing family is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from electra.data import glue
from electra.errors import ElectraError
from electra.tasks import options, qa, ranking, tagging
from electra.tasks.heads import ClassificationHead, Head, RankingHead, SpanQAHead, TokenClassificationHead
from electra.tasks.runner import read_task_meta

# Each entry point takes the parsed options (an argparse.Namespace or any object with the attributes):
Finetune = Callable[..., dict[str, Any]]  # (options, FinetuneConfig, augmenter) -> results (best dev metrics, ...)
Evaluate = Callable[[Any], dict[str, Any]]  # options -> metrics
Predict = Callable[..., int]  # (options, run loader or None) -> predictions written


@dataclass(frozen=True)
class Family:
    """What every task of one kind shares."""

    head: type[Head]  # its kind names the family; its output_names() are an ONNX export's outputs
    finetune: Finetune
    evaluate: Evaluate | None  # None: the run's dev metrics are in RUN/results.json only
    predict: Predict | None
    pipeline: str  # the serving pipeline (electra.pipelines), served at POST /v1/<pipeline> (a section of the page)

    @property
    def name(self) -> str:
        """The kind of a run of this family: onnx.json, /info, the page."""
        return self.head.kind

    @property
    def endpoint(self) -> str:
        return f"/v1/{self.pipeline}"


@dataclass(frozen=True)
class Task:
    """One ``--task`` name."""

    name: str
    family: Family
    metric: str  # picks the best dev evaluation
    report: tuple[str, ...]  # printed after fine-tuning and by `electra evaluate`
    epochs: float  # default --epochs
    max_seq_len: int | None  # default --max-seq-len (None: the family picks it; QA: the task's, within the model's)


CLASSIFICATION = Family(ClassificationHead, options.finetune_classification, options.evaluate_classification,
                        options.predict_classification, "classify")
QA = Family(SpanQAHead, options.finetune_qa, options.evaluate_qa, options.predict_qa, "answer")
TAGGING = Family(TokenClassificationHead, options.finetune_tagging, options.evaluate_tagging, options.predict_tagging,
                 "tag")
RANKING = Family(RankingHead, options.finetune_ranking, None, None, "rank")
FAMILIES: dict[str, Family] = {f.name: f for f in (CLASSIFICATION, QA, TAGGING, RANKING)}


def _glue_entry(t: glue.TaskDef) -> Task:
    return Task(t.name, CLASSIFICATION, t.metric, t.report, t.epochs, 128)


TASKS: dict[str, Task] = {
    **{name: _glue_entry(t) for name, t in glue.TASKS.items()},
    "custom": Task("custom", CLASSIFICATION, "acc", ("acc",), 3.0, 128),
    **{name: Task(name, QA, t.main_metric, (t.main_metric,), 2.0, None) for name, t in qa.TASKS.items()},
    "conll2003": Task("conll2003", TAGGING, "f1", ("f1",), 3.0, 128),
    "tags": Task("tags", TAGGING, "f1", ("f1",), 3.0, 128),
    "asr-nbest": Task("asr-nbest", RANKING, "wer", ("wer",), 2.0, 64),
    "mt-rerank": Task("mt-rerank", RANKING, "mean_cost", ("mean_cost",), 2.0, 128),
    "mutual": Task("mutual", RANKING, "r1", ("r1",), 2.0, 256),
    "ranking": Task("ranking", RANKING, "mean_cost", ("mean_cost",), 2.0, 256),
}
assert set(qa.TASKS) | set(tagging.TASKS) | set(ranking.RANKING_TASKS) <= set(TASKS)


def get_task(name: str) -> Task:
    """The registry entry of ``--task name``; an unknown name is a one-line error listing them all."""
    if name not in TASKS:
        raise ElectraError(f"--task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]


def family_of_head(head_class: str) -> Family:
    """The family of a run whose head is ``head_class`` (as written in its ``task.json``)."""
    for family in FAMILIES.values():
        if family.head.__name__ == head_class:
            return family
    raise ElectraError(f"head {head_class!r} belongs to no task family ({', '.join(FAMILIES)})")


def family_of_run(path: str | Path) -> Family:
    """The family of a fine-tuned run (read from its ``task.json``, without loading weights)."""
    head = read_task_meta(path).get("head")
    return family_of_head(head.get("class") if isinstance(head, dict) else None)


def task_of_run(path: str | Path) -> str | None:
    """The ``--task`` a fine-tuned run was trained on."""
    return read_task_meta(path).get("spec", {}).get("task")
