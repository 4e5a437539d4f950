"""Scalar metrics of a run: ``RUN/metrics.csv`` and TensorBoard events (``RUN/tb``)."""

from __future__ import annotations

import csv
import os
import sys
import types
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.csv"
TB_DIR = "tb"


def read_metrics_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a metrics CSV; rows cut short by a crash are dropped."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return [], []
    header = rows[0]
    return header, [dict(zip(header, r)) for r in rows[1:] if len(r) == len(header)]


class MetricsLogger:
    """Append ``step, metric...`` rows to ``metrics.csv`` and scalars to TensorBoard.

    Columns are ``step`` then the metric names in order of first appearance; when a new name appears the
    file is rewritten with the wider header (earlier rows get empty cells). With ``resume_step=k`` rows
    after step k (from the interrupted run) are dropped from the CSV and purged from TensorBoard.
    ``enabled=False`` (non-zero ranks) makes every method a no-op and touches no file.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self._file = None
        self._writer = None
        self.columns: list[str] = ["step"]
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            header, rows = read_metrics_csv(self.path)
            if header[:1] == ["step"]:
                self.columns = header
                if resume_step is not None:
                    rows = [r for r in rows if _step(r) is not None and _step(r) <= resume_step]
                self._rewrite(rows)
        if tensorboard:
            # tensorboard imports TensorFlow whenever it is installed (the `tf` extra): seconds, ~1 GB and log spam
            # in every run. Its own no-TensorFlow switch (the module tensorboard.compat.notf) selects the stub,
            # which writes the same event files.
            sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # e.g. a GPU machine's bare Python: metrics.csv is still written
                print("tensorboard is not installed: no TensorBoard logs (metrics.csv is written)")
                return
            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(str(Path(run_dir) / TB_DIR), purge_step=purge)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Write the whole CSV (current columns) to a temporary file and rename it over the old one."""
        if self._file is not None:
            self._file.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.columns, restval="", extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - kept open

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` (floats, ints or 0-d tensors) at ``step``."""
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        new = [k for k in values if k not in self.columns]
        if new or self._file is None:
            rows = read_metrics_csv(self.path)[1] if self.path.exists() else []
            self.columns += new
            self._rewrite(rows)
        row = {"step": int(step), **{k: repr(v) for k, v in values.items()}}
        csv.DictWriter(self._file, self.columns, restval="").writerow(row)
        self._file.flush()
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(k, v, int(step))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row["step"]))
    except (KeyError, ValueError):
        return None
