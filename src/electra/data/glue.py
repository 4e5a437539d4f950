"""Readers for sentence(-pair) classification and regression data: GLUE tsv, ChnSentiCorp, LCQMC, ATEC, and
the user's own CSV/TSV/JSONL. Every problem is reported as one line naming the file and line.

Each task has a *labelled* layout (train/dev) and an *unlabelled* one (GLUE test files: an ``index`` column
and no label); :func:`read_examples` picks the layout from the file's header.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from electra.errors import ElectraError

Column = str | int  # a header name, or a 0-based position in a file without header


@dataclass(frozen=True)
class Example:
    texts: tuple[str, ...]  # one text, or a pair
    label: str | float | None  # None in unlabelled files
    guid: str  # the id written in submissions (the file's index column, else the row number)
    source: str = ""  # "file:line", for messages


@dataclass(frozen=True)
class Layout:
    """Where texts, label and id sit in a file: by header name, or by position when ``header`` is False."""

    header: bool
    text: tuple[Column, ...]
    label: Column | None = None
    id: Column | None = None
    columns: int | None = None  # expected column count of a headerless file


@dataclass(frozen=True)
class TaskDef:
    """A task: its layouts, labels (None: taken from the training data), metric and file names per split."""

    name: str
    labelled: Layout
    unlabelled: Layout | None = None
    labels: tuple[str, ...] | None = None
    regression: bool = False
    metric: str = "acc"  # the metric for model selection; all of the task's metrics are reported
    report: tuple[str, ...] = ("acc",)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    epochs: float = 3.0
    swap_pairs: bool = False  # official recipe: MRPC / STS-B also trained with the two texts swapped
    fmt: str = "tsv"  # "tsv", "csv" or "jsonl"
    label_names: dict[str, str] = field(default_factory=dict)  # what a label means, for people (SST-2 "1": positive)

    def label_name(self, label: str) -> str:
        return self.label_names.get(label, label)


def _glue(name: str, text: tuple[str, ...], label: str, labels: tuple[str, ...] | None, metric: str = "acc",
          report: tuple[str, ...] = ("acc",), id: str = "index", **kw) -> TaskDef:
    files = {"train": ("train.tsv",), "dev": ("dev.tsv",), "test": ("test.tsv",)}
    return TaskDef(name, Layout(True, text, label), Layout(True, text, id=id), labels, metric=metric,
                   report=report, files=files, **kw)


BINARY = ("0", "1")
SENTIMENT = {"0": "negative", "1": "positive"}
SAME = {"0": "different", "1": "same"}  # LCQMC, ATEC: 1 = the two questions ask the same thing
SPLITS = {"train": ("train.tsv",), "dev": ("dev.tsv",), "test": ("test.tsv",)}
NLI = ("contradiction", "entailment", "neutral")
TASKS: dict[str, TaskDef] = {
    "cola": TaskDef("cola", Layout(False, (3,), 1, columns=4), Layout(True, ("sentence",), id="index"),
                    BINARY, metric="mcc", report=("mcc", "acc"), files=SPLITS,
                    label_names={"0": "unacceptable", "1": "acceptable"}),
    "sst2": _glue("sst2", ("sentence",), "label", BINARY, label_names=SENTIMENT),
    "mrpc": _glue("mrpc", ("#1 String", "#2 String"), "Quality", BINARY, metric="f1", report=("f1", "acc"),
                  swap_pairs=True, label_names={"0": "not_equivalent", "1": "equivalent"}),
    "stsb": _glue("stsb", ("sentence1", "sentence2"), "score", None, regression=True, metric="spearman",
                  report=("pearson", "spearman"), epochs=10.0, swap_pairs=True),
    "qqp": _glue("qqp", ("question1", "question2"), "is_duplicate", BINARY, metric="f1", report=("f1", "acc"),
                 id="id", label_names={"0": "not_duplicate", "1": "duplicate"}),
    "mnli": replace(_glue("mnli", ("sentence1", "sentence2"), "gold_label", NLI),
                    files={"train": ("train.tsv",), "dev": ("dev_matched.tsv",),
                           "dev_mismatched": ("dev_mismatched.tsv",), "test": ("test_matched.tsv",),
                           "test_mismatched": ("test_mismatched.tsv",)}),
    "qnli": _glue("qnli", ("question", "sentence"), "label", ("entailment", "not_entailment")),
    "rte": _glue("rte", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), epochs=10.0),
    "wnli": _glue("wnli", ("sentence1", "sentence2"), "label", BINARY,
                  label_names={"0": "not_entailment", "1": "entailment"}),
    "chnsenticorp": TaskDef("chnsenticorp", Layout(True, ("text_a",), "label"),
                            Layout(True, ("text_a",), id="qid"), BINARY, files=SPLITS, label_names=SENTIMENT),
    "lcqmc": TaskDef("lcqmc", Layout(False, (0, 1), 2, columns=3), Layout(False, (0, 1), columns=2), BINARY,
                     report=("acc", "f1"),
                     files={s: (f"{s}.txt", f"{s}.tsv") for s in ("train", "dev", "test")}, label_names=SAME),
    # ATEC ships one labelled file; without train/dev files every 10th row of it is held out as dev.
    "atec": TaskDef("atec", Layout(False, (1, 2), 3, id=0, columns=4), Layout(False, (1, 2), id=0, columns=3),
                    BINARY, report=("acc", "f1"),
                    files={s: (f"{s}.tsv", f"{s}.csv") for s in ("train", "dev", "test")}, label_names=SAME),
}
ATEC_FILES = ("atec_nlp_sim_train.csv", "atec_nlp_sim_train_add.csv")


def custom_task(text_fields: Sequence[str], label_field: str, regression: bool = False,
                labels: Sequence[str] | None = None, fmt: str = "tsv") -> TaskDef:
    """The user's own data: named text field(s) and a label field in a headed CSV/TSV or JSONL file."""
    if not 1 <= len(text_fields) <= 2:
        raise ElectraError(f"--text-fields: expected one or two field names, got {len(text_fields)}")
    files = {s: (f"{s}.tsv", f"{s}.csv", f"{s}.jsonl") for s in ("train", "dev", "test")}
    return TaskDef("custom", Layout(True, tuple(text_fields), label_field),
                   Layout(True, tuple(text_fields)), tuple(labels) if labels else None, regression=regression,
                   metric="spearman" if regression else "acc",
                   report=("pearson", "spearman") if regression else ("acc", "macro_f1", "mcc"), files=files,
                   fmt=fmt)


def get_task(name: str) -> TaskDef:
    if name not in TASKS:
        raise ElectraError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}, or custom")
    return TASKS[name]


# ---- files ------------------------------------------------------------------------------------------------
def split_file(task: TaskDef, data_dir: str | Path, split: str) -> Path:
    """The file holding ``split`` of ``task`` under ``data_dir``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ElectraError(f"{data_dir}: data directory not found")
    names = task.files.get(split)
    if names is None:
        raise ElectraError(f"task {task.name}: unknown split {split!r} "
                           f"(expected one of {', '.join(task.files)})")
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    raise ElectraError(f"{data_dir}: no {' or '.join(names)} for the {split} split of {task.name}")


def load_split(task: TaskDef, data_dir: str | Path, split: str) -> list[Example]:
    """Read one split; ATEC without train/dev files is split 9:1 (every 10th row to dev) from its release."""
    if task.name == "atec" and split in ("train", "dev"):
        data_dir = Path(data_dir)
        if not any((data_dir / n).is_file() for n in task.files[split]):
            found = [data_dir / n for n in ATEC_FILES if (data_dir / n).is_file()]
            if found:
                rows = [e for f in found for e in read_examples(task, f, require_labels=True)]
                return [e for i, e in enumerate(rows) if (i % 10 == 0) == (split == "dev")]
    path = split_file(task, data_dir, split)
    return read_examples(task, path, require_labels=split != "test" and not split.startswith("test_"))


def _detect_format(task: TaskDef, path: Path) -> str:
    if task.name != "custom":
        return task.fmt
    return {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower(), "tsv")


def _rows(path: Path, fmt: str) -> list[tuple[int, list[str] | dict]]:
    """(line number, fields) for each non-empty line; BOMs are stripped from every field (ATEC has them)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if fmt == "csv":
                reader = csv.reader(f)
                return [(reader.line_num, [c.replace("\ufeff", "") for c in row]) for row in reader if row]
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise ElectraError(f"{path}: malformed CSV ({e})") from None
    out: list[tuple[int, list[str] | dict]] = []
    for i, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if fmt == "jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ElectraError(f"{path}:{i}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ElectraError(f"{path}:{i}: expected a JSON object per line")
            out.append((i, obj))
        else:
            out.append((i, [c.replace("\ufeff", "") for c in line.split("\t")]))
    return out


def read_examples(task: TaskDef, path: str | Path, require_labels: bool = False) -> list[Example]:
    """Examples of one file, in the labelled layout if the file has labels, else the unlabelled one."""
    path = Path(path)
    if not path.is_file():
        raise ElectraError(f"{path}: file not found")
    fmt = _detect_format(task, path)
    rows = _rows(path, fmt)
    if not rows:
        raise ElectraError(f"{path}: no examples (the split is empty)")
    if fmt == "jsonl":
        examples = _from_records(task, path, rows, require_labels)
    elif fmt == "csv":
        examples = _from_csv_records(task, path, rows, require_labels)
    elif task.labelled.header or (rows and task.unlabelled is not None and task.unlabelled.header
                                  and rows[0][1][0] in ("index", "id", "qid")):
        examples = _from_headed(task, path, rows, require_labels)
    else:
        examples = _from_positional(task, path, rows, require_labels)
    if not examples:
        raise ElectraError(f"{path}: no examples (the split is empty)")
    return examples


def _example(task: TaskDef, texts: list[str], label: str | None, guid: str, src: str) -> Example:
    if label is None:
        return Example(tuple(texts), None, guid, src)
    label = label.strip()
    if task.regression:
        try:
            return Example(tuple(texts), float(label), guid, src)
        except ValueError:
            raise ElectraError(f"{src}: label {label!r} is not a number (regression task)") from None
    if task.labels is not None and label not in task.labels:
        raise ElectraError(f"{src}: unknown label {label!r} (expected one of {', '.join(task.labels)})")
    return Example(tuple(texts), label, guid, src)


def _from_headed(task: TaskDef, path: Path, rows: list, require_labels: bool) -> list[Example]:
    (_, header), body = rows[0], rows[1:]
    header = [h.strip() for h in header]
    index = {h: i for i, h in enumerate(header)}
    layout = task.labelled
    if not layout.header or layout.label not in index:
        if require_labels or task.unlabelled is None:
            raise ElectraError(f"{path}:1: header has no label column {layout.label!r} "
                               f"(columns: {', '.join(header)})")
        layout = task.unlabelled
    for col in layout.text:
        if col not in index:
            raise ElectraError(f"{path}:1: header has no column {col!r} (columns: {', '.join(header)})")
    out = []
    for n, (line, fields) in enumerate(body):
        if len(fields) != len(header):
            raise ElectraError(f"{path}:{line}: expected {len(header)} tab-separated columns as the header, "
                               f"found {len(fields)}")
        label = fields[index[layout.label]] if layout.label is not None else None
        guid = fields[index[layout.id]].strip() if layout.id in index else str(n)
        out.append(_example(task, [fields[index[c]] for c in layout.text], label, guid, f"{path}:{line}"))
    return out


def _from_positional(task: TaskDef, path: Path, rows: list, require_labels: bool) -> list[Example]:
    layouts = [task.labelled] + ([] if require_labels or task.unlabelled is None else [task.unlabelled])
    out = []
    for n, (line, fields) in enumerate(rows):
        layout = next((lay for lay in layouts if len(fields) == lay.columns), None)
        if layout is None:
            expected = " or ".join(str(lay.columns) for lay in layouts)
            raise ElectraError(f"{path}:{line}: expected {expected} tab-separated columns, "
                               f"found {len(fields)}")
        label = fields[layout.label] if layout.label is not None else None
        guid = fields[layout.id].strip() if layout.id is not None else str(n)
        out.append(_example(task, [fields[c] for c in layout.text], label, guid, f"{path}:{line}"))
    return out


def _from_records(task: TaskDef, path: Path, rows: list, require_labels: bool) -> list[Example]:
    layout = task.labelled
    out = []
    for n, (line, obj) in enumerate(rows):
        src = f"{path}:{line}"
        for col in layout.text:
            if col not in obj:
                raise ElectraError(f"{src}: no text field {col!r} (fields: {', '.join(obj)})")
        if layout.label not in obj and require_labels:
            raise ElectraError(f"{src}: no label field {layout.label!r} (fields: {', '.join(obj)})")
        label = obj.get(layout.label)
        out.append(_example(task, [str(obj[c]) for c in layout.text], None if label is None else str(label),
                            str(obj.get("id", obj.get("index", n))), src))
    return out


def _from_csv_records(task: TaskDef, path: Path, rows: list, require_labels: bool) -> list[Example]:
    """Headed CSV rows become records keyed by the header."""
    (_, header), body = rows[0], rows[1:]
    records = []
    for line, fields in body:
        if len(fields) != len(header):
            raise ElectraError(f"{path}:{line}: expected {len(header)} comma-separated columns as the "
                               f"header, found {len(fields)}")
        records.append((line, dict(zip(header, fields))))
    return _from_records(task, path, records, require_labels)
