"""Readers for candidate lists: ASR n-best (HyPoradise JSON), MT candidates (one file per system), MuTual, and a
generic JSON Lines format. Each gives a list of :class:`RankItem`; bad input is one :class:`ElectraError` line
naming the file and the line, item or field.

Generic JSONL, one object per line::

    {"context": "optional text", "candidates": ["a", "b", ...], "costs": [0.1, 0.0, ...]}   # lower is better
    {"context": "...", "candidates": [...], "label": 2}                                    # index of the gold
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from electra.errors import ElectraError, os_reason

MUTUAL_LETTERS = ("A", "B", "C", "D")


@dataclass
class RankItem:
    """One list to rank. ``prior``: the producer's scores (higher is better; e.g. the recogniser's), if any."""

    candidates: list[str]
    context: str | None = None
    references: list[str] = field(default_factory=list)
    prior: list[float] | None = None
    costs: list[float] | None = None
    label: int | None = None
    id: str = ""


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ElectraError(f"{path}: no such {what} file") from None
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:

        raise ElectraError(f"{path}: cannot read the {what} file ({os_reason(e)})") from None


def _strings(value: Any, where: str, name: str, allow_empty_list: bool = False) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ElectraError(f"{where}: {name!r} must be a list of strings")
    if not value and not allow_empty_list:
        raise ElectraError(f"{where}: {name!r} is an empty candidate list")
    return value


def _numbers(value: Any, where: str, name: str, n: int) -> list[float]:
    if (not isinstance(value, list) or len(value) != n
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
        raise ElectraError(f"{where}: {name!r} must be a list of {n} numbers (one per candidate)")
    return [float(x) for x in value]


# ---- ASR: HyPoradise --------------------------------------------------------------------------------------
def read_hyporadise(path: str | Path) -> list[RankItem]:
    """HyPoradise JSON: a list of ``{"input": [hypotheses in beam order], "output": reference}``; the
    recogniser's ``score`` (WSJ) or ``am_score`` (ATIS), when present, becomes the prior."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path, "n-best JSON"))
    except json.JSONDecodeError as e:
        raise ElectraError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, list) or not data:
        raise ElectraError(f"{path}: expected a non-empty JSON list of {{\"input\": [...], \"output\": ...}} "
                           f"objects, got {type(data).__name__ if data else 'an empty list'}")
    items = []
    for i, obj in enumerate(data):
        where = f"{path}: item {i}"
        if not isinstance(obj, dict) or "input" not in obj:
            raise ElectraError(f"{where}: expected an object with \"input\" (hypotheses) and \"output\" "
                               f"(reference), got {type(obj).__name__ if not isinstance(obj, dict) else sorted(obj)}")
        hyps = _strings(obj["input"], where, "input")
        ref = obj.get("output")
        if ref is not None and not isinstance(ref, str):
            raise ElectraError(f"{where}: \"output\" must be the reference string")
        prior = None
        for key in ("score", "am_score"):
            if key in obj:
                prior = _numbers(obj[key], where, key, len(hyps))
                break
        items.append(RankItem(hyps, None, [ref] if ref is not None else [], prior,
                              id=str(obj["id"]) if "id" in obj else ""))
    return items


# ---- MT: one candidate file per system -----------------------------------------------------------------------
def candidate_files(spec: Sequence[str | Path]) -> list[Path]:
    """A folder (every file in it, sorted by name) or a list of files."""
    files: list[Path] = []
    for p in map(Path, spec):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")))
        elif p.is_file():
            files.append(p)
        else:
            raise ElectraError(f"{p}: no such candidate file or folder")
    if not files:
        raise ElectraError(f"{', '.join(map(str, spec)) or '--candidates'}: no candidate files (empty candidate list)")
    return files


def _lines(path: Path, what: str) -> list[str]:
    text = _read_text(path, what)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def system_name(path: Path) -> str:
    """``newstest2021.de-en.hyp.Facebook-AI.en`` -> ``Facebook-AI``; other names: the file name."""
    parts = path.name.split(".")
    return parts[parts.index("hyp") + 1] if "hyp" in parts[:-1] else path.name


def read_mt(source: str | Path | None, candidates: Sequence[str | Path],
            references: Sequence[str | Path] = ()) -> tuple[list[RankItem], list[str]]:
    """Items (one per segment: the systems' outputs as candidates) and the system names. All files must have
    the same number of lines."""
    files = candidate_files(candidates)
    columns = {f: _lines(f, "candidate") for f in files}
    first = files[0]
    n = len(columns[first])
    src = _lines(Path(source), "source") if source else None
    refs = [_lines(Path(r), "reference") for r in references]
    for f, lines in [*columns.items(), *([(Path(source), src)] if src is not None else []),
                     *zip(map(Path, references), refs)]:
        if len(lines) != n:
            raise ElectraError(f"{f}: {len(lines)} lines, but {first} has {n}: files must be line-aligned "
                               "(one segment per line)")
    items = [RankItem([columns[f][i] for f in files], src[i] if src is not None else None,
                      [r[i] for r in refs], id=str(i)) for i in range(n)]
    return items, [system_name(f) for f in files]


# ---- dialogue: MuTual -------------------------------------------------------------------------------------
def read_mutual(path: str | Path) -> list[RankItem]:
    """MuTual JSON Lines: ``{"article": context, "options": [4 responses], "answers": "A".."D", "id"}``
    (``answers`` may be absent: the test split)."""
    path = Path(path)
    items = []
    for n, line in enumerate(_lines(path, "MuTual"), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {n}"
        obj = _json_line(line, where)
        options = obj.get("options")
        if not isinstance(options, list) or len(options) != 4 or not all(isinstance(o, str) for o in options):
            got = f"{len(options)} entries" if isinstance(options, list) else type(options).__name__
            raise ElectraError(f"{where}: \"options\" must be a list of 4 strings (MuTual has 4), got {got}")
        context = obj.get("article")
        if not isinstance(context, str):
            raise ElectraError(f"{where}: \"article\" (the dialogue) must be a string")
        answer = obj.get("answers")
        if answer is not None and answer not in MUTUAL_LETTERS:
            raise ElectraError(f"{where}: \"answers\" must be one of A, B, C, D, got {answer!r}")
        items.append(RankItem(options, context, label=MUTUAL_LETTERS.index(answer) if answer else None,
                              id=str(obj.get("id", n))))
    if not items:
        raise ElectraError(f"{path}: no MuTual examples")
    return items


def _json_line(line: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ElectraError(f"{where}: not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ElectraError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


# ---- generic JSON Lines ---------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> list[RankItem]:
    """The generic format (see the module docstring): ``candidates`` and ``costs`` or ``label``."""
    path = Path(path)
    items = []
    for n, line in enumerate(_lines(path, "JSON Lines"), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {n}"
        obj = _json_line(line, where)
        cands = _strings(obj.get("candidates"), where, "candidates")
        context = obj.get("context")
        if context is not None and not isinstance(context, str):
            raise ElectraError(f"{where}: \"context\" must be a string")
        costs = _numbers(obj["costs"], where, "costs", len(cands)) if "costs" in obj else None
        label = obj.get("label")
        if label is not None and (not isinstance(label, int) or isinstance(label, bool)
                                  or not 0 <= label < len(cands)):
            raise ElectraError(f"{where}: \"label\" must be a candidate index 0..{len(cands) - 1}, got {label!r}")
        refs = obj.get("references", [])
        if isinstance(refs, str):
            refs = [refs]
        refs = _strings(refs, where, "references", allow_empty_list=True)
        prior = _numbers(obj["prior"], where, "prior", len(cands)) if "prior" in obj else None
        items.append(RankItem(cands, context, refs, prior, costs, label, str(obj.get("id", n))))
    if not items:
        raise ElectraError(f"{path}: no items")
    return items
