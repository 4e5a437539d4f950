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

import harness

CORPUS = harness.ROOT / "tests" / "fixtures" / "corpus" / "tiny-en.txt"
ENV = {**os.environ, "PYTHONPATH": str(harness.ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CITIES = ["paris", "london", "rome", "berlin", "madrid", "vienna", "lisbon", "oslo", "dublin", "athens", "prague",
          "warsaw"]
COUNTRIES = ["france", "england", "italy", "germany", "spain", "austria", "portugal", "norway", "ireland", "greece",
             "czechia", "poland"]
FILLER = ["the", "river", "runs", "through", "green", "hills", "and", "old", "towns", "where", "people", "walk",
          "every", "day"]


def electra(*args: Any) -> list[str]:
    return [sys.executable, "-m", "electra", *map(str, args)]


# ---- the runs ---------------------------------------------------------------------------------------------
def toy_squad(articles: int, questions: int, rng: random.Random) -> dict:
    """SQuAD-format toy data: 'The capital of X is Y.' asked as 'What is the capital of X?'."""
    data = []
    for a in range(articles):
        paras = []
        for p in range(questions):
            i = rng.randrange(len(CITIES))
            country, city = COUNTRIES[i].title(), CITIES[i].title()
            context = (f"{' '.join(rng.sample(FILLER, 4)).capitalize()}. The capital of {country} is {city}. "
                       f"{' '.join(rng.sample(FILLER, 3))}.")
            qa = {"id": f"a{a}p{p}", "question": f"What is the capital of {country}?", "is_impossible": False,
                  "answers": [{"text": city, "answer_start": context.index(city)}]}
            paras.append({"context": context, "qas": [qa]})
        data.append({"title": f"t{a}", "paragraphs": paras})
    return {"version": "1.1", "data": data}


def setup(work: Path) -> dict[str, Any]:
    """Prepared shards for pre-training; a tiny checkpoint and toy data for the three fine-tuning tasks."""
    import torch

    from electra.checkpoint import save_checkpoint
    from electra.config import ModelConfig
    from electra.data.prepare import prepare
    from electra.modeling import Electra
    from electra.tokenization import load_tokenizer, train_tokenizer

    lines = [x for x in CORPUS.read_text().splitlines() if x.strip()]
    train_tokenizer(lines, work / "tok", vocab_size=600, show_progress=False)
    prepare([CORPUS], work / "tok", work / "shards", max_seq_len=64, progress=False)
    torch.manual_seed(0)  # a randomly initialised tiny checkpoint with the same tokenizer: the fine-tuning start
    model = Electra(ModelConfig.preset("tiny", vocab_size=load_tokenizer(work / "tok").get_vocab_size()))
    ckpt = save_checkpoint(model, work / "span" / "ckpt", tokenizer_dir=work / "tok")
    cls = work / "cls"
    cls.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 48), ("dev", 16)):
        rows = ["a\tb\ty"] + [f"the {c} river is {'green' if (p := rng.random() < 0.5) else 'old'}\tthe day\t"
                              f"{'pos' if p else 'neg'}" for c in rng.choices(CITIES, k=n)]
        (cls / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (work / "squad.json").write_text(json.dumps(toy_squad(8, 4, random.Random(0))))
    rows = []
    for i in range(48):
        rows += [f"{CITIES[i % 12]} B-LOC", f"{FILLER[i % 14]} O", f"{COUNTRIES[(i * 5) % 12]} B-LOC", ""]
    (work / "tags.txt").write_text("\n".join(rows))
    common = ["--model", ckpt, "--batch-size", "8", "--lr", "1e-3", "--save-every", "1", "--eval-every", "4",
              "--quiet", "--device", "cpu", "--precision", "fp32"]
    return {name: electra(*cmd) for name, cmd in {
        "pretrain": ["pretrain", "--data", work / "shards", "--preset", "tiny", "--max-steps", "24", "--batch-size",
                     "4", "--warmup-steps", "2", "--save-every", "1", "--keep-last", "2", "--log-every", "1",
                     "--precision", "fp32", "--device", "cpu", "--no-progress"],
        "classification": ["finetune", "--task", "custom", "--text-fields", "a,b", "--label-field", "y", "--data",
                           cls, "--max-steps", "14", *common],
        "qa": ["finetune", "--task", "squad1", "--data", work / "squad.json", "--dev-fraction", "0.25",
               "--max-seq-len", "48", "--doc-stride", "16", "--max-steps", "12", *common],
        "tagging": ["finetune", "--task", "tags", "--data", work / "tags.txt", "--dev-file", work / "tags.txt",
                    "--dev-limit", "16", "--max-seq-len", "16", "--max-steps", "14", *common],
    }.items()}


def fingerprint(run: Path, mode: str) -> dict[str, Any]:
    """What must be identical: the final checkpoint's files, and the curve (pre-training) or the best model and
    results (fine-tuning)."""
    from electra.checkpoint import find_latest_checkpoint

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


def timed_run(cmd: list[str], run: Path) -> tuple[float, float]:
    """Run ``cmd`` to the end: (seconds until its first checkpoint exists, seconds in all)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start, first = time.monotonic(), None
    while proc.poll() is None:
        if first is None and (run / "checkpoints").is_dir():
            first = time.monotonic() - start
        time.sleep(0.002)
    if proc.returncode != 0:
        raise SystemExit(f"reference run failed: {proc.stderr.read()[-2000:]}")
    total = time.monotonic() - start
    return (first if first is not None else total), total


def kill_once(cmd: list[str], run: Path, rng: random.Random, timing: tuple[float, float]) -> str:
    """Start ``cmd`` and SIGKILL it: before its first checkpoint (1 in 10), at a random moment of its training,
    or while a checkpoint is being written (its temporary folder exists). Returns how it ended."""
    first, total = timing
    kind = rng.choices(["startup", "random", "writing"], [1, 4.5, 4.5])[0]
    delay = rng.uniform(0.3, first) if kind == "startup" else rng.uniform(0.0, max(0.1, 0.85 * (total - first)))
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start, trained = time.monotonic(), None
    ckpts = run / "checkpoints"
    while proc.poll() is None:
        now = time.monotonic()
        if trained is None and (kind == "startup" or ckpts.is_dir()):
            trained = now  # the clock starts at launch (startup) or once a checkpoint exists
        due = trained is not None and now - trained >= (delay if kind != "writing" else delay / 2)
        writing = kind == "writing" and due and ckpts.is_dir() and any(".tmp-" in p.name for p in ckpts.iterdir())
        if writing or (due and kind != "writing") or now - start > 3 * total:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return ("killed while writing a checkpoint" if writing
                    else f"killed {now - start:.1f} s in ({kind})")
        time.sleep(0.001)
    return "finished before the kill"


def trial(name: str, cmd: list[str], reference: dict[str, Any], work: Path, rng: random.Random,
          timing: tuple[float, float]) -> tuple[bool, str]:
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    mode = "pretrain" if name == "pretrain" else "finetune"
    notes = []
    for _ in range(rng.choice([1, 2])):
        notes.append(kill_once([*cmd, "--out", str(run), *(["--resume"] if notes else [])], run, rng, timing))
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
            references, timings = {}, {}
            for name in names:  # the uninterrupted runs
                out = work / f"reference-{name}"
                shutil.rmtree(out, ignore_errors=True)
                timings[name] = timed_run([*commands[name], "--out", str(out)], out)
                references[name] = fingerprint(out, mode)
            identical = lost = kills = during_write = 0
            for i in range(args.trials):
                name = names[i % len(names)]
                ok, note = trial(name, commands[name], references[name], work, rng, timings[name])
                identical, lost = identical + ok, lost + (not ok)
                kills += note.count("killed")
                during_write += note.count("while writing")
                print(f"{mode:<9} trial {i + 1:>3}  {name:<15} {'identical' if ok else 'LOST':<10} {note}",
                      flush=True)
            print(f"{mode}: {identical} of {args.trials} identical, {lost} lost ({kills} SIGKILLs, {during_write} of "
                  "them while a checkpoint was being written)")
            summary[mode] = {"trials": args.trials, "identical": identical, "lost": lost, "kills": kills,
                             "kills_during_write": during_write}
        harness.emit({"seed": args.seed, **summary})
        sys.exit(0 if all(s["lost"] == 0 for s in summary.values()) else 1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
