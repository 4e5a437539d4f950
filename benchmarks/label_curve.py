"""What pre-training is worth as labelled data grows: one GLUE task fine-tuned from a checkpoint and from random
initialisation at several training-set sizes, side by side.

    python benchmarks/label_curve.py --model CKPT [--task sst2] [--limits 250,500,1000,2000,4000,8000,16000,all]
        [--seeds 3] [--glue ../shared/data/glue] [--out runs/label-curve] [--plot docs/label-curve.png]

Each size is one ``benchmarks/finetune_glue.py`` run (the official recipe, both arms, seeds ``--seed`` …); its
final JSON line is kept as ``OUT/LIMIT.json``, and a size whose file is there is not run again, so an interrupted
curve goes on where it stopped. ``all`` is the whole training split. Prints a table (median [min–max] per arm and
the gap), draws the curve (``--plot``, needs matplotlib) and ends with a JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import harness
from electra.data.glue import get_task, load_split
from finetune_glue import FOLDERS


def parse_limits(text: str) -> list[int | None]:
    """``250,1000,all`` -> [250, 1000, None] (None: the whole split); sizes must be positive integers."""
    out: list[int | None] = []
    for item in text.split(","):
        item = item.strip()
        if item == "all":
            out.append(None)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise SystemExit(f"--limits: {item!r} is not a positive number of examples or 'all'")
    return out


def run_size(limit: int | None, args: argparse.Namespace) -> dict:
    """One size through finetune_glue.py, or its kept result."""
    path = args.out / f"{limit or 'all'}.json"
    if path.is_file():
        return json.loads(path.read_text())
    res = harness.run_script("finetune_glue.py", "--model", f"pretrained={args.model}", "--tasks", args.task,
                             "--seeds", args.seeds, "--seed", args.seed, "--precision", args.precision,
                             "--data", args.glue, "--out", args.out / f"{limit or 'all'}",
                             *(["--train-limit", limit] if limit is not None else []))
    if res.returncode != 0:
        raise SystemExit(f"finetune_glue.py failed at --train-limit {limit}:\n{res.stderr[-3000:]}")
    line = harness.last_json(res.stdout)
    if args.task not in line["results"]:
        raise SystemExit(f"finetune_glue.py skipped {args.task}: no {args.glue / FOLDERS[args.task]}/train.tsv")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(line) + "\n")
    tmp.replace(path)
    return line


def points(lines: list[dict], task: str, metric: str, split_size: int) -> list[dict]:
    """One row per size: examples (the limit, or the split's size when there was none or it was larger), and per
    arm the median, min and max of ``metric``."""
    rows = []
    for line in lines:
        res = line["results"][task]
        arm = next(a for a in res if a != "random")
        limit = line["train_limit"]
        row = {"examples": min(limit, split_size) if limit else split_size}
        for name, key in ((arm, "pretrained"), ("random", "random")):
            spread = res[name]["spread"].get(metric) or {"min": res[name][metric], "max": res[name][metric]}
            row[key] = {"median": res[name][metric], "min": spread["min"], "max": spread["max"]}
        rows.append(row)
    return sorted(rows, key=lambda r: r["examples"])


def plot(rows: list[dict], path: Path, task: str, metric: str, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [r["examples"] for r in rows]
    for key, label, color in (("pretrained", "pre-trained", "tab:blue"), ("random", "random init", "tab:gray")):
        med = [r[key]["median"] for r in rows]
        err = [[m - r[key]["min"] for m, r in zip(med, rows, strict=True)],
               [r[key]["max"] - m for m, r in zip(med, rows, strict=True)]]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=label, color=color)
    ax.set_xscale("log")
    ax.set_xlabel(f"{task} training examples (log scale)")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"{task}: median of {seeds} seed(s), bars min-max")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="pre-trained checkpoint or run folder")
    p.add_argument("--task", default="sst2", choices=sorted(FOLDERS))
    p.add_argument("--limits", default="250,500,1000,2000,4000,8000,16000")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"])
    p.add_argument("--glue", type=Path, default=harness.DATA / "glue")
    p.add_argument("--out", type=Path, default=harness.ROOT / "runs" / "label-curve")
    p.add_argument("--plot", type=Path, help="PNG of the curve")
    args = p.parse_args()
    if args.seeds < 1:
        raise SystemExit(f"--seeds {args.seeds}: expected at least 1")
    limits = parse_limits(args.limits)
    task = get_task(args.task)
    metric = task.report[0]  # the task's headline metric, as finetune_glue.py reports it
    lines = []
    for limit in limits:
        print(f"{args.task}, {limit or 'all'} training examples ...", flush=True)
        lines.append(run_size(limit, args))
    split_size = len(load_split(task, args.glue / FOLDERS[args.task], "train"))  # (CoLA's file has no header)
    rows = points(lines, args.task, metric, split_size)
    print(f"\n{args.task} dev {metric}, median [min-max] of {args.seeds} seed(s)")
    print(harness.table([("examples", ">9"), ("pre-trained", "<24"), ("random init", "<24"), ("gap", "+.3f")],
                        [(r["examples"], *(f"{r[k]['median']:.3f} [{r[k]['min']:.3f}-{r[k]['max']:.3f}]"
                                           for k in ("pretrained", "random")),
                          r["pretrained"]["median"] - r["random"]["median"]) for r in rows], sep="  "))
    if args.plot:
        plot(rows, args.plot, args.task, metric, args.seeds)
        print(f"curve: {args.plot}")
    harness.emit({"benchmark": "label_curve", "model": str(args.model), "task": args.task,
                  "metric": metric, "seeds": args.seeds, "points": rows})


if __name__ == "__main__":
    main()
