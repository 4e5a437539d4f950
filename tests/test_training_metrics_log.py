"""MetricsLogger: a CSV that stays parseable and duplicate-free, plus TensorBoard scalars."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from electra.training.metrics_log import MetricsLogger


def read(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f, strict=True))


def test_rows_are_appended_with_step_first(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as m:
        m.log(1, {"loss": 2.5, "lr": 1e-4})
        m.log(2, {"loss": torch.tensor(2.25), "lr": 2e-4})
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "step,loss,lr"
    rows = read(tmp_path)
    got = [(r["step"], float(r["loss"]), float(r["lr"])) for r in rows]
    assert got == [("1", 2.5, 1e-4), ("2", 2.25, 2e-4)]


def test_new_metric_widens_header_and_keeps_earlier_rows(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as m:
        m.log(1, {"loss": 3.0})
        m.log(2, {"loss": 2.0, "eval/acc": 0.5})
        m.log(3, {"loss": 1.0})
    rows = read(tmp_path)
    assert list(rows[0]) == ["step", "loss", "eval/acc"]
    assert [r["eval/acc"] for r in rows] == ["", "0.5", ""]
    assert [float(r["loss"]) for r in rows] == [3.0, 2.0, 1.0]


def test_nan_is_written_so_it_parses_back(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as m:
        m.log(1, {"loss": float("nan")})
    assert math.isnan(float(read(tmp_path)[0]["loss"]))


def test_resume_drops_rows_after_the_checkpoint_step(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, tensorboard=False) as m:
        for step in (10, 20, 30):
            m.log(step, {"loss": 1.0 / step})
    with MetricsLogger(tmp_path, resume_step=20, tensorboard=False) as m:
        m.log(30, {"loss": 0.5})
    assert [r["step"] for r in read(tmp_path)] == ["10", "20", "30"]
    assert float(read(tmp_path)[-1]["loss"]) == 0.5


def test_truncated_last_row_is_dropped_on_resume(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("step,loss,lr\n1,2.0,0.1\n2,1.9")
    with MetricsLogger(tmp_path, resume_step=5, tensorboard=False) as m:
        m.log(2, {"loss": 1.8, "lr": 0.2})
    assert [(r["step"], r["loss"]) for r in read(tmp_path)] == [("1", "2.0"), ("2", "1.8")]


def test_disabled_logger_writes_nothing(tmp_path: Path) -> None:
    m = MetricsLogger(tmp_path / "run", enabled=False)
    m.log(1, {"loss": 1.0})
    m.close()
    assert not (tmp_path / "run").exists()


def test_tensorboard_events_hold_the_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(tmp_path) as m:
        m.log(1, {"disc/loss": 0.75})
        m.log(2, {"disc/loss": 0.5})
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("disc/loss")] == [(1, 0.75), (2, 0.5)]


def test_resume_purges_later_tensorboard_events(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(tmp_path) as m:
        for step in (1, 2, 3):
            m.log(step, {"loss": float(step)})
    with MetricsLogger(tmp_path, resume_step=1) as m:
        m.log(2, {"loss": 20.0})
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.0), (2, 20.0)]


def test_tensorboard_logging_does_not_import_tensorflow(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from electra.training.metrics_log import MetricsLogger; "
            f"log = MetricsLogger({str(tmp_path)!r}, tensorboard=True); log.log(1, {{'loss': 1.0}}); log.close(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
