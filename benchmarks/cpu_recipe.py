"""Which pre-training recipe pays off on a CPU: ablation arms at one wall-clock budget each, side by side.

    python benchmarks/cpu_recipe.py --data DATA --held-out HELD [--arms tiny,wide2x256,...] [--minutes 6]
        [--steps N] [--tasks sst2] [--train-limit 2000] [--seeds 3] [--out runs/cpu-recipe]

Every arm pre-trains from scratch on the same prepared shards for ``--minutes`` of wall-clock time: a 16-step probe
measures its step rate (or ``--steps`` fixes the count), and the LR schedule is sized to the steps that rate buys
(warm-up 10%, linear decay to zero at the last step), as ``electra demo`` does. Then, per arm:

* held-out detection (documents never trained on) against the arm's own generator and against replacements drawn
  from the corpus's unigram distribution — the second is the same task for every arm, so it compares them;
* fine-tuning (``benchmarks/finetune_glue.py``: the official recipe, ``--seeds`` seeds, median) of the
  discriminator and of a randomly initialised encoder of the same shape (once per shape).

Prints a table, writes OUT/results.json, and prints a final JSON line. One arm at a time: run nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from pathlib import Path
from typing import Any

import harness
from electra.checkpoint import load_checkpoint, resolve_checkpoint
from electra.config import PretrainConfig
from electra.data.glue import get_task
from electra.data.pretraining_data import PretrainingData
from electra.training.metrics_log import METRICS_FILE, read_metrics_csv
from electra.training.pretrainer import plan_steps, pretrain

GLUE = harness.DATA / "glue"
WIDE = dict(embedding_size=128, num_heads=4, max_position_embeddings=128)
# arm -> (PretrainConfig fields, model shape overrides of the tiny preset)
ARMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny": ({}, {}),
    "cpu": ({"preset": "cpu"}, {}),  # tiny + fixed word embeddings (give :init_embeddings=VECTORS for the recipe)
    "wide2x128": ({}, dict(WIDE, hidden_size=128, num_layers=2, intermediate_size=512, num_heads=2)),
    "wide2x256": ({}, dict(WIDE, hidden_size=256, num_layers=2, intermediate_size=1024, generator_size=0.25)),
    "deep4x128": ({}, dict(WIDE, hidden_size=128, num_layers=4, intermediate_size=512, num_heads=2,
                           generator_size=0.25)),
    "deep6x128": ({}, dict(WIDE, hidden_size=128, num_layers=6, intermediate_size=512, num_heads=2,
                           generator_size=0.25)),
    "wide4x256": ({}, dict(WIDE, hidden_size=256, num_layers=4, intermediate_size=1024, generator_size=0.25)),
}


def parse_arm(spec: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``NAME`` or ``NAME:key=value:key=value`` (pretrain or model fields; numbers parsed)."""
    name, *pairs = spec.split(":")
    base = name.split("+")[0]
    if base not in ARMS:
        raise SystemExit(f"--arms: unknown arm {base!r} (known: {', '.join(ARMS)})")
    train, model = dict(ARMS[base][0]), dict(ARMS[base][1])
    model_fields = {"embedding_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                    "generator_size", "max_position_embeddings", "hidden_dropout", "attention_dropout"}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        value: Any = {"true": True, "false": False}.get(raw.lower(), raw)
        with contextlib.suppress(ValueError, TypeError):
            value = value if isinstance(value, bool) else float(raw) if any(c in raw for c in ".e") else int(raw)
        (model if key in model_fields else train)[key] = value
    return spec.replace(":", "_").replace("=", "").replace("/", "-"), train, model


def pretrain_for(minutes: float, data: str, held: str, out: Path, train: dict, model: dict, batch: int,
                 seed: int, steps: int = 0) -> tuple[Path, int, float]:
    """Probe the step rate (unless ``steps`` is given), then pre-train for at most ``minutes``; returns (run, steps
    planned, tokens/s of the probe, 0 without one)."""
    def config(max_steps: int, **kw: Any) -> PretrainConfig:
        values = dict(data=data, out=str(out), max_steps=max_steps, batch_size=batch, log_every=25, seed=seed,
                      warmup_steps=max(1, max_steps // 10), save_every=max(500, max_steps), held_out=held)
        fields = {**values, **train, **kw}
        return PretrainConfig.for_preset(fields.pop("preset", "tiny"), **fields)

    if steps:
        tokens_per_s = 0.0
        print(f"  {out.name}: {steps} steps (--steps), stopping at {minutes:g} minutes if not done", flush=True)
    else:
        steps, tokens_per_s = plan_steps(config(10_000), minutes, model_overrides=model, share=0.92)
        print(f"  {out.name}: {tokens_per_s:,.0f} tokens/s in the probe -> {steps} steps", flush=True)
    return pretrain(config(steps, max_minutes=minutes), model_overrides=model, overwrite=True, progress=False), \
        steps, tokens_per_s


def finetune(models: dict[str, Path], tasks: str, train_limit: int, seeds: int, out: Path, random_arm: bool,
             glue: Path) -> dict[str, Any]:
    res = harness.run_script("finetune_glue.py", "--tasks", tasks, "--seeds", seeds, "--data", glue, "--train-limit",
                             train_limit, "--precision", "auto", "--out", out,
                             "--arms", "pretrained,random" if random_arm else "pretrained",
                             *(x for name, path in models.items() for x in ("--model", f"{name}={path}")))
    if res.returncode:
        raise SystemExit(f"finetune_glue failed:\n{res.stderr[-3000:]}")
    return harness.last_json(res.stdout)["results"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared training shards")
    p.add_argument("--held-out", required=True, help="prepared held-out shards (same tokenizer)")
    p.add_argument("--arms", default="tiny,wide2x256,deep4x128",
                   help="comma-separated; NAME[:field=value...] overrides a pretrain or model field")
    p.add_argument("--minutes", type=float, default=6.0, help="pre-training wall-clock budget per arm")
    p.add_argument("--steps", type=int, default=0,
                   help="plan this many steps instead of probing the rate (the 16-step probe measured 25k tokens/s for "
                        "a run that went at 33-35k); the run still stops at --minutes")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tasks", default="sst2")
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-batches", type=int, default=40)
    p.add_argument("--glue", type=Path, default=GLUE, help="GLUE folder with one sub-folder per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/cpu-recipe"))
    args = p.parse_args()
    if args.steps < 0:
        raise SystemExit(f"--steps: expected a positive number of steps (or 0 to probe), got {args.steps}")

    held = PretrainingData(args.held_out, seed=0)
    unigram = harness.unigram_for(args.data, held)
    results_file = args.out / "results.json"
    rows: list[dict[str, Any]] = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {r["arm"] for r in rows}
    random_done: dict[str, dict] = {r["shape_key"]: r["random"] for r in rows if r.get("random")}
    for spec in args.arms.split(","):
        name, train, model = parse_arm(spec)
        if name in done:
            continue
        print(f"arm {name}: {train} {model}", flush=True)
        run, steps, tps = pretrain_for(args.minutes, args.data, args.held_out, args.out / name, train, model,
                                       args.batch_size, args.seed, args.steps)
        ckpt = resolve_checkpoint(run)
        net = load_checkpoint(ckpt).eval()
        own, uni = harness.detection(net, held, unigram, args.eval_batches)
        shape = net.config.discriminator
        shape_key = f"{shape.num_layers}x{shape.hidden_size}e{shape.embedding_size}v{shape.vocab_size}"
        need_random = shape_key not in random_done
        ft = finetune({name: ckpt}, args.tasks, args.train_limit, args.seeds, args.out / f"ft-{name}", need_random,
                      args.glue)
        scores = {t: {arm: v[get_task(t).metric] for arm, v in r.items()} for t, r in ft.items()}
        if need_random:
            random_done[shape_key] = {t: s["random"] for t, s in scores.items()}
        _, metrics = read_metrics_csv(run / METRICS_FILE)
        row = {"arm": name, "train": train, "model": model, "shape_key": shape_key,
               "params_disc": sum(q.numel() for q in net.discriminator.parameters()), "steps": steps,
               "steps_done": int(metrics[-1]["step"]), "tokens_per_s": tps,
               "tokens_per_s_run": statistics.median(float(m["tokens_per_s"]) for m in metrics
                                                     if m.get("tokens_per_s")),
               "auc_own": own.auc, "auc_unigram": uni.auc, "recall_own": own.recall, "precision_own": own.precision,
               "generator_accuracy": own.mlm_accuracy,
               "pretrained": {t: s[name] for t, s in scores.items()}, "random": random_done[shape_key]}
        rows.append(row)
        args.out.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(rows, indent=1))
        print(f"  {name}: AUC own {own.auc:.3f} unigram {uni.auc:.3f}, gen acc {own.mlm_accuracy:.3f}; "
              + ", ".join(f"{t} {row['pretrained'][t]:.3f} vs random {row['random'][t]:.3f}" for t in scores),
              flush=True)

    tasks = args.tasks.split(",")
    print(f"\n{'arm':28}{'params':>9}{'steps':>7}{'tok/s':>8}{'AUC own':>9}{'AUC uni':>9}{'gen acc':>8}"
          + "".join(f"{t + ' pre/rand':>18}" for t in tasks))
    for r in rows:
        tps = r.get("tokens_per_s_run", r["tokens_per_s"])  # rows written before the run's median was recorded
        print(f"{r['arm']:28}{r['params_disc'] / 1e6:>8.2f}M{r['steps_done']:>7}{tps:>8.0f}"
              f"{r['auc_own']:>9.3f}{r['auc_unigram']:>9.3f}{r['generator_accuracy']:>8.3f}"
              + "".join(f"{r['pretrained'].get(t, float('nan')):>10.3f}/{r['random'].get(t, float('nan')):.3f}"
                        for t in tasks))
    harness.emit({"benchmark": "cpu_recipe", "minutes_per_arm": args.minutes, "tasks": tasks,
                  "train_limit": args.train_limit, "seeds": args.seeds, "arms": rows})


if __name__ == "__main__":
    main()
