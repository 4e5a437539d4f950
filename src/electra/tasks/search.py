"""Hyperparameter search for fine-tuning: a grid over ``FinetuneConfig`` / ``TaskOptions`` fields, each point
fine-tuned over the same seeds and selected on dev by the task's main metric (median over seeds).

``--search "lr=1e-4,3e-4;epochs=2,3"`` runs every combination into ``OUT/trials/<name>/`` and writes
``OUT/trials.tsv`` (one row per trial: its values, the median/min/max of the main metric, each seed's score)
and ``OUT/search.json``. The best trial's run is then moved to ``OUT`` itself (``best/``, ``results.json``, or
its ``seed-N/`` runs), so ``electra evaluate/predict/export --model OUT`` use it. A plain grid: with 2-3 values
of 2-3 hyperparameters (the ranges the ELECTRA paper searched) a sampler such as Optuna's finds nothing a grid
misses, and the grid's table is easier to read.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

from electra.errors import ElectraError
from electra.files import write_text_atomic
from electra.tasks.classification import Augmenter, TaskOptions, finetune_seeds
from electra.tasks.runner import FinetuneConfig

CONFIG_KEYS = ("lr", "epochs", "max_steps", "batch_size", "warmup_fraction", "weight_decay", "layerwise_decay")
OPTION_KEYS = ("augment", "token_dropout", "word_swap", "max_seq_len")
INT_KEYS = ("max_steps", "batch_size", "augment", "max_seq_len")


def parse_grid(spec: str) -> dict[str, list[float | int]]:
    """``"lr=1e-4,3e-4;epochs=2,3"`` -> ``{"lr": [1e-4, 3e-4], "epochs": [2.0, 3.0]}`` (one-line errors)."""
    grid: dict[str, list[float | int]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, eq, values = part.partition("=")
        key = name.strip().replace("-", "_")
        if not eq or not values.strip():
            raise ElectraError(f"--search {part!r}: expected NAME=V1,V2,... (e.g. lr=1e-4,3e-4)")
        if key not in CONFIG_KEYS + OPTION_KEYS:
            raise ElectraError(f"--search: unknown hyperparameter {name.strip()!r} (expected one of "
                               f"{', '.join(CONFIG_KEYS + OPTION_KEYS)})")
        if key in grid:
            raise ElectraError(f"--search: {key} given twice")
        try:
            grid[key] = [int(v) if key in INT_KEYS else float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ElectraError(f"--search {part!r}: values must be {'integers' if key in INT_KEYS else 'numbers'}"
                               ) from None
    if not grid:
        raise ElectraError("--search: no hyperparameters (expected e.g. \"lr=1e-4,3e-4;epochs=2,3\")")
    return grid


def trial_name(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in values.items())


def search(task: Any, model_path: str | Path, data_dir: str | Path, out_dir: str | Path, config: FinetuneConfig,
           options: TaskOptions, seeds: int, grid: dict[str, list[float | int]],
           augmenter: Augmenter | None = None) -> dict[str, Any]:
    """Fine-tune every grid point over ``seeds`` seeds; the best (median main metric on dev) becomes ``out_dir``'s
    run. Returns ``{"trials": [...], "best_trial": name, "best": its results["best"], "metric": name}``."""
    out = Path(out_dir)
    if (out / "best").exists() or (out / "trials").exists():
        raise ElectraError(f"{out}: already holds a run; give a new --out for a search")
    metric = task.metric
    trials = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        cfg = dataclasses.replace(config, **{k: v for k, v in values.items() if k in CONFIG_KEYS})
        opts = dataclasses.replace(options, **{k: v for k, v in values.items() if k in OPTION_KEYS})
        name = trial_name(values)
        res = finetune_seeds(task, model_path, data_dir, out / "trials" / name, cfg, opts, seeds, augmenter=augmenter)
        best = res["best"][metric]
        per_seed = ([json.loads((Path(r) / "results.json").read_text())["best"][metric] for r in res["runs"]]
                    if seeds > 1 else [best])
        summary = best if isinstance(best, dict) else {"median": best, "min": best, "max": best}
        trials.append({"trial": name, **values, "median": summary["median"], "min": summary["min"],
                       "max": summary["max"], "seeds": per_seed, "results": res})
    winner = max(trials, key=lambda t: t["median"])  # first of equals: grid order
    src = out / "trials" / winner["trial"]
    for item in src.iterdir():
        shutil.move(str(item), str(out / item.name))
    src.rmdir()
    moved = out / "results.json"
    if seeds > 1 and moved.is_file():  # the multi-seed summary names its runs: point them at their new place
        summary = json.loads(moved.read_text())
        summary["runs"] = [str(out / Path(r).name) for r in summary.get("runs", [])]
        write_text_atomic(moved, json.dumps(summary, indent=2) + "\n", "results")
    (out / "trials" / winner["trial"]).mkdir()
    (out / "trials" / winner["trial"] / "MOVED.txt").write_text(f"this trial was the best: its run is in {out}\n")
    keys = list(grid)
    lines = ["\t".join(["trial", *keys, f"{metric}_median", f"{metric}_min", f"{metric}_max", "per_seed", "best"])]
    for t in trials:
        lines.append("\t".join([t["trial"], *(f"{t[k]:g}" for k in keys), f"{t['median']:.4f}", f"{t['min']:.4f}",
                                f"{t['max']:.4f}", ",".join(f"{s:.4f}" for s in t["seeds"]),
                                "*" if t is winner else ""]))
    write_text_atomic(out / "trials.tsv", "\n".join(lines) + "\n", "trials table")
    result = {"metric": metric, "seeds": seeds, "grid": grid, "best_trial": winner["trial"],
              "best": winner["results"]["best"],
              "trials": [{k: v for k, v in t.items() if k != "results"} for t in trials]}
    write_text_atomic(out / "search.json", json.dumps(result, indent=2) + "\n", "search summary")
    return result
