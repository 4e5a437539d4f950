"""Reliability trial: runs SIGKILLed at random moments (also while a checkpoint is being written), resumed with
``--resume``, and compared bitwise with an uninterrupted run.

    python benchmarks/kill_resume.py --trials 20                    # pre-training and fine-tuning
    python benchmarks/kill_resume.py --trials 20 --mode finetune    # classification, QA, tagging in turn

Tiny configs on the CPU in fp32 (``electra pretrain --preset tiny``, ``electra finetune`` from a tiny checkpoint),
a checkpoint after every step so that kills often land during a write. Each trial kills its run once or twice
(a random delay, or the moment a checkpoint's temporary folder appears), then resumes it to the end. Identical:
the final weights, optimizer state and loss curve (pre-training) or the best and final models and results
(fine-tuning) equal the uninterrupted run's byte for byte. Lost: anything else (a failed resume, a difference).
Prints one line per trial, the counts, and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
FIXTURES = ROOT / "tests" / "fixtures"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def electra(*args: Any) -> list[str]:
    return [sys.executable, "-m", "electra", *map(str, args)]


# ---- the runs ---------------------------------------------------------------------------------------------
def setup(work: Path) -> dict[str, Any]:
    """Prepared shards for pre-training; a tiny checkpoint and toy data for the three fine-tuning tasks."""
    from electra.data.prepare import prepare
    from electra.tokenization import train_tokenizer
    from qa_fixtures import CITIES, COUNTRIES, FILLER, tiny_checkpoint, toy_squad, write_json

    lines = [x for x in (FIXTURES / "corpus" / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, work / "tok", vocab_size=600, show_progress=False)
    prepare([FIXTURES / "corpus" / "tiny-en.txt"], work / "tok", work / "shards", max_seq_len=64, progress=False)
    ckpt = tiny_checkpoint(work / "span")
    cls = work / "cls"
    cls.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 48), ("dev", 16)):
        rows = ["a\tb\ty"] + [f"the {c} river is {'green' if (p := rng.random() < 0.5) else 'old'}\tthe day\t"
                              f"{'pos' if p else 'neg'}" for c in rng.choices(CITIES, k=n)]
        (cls / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    write_json(work / "squad.json", toy_squad(8, 4))
    rows = []
    for i in range(48):
        rows += [f"{CITIES[i % 12]} B-LOC", f"{FILLER[i % 14]} O", f"{COUNTRIES[(i * 5) % 12]} B-LOC", ""]
    (work / "tags.txt").write_text("\n".join(rows))
    common = ["--model", ckpt, "--batch-size", "8", "--lr", "1e-3", "--save-every", "1", "--eval-every", "4",
              "--quiet", "--device", "cpu", "--precision", "fp32"]
    return {
        "pretrain": ["pretrain", "--data", work / "shards", "--preset", "tiny", "--max-steps", "24", "--batch-size",
                     "4", "--warmup-steps", "2", "--save-every", "1", "--keep-last", "2", "--log-every", "1",
                     "--precision", "fp32", "--device", "cpu", "--no-progress"],
        "classification": ["finetune", "--task", "custom", "--text-fields", "a,b", "--label-field", "y", "--data",
                           cls, "--max-steps", "14", *common],
        "qa": ["finetune", "--task", "squad1", "--data", work / "squad.json", "--dev-fraction", "0.25",
               "--max-seq-len", "48", "--doc-stride", "16", "--max-steps", "12", *common],
        "tagging": ["finetune", "--task", "tags", "--data", work / "tags.txt", "--dev-file", work / "tags.txt",
                    "--dev-limit", "16", "--max-seq-len", "16", "--max-steps", "14", *common],
    }


def fingerprint(run: Path, mode: str) -> dict[str, Any]:
    """What must be identical: the final checkpoint's files, and the curve (pre-training) or the best model and
    results (fine-tuning)."""
    from electra.training.checkpointing import find_latest_checkpoint

    latest = find_latest_checkpoint(run)
    if latest is None:
        return {"error": "no checkpoint"}
    out: dict[str, Any] = {"step": latest.name}
    for name in ("model.safetensors", "optimizer.safetensors", "rng.json"):
        out[name] = (latest / name).read_bytes() if (latest / name).is_file() else None
    if mode == "pretrain":
        rows = (run / "metrics.csv").read_text().splitlines()
        out["losses"] = [r.split(",")[:2] for r in rows]
    else:
        res = json.loads((run / "results.json").read_text())
        out["results"] = (res["best"], res["best_step"], res["final"], res["steps"])
        out["best"] = (run / "best" / "model.safetensors").read_bytes()
    return out


def kill_once(cmd: list[str], run: Path, rng: random.Random, expected_seconds: float) -> str:
    """Start ``cmd``, SIGKILL it at a random moment or while a checkpoint is being written; how it ended."""
    during_write = rng.random() < 0.5
    delay = rng.uniform(0.2, 1.0) * expected_seconds
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    ckpts = run / "checkpoints"
    while proc.poll() is None:
        elapsed = time.monotonic() - start
        writing = during_write and elapsed > delay / 2 and ckpts.is_dir() and any(
            ".tmp-" in p.name for p in ckpts.iterdir())
        if writing or (not during_write and elapsed >= delay) or elapsed > 3 * expected_seconds:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "killed while writing a checkpoint" if writing else f"killed after {elapsed:.1f} s"
        time.sleep(0.002)
    return "finished before the kill"


def trial(name: str, cmd: list[str], reference: dict[str, Any], work: Path, rng: random.Random,
          seconds: float) -> tuple[bool, str]:
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    mode = "pretrain" if name == "pretrain" else "finetune"
    notes = []
    for _ in range(rng.choice([1, 2])):
        notes.append(kill_once([*cmd, "--out", str(run), *(["--resume"] if notes else [])], run, rng, seconds))
    done = subprocess.run([*cmd, "--out", str(run), "--resume"], env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        return False, "; ".join(notes) + f"; resume failed: {done.stderr.strip().splitlines()[-1:]}"
    got = fingerprint(run, mode)
    diff = [k for k in reference if got.get(k) != reference[k]]
    return not diff, "; ".join(notes) + (f"; differs in {', '.join(diff)}" if diff else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=20, help="trials per mode")
    p.add_argument("--mode", choices=["pretrain", "finetune", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="scratch folder (default: a temporary one, removed at the end)")
    args = p.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="electra-kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    try:
        commands = setup(work)
        modes = ["pretrain", "finetune"] if args.mode == "both" else [args.mode]
        summary: dict[str, Any] = {}
        for mode in modes:
            names = ["pretrain"] if mode == "pretrain" else ["classification", "qa", "tagging"]
            references, seconds = {}, {}
            for name in names:  # the uninterrupted runs
                out = work / f"reference-{name}"
                t0 = time.monotonic()
                subprocess.run([*commands[name], "--out", str(out)], env=ENV, check=True, capture_output=True)
                seconds[name] = time.monotonic() - t0
                references[name] = fingerprint(out, mode)
            identical = lost = 0
            for i in range(args.trials):
                name = names[i % len(names)]
                ok, note = trial(name, commands[name], references[name], work, rng, seconds[name])
                identical, lost = identical + ok, lost + (not ok)
                print(f"{mode:<9} trial {i + 1:>3}  {name:<15} {'identical' if ok else 'LOST':<10} {note}",
                      flush=True)
            print(f"{mode}: {identical} of {args.trials} identical, {lost} lost")
            summary[mode] = {"trials": args.trials, "identical": identical, "lost": lost}
        print(json.dumps({"seed": args.seed, **summary}))
        sys.exit(0 if all(s["lost"] == 0 for s in summary.values()) else 1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
