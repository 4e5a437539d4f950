"""plot_curves and `electra plot`: a PNG from metrics.csv, a one-line error without one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from electra.cli import main
from electra.errors import ElectraError
from electra.training.metrics_log import MetricsLogger
from electra.training.plot import plot_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run: Path, steps: int = 60) -> None:
    with MetricsLogger(run, tensorboard=False) as m:
        for s in range(1, steps + 1):
            row = {"loss": 10 * math.exp(-s / 20), "gen/loss": 5 - s / 30, "gen/acc": s / steps,
                   "disc/loss": 0.5 - s / 200, "disc/acc": 0.8, "disc/precision": 0.6, "disc/recall": 0.4,
                   "lr": 1e-4 * min(1, s / 10), "tokens_per_s": 1000.0, "grad_norm": 1.0}
            if s % 20 == 0:
                row["eval/loss"] = 3.0
            m.log(s, row)


def test_png_is_written_for_a_metrics_csv(tmp_path: Path) -> None:
    write_run(tmp_path)
    out = plot_curves(tmp_path)
    assert out == tmp_path / "curves.png"
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000


def test_missing_metrics_csv_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ElectraError, match="no metrics.csv"):
        plot_curves(tmp_path)


def test_cli_plot_prints_the_png_path(tmp_path: Path, capsys) -> None:
    write_run(tmp_path, steps=5)
    with pytest.raises(SystemExit) as e:
        main(["plot", str(tmp_path)])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_plot_without_metrics_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["plot", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "metrics.csv" in err
