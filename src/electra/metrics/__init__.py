"""Evaluation metrics for fine-tuning: accuracy, P/R/F1, Matthews correlation, Pearson/Spearman, confusion.

Plain numpy, checked against scikit-learn and scipy in the tests. Labels are integer class ids; scores are
floats. ``glue_metrics`` gives each GLUE task its official metric set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must be 1-D and of equal length")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _pair(y_true, y_pred)
    return float((t == p).mean()) if len(t) else 0.0


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of examples of true class i predicted as j (rows: truth, as scikit-learn)."""
    t, p = _pair(y_true, y_pred)
    t, p = t.astype(np.int64), p.astype(np.int64)
    n = num_classes if num_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def precision_recall_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
                        ) -> dict[str, np.ndarray | float]:
    """Per-class precision/recall/F1/support plus macro and micro averages (0 where undefined).

    Macro averages the per-class scores over classes that occur in truth or prediction, as scikit-learn
    does with its default ``labels``; micro pools all decisions (equal to accuracy for single-label data).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(cm)
    pred, true = cm.sum(0), cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (pred + true) > 0
    micro = float(tp.sum() / cm.sum()) if cm.sum() else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": true.astype(np.int64),
            "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
            "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "micro_precision": micro, "micro_recall": micro, "micro_f1": micro}


def binary_f1(y_true: ArrayLike, y_pred: ArrayLike, positive: int = 1) -> float:
    """F1 of the positive class (the GLUE MRPC/QQP F1)."""
    t, p = _pair(y_true, y_pred)
    tp = float(((t == positive) & (p == positive)).sum())
    denom = float((t == positive).sum() + (p == positive).sum())
    return 2 * tp / denom if denom else 0.0


def matthews_corrcoef(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Matthews correlation (multi-class form of Gorodkin 2004, as scikit-learn); 0 when undefined."""
    cm = confusion_matrix(y_true, y_pred).astype(np.float64)
    t, p, c, s = cm.sum(1), cm.sum(0), np.trace(cm), cm.sum()
    cov_tp = c * s - t @ p
    cov_pp = s * s - p @ p
    cov_tt = s * s - t @ t
    denom = np.sqrt(cov_pp * cov_tt)
    return float(cov_tp / denom) if denom else 0.0


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson's r; 0 when either input is constant."""
    a, b = _pair(x, y)
    a, b = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float(np.clip((a * b).sum() / denom, -1.0, 1.0)) if denom else 0.0


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)]
    avg = (first + last + 1) / 2.0  # mean of 1-based ranks first+1 .. last
    ranks = np.empty(len(x))
    ranks[order] = avg[group]
    return ranks


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve for binary labels (1 = positive): the Mann-Whitney U statistic, ties counting
    one half, as ``sklearn.metrics.roc_auc_score``. NaN when only one class occurs."""
    t, s = _pair(y_true, scores)
    pos = t.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _rank(s.astype(np.float64))
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rho: Pearson's r of the (tie-averaged) ranks."""
    a, b = _pair(x, y)
    return pearson(_rank(a.astype(np.float64)), _rank(b.astype(np.float64)))


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
                           ) -> dict[str, float]:
    """Accuracy, MCC, macro/micro P/R/F1 and (for two classes) the positive-class F1, as plain floats."""
    prf = precision_recall_f1(y_true, y_pred, num_classes)
    out = {"acc": accuracy(y_true, y_pred), "mcc": matthews_corrcoef(y_true, y_pred)}
    out.update({k: v for k, v in prf.items() if isinstance(v, float)})
    if num_classes == 2:
        out["f1"] = binary_f1(y_true, y_pred)
    return out


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    t, p = _pair(y_true, y_pred)
    return {"pearson": pearson(t, p), "spearman": spearman(t, p),
            "mse": float(((t.astype(np.float64) - p) ** 2).mean()) if len(t) else 0.0}


def median_and_spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and standard deviation of several runs' scores (the paper reports medians)."""
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
