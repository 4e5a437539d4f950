"""``electra score`` for system outputs: one segment per line in the predictions and in each reference file."""

from __future__ import annotations

from pathlib import Path

from electra.errors import ElectraError
from electra.metrics import speech, text

TEXT_TASKS = ("wer", "cer", "bleu", "chrf", "rouge")


def read_lines(path: str | Path) -> list[str]:
    """The file's lines without their line ends (a final newline does not make an extra empty segment)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ElectraError(f"{p}: cannot read ({e.strerror})") from None
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ElectraError(f"{p}:{line}: not UTF-8 text") from None
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.removesuffix("\r") for ln in lines]


def score_text_files(task: str, predictions: str | Path, references: list[str | Path], lang: str = "en") -> dict:
    """Score a system output against one or more reference files; the result names the metric's signature."""
    if task not in TEXT_TASKS:
        raise ElectraError(f"score: unknown task {task!r}; expected one of {', '.join(TEXT_TASKS)}")
    if not references:
        raise ElectraError("score: give at least one --references file")
    hyps = read_lines(predictions)
    streams = [read_lines(r) for r in references]
    for path, s in zip(references, streams):
        if len(s) != len(hyps):
            raise ElectraError(f"{path}: {len(s)} lines, but {predictions} has {len(hyps)}: expected one segment "
                               "per line in every file")
    if not hyps:
        raise ElectraError(f"{predictions}: no segments")
    if task in ("wer", "cer", "rouge") and len(streams) != 1:
        raise ElectraError(f"score: --task {task} takes one --references file, got {len(streams)}")
    res: dict
    if task == "wer":
        res = {"wer": speech.wer(streams[0], hyps), "normaliser": "electra.metrics.speech.normalize (both sides)"}
    elif task == "cer":
        res = {"cer": speech.cer(streams[0], hyps), "normaliser": "electra.metrics.speech.normalize (both sides)"}
    elif task == "bleu":
        r = text.bleu(hyps, streams, lang=lang)
        res = {"bleu": r["score"], "signature": r["signature"]}
    elif task == "chrf":
        r = text.chrf(hyps, streams)
        res = {"chrf": r["score"], "signature": r["signature"]}
    else:
        res = text.rouge(hyps, streams[0], lang="zh" if lang == "zh" else None)
    res["segments"] = len(hyps)
    return res
