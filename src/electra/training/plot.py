"""``RUN/curves.png``: the training curves of a run, drawn from ``RUN/metrics.csv`` with matplotlib (Agg)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from electra.config import check_values, interval
from electra.errors import ElectraError
from electra.training.metrics_log import METRICS_FILE, read_metrics_csv

PLOT_FILE = "curves.png"
MAX_PANELS = 12


def _gen(n: str) -> bool:
    return "gen" in n or "mlm" in n


def _disc(n: str) -> bool:
    return "disc" in n or "rtd" in n


# The main panels, in order; a column goes to the first panel whose test accepts its lower-cased name.
PANELS: list[tuple[str, Callable[[str], bool]]] = [
    ("total loss", lambda n: n in ("loss", "total_loss", "loss/total", "train/loss")),
    ("generator MLM loss", lambda n: _gen(n) and "loss" in n),
    ("generator MLM accuracy", lambda n: _gen(n) and "acc" in n),
    ("discriminator loss", lambda n: _disc(n) and "loss" in n),
    ("discriminator accuracy / precision / recall",
     lambda n: _disc(n) and any(s in n for s in ("acc", "prec", "recall", "f1", "auc"))),
    ("learning rate", lambda n: n in ("lr", "learning_rate") or n.endswith(("/lr", "_lr"))),
    ("tokens / s", lambda n: "tok" in n and ("/s" in n or "per_s" in n or "sec" in n)),
]


def _ema(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average."""
    out, acc = np.empty_like(y), 0.0
    for i, v in enumerate(y):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc / (1 - weight ** (i + 1))
    return out


def _columns(run_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise ElectraError(f"{run_dir}: no {METRICS_FILE} (expected a run folder of `electra pretrain`)")
    header, rows = read_metrics_csv(path)
    if header[:1] != ["step"] or not rows:
        raise ElectraError(f"{path}: no metric rows (expected a header starting with 'step' and data rows)")

    def num(s: str | None) -> float:
        try:
            return float(s) if s else math.nan
        except ValueError:
            return math.nan

    table = np.array([[num(r.get(c)) for c in header] for r in rows], dtype=np.float64)
    cols = {c: table[:, i + 1] for i, c in enumerate(header[1:]) if np.isfinite(table[:, i + 1]).any()}
    return table[:, 0], cols


def _constant_loss_line(ax, steps: np.ndarray, fraction: np.ndarray, smoothing: float) -> None:
    """The loss of predicting the replaced fraction everywhere: the line a learning discriminator goes below."""
    ok = np.isfinite(fraction) & (fraction > 0) & (fraction < 1)
    p = fraction[ok]
    h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    if smoothing > 0 and len(h) >= 20:
        h = _ema(h, smoothing)
    ax.plot(steps[ok], h, color="grey", linestyle="--", label="constant prediction")


def plot_curves(run_dir: str | Path, smoothing: float = 0.6) -> Path:
    """One panel per main curve, then per other numeric column (MAX_PANELS in all); returns the PNG's path.

    Curves of 20+ points get an EMA of weight ``smoothing`` over the faint raw line (not the learning rate).
    """

    check_values("plot option", {"smoothing": smoothing}, {"smoothing": interval(0, 1, "[)")})
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ElectraError("matplotlib is not installed: no curves.png (draw it later: `electra plot RUN`)") from None

    run_dir = Path(run_dir)
    steps, cols = _columns(run_dir)
    panels: list[tuple[str, list[str]]] = [(title, []) for title, _ in PANELS]
    for name in cols:
        i = next((i for i, (_, test) in enumerate(PANELS) if test(name.lower())), None)
        if i is None:
            panels.append((name, [name]))
        else:
            panels[i][1].append(name)
    panels = [p for p in panels if p[1]][:MAX_PANELS]

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5 * ncols, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(run_dir.resolve().name)
    for k, (title, names) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for name in names:
            ok = np.isfinite(cols[name])
            x, y = steps[ok], cols[name][ok]
            if smoothing > 0 and len(y) >= 20 and title != "learning rate":
                (line,) = ax.plot(x, y, alpha=0.25)
                ax.plot(x, _ema(y, smoothing), color=line.get_color(), label=name)
            else:
                ax.plot(x, y, marker="o" if len(y) < 20 else None, markersize=3, label=name)
        if title == "discriminator loss" and "replaced_fraction" in cols:
            _constant_loss_line(ax, steps, cols["replaced_fraction"], smoothing)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        if len(names) > 1 or names[0] != title or title == "discriminator loss":
            ax.legend(fontsize=7)
    out = run_dir / PLOT_FILE
    tmp = run_dir / f".{PLOT_FILE}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, out)
    return out
