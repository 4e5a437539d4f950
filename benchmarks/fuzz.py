"""Fuzz every reader and writer for a while: the long run of tests/test_fuzz_readers.py.

    python benchmarks/fuzz.py --minutes 3

The time is split evenly over the readers (tests/fuzz_targets.py: corpus files, prepare's shards, GLUE-style
TSV/CSV/JSONL, SQuAD/CMRC JSON and the scorer, CoNLL, TOML/JSON configs and config values, checkpoint folders,
prepared data folders, word vectors). For each it prints the inputs tried, how many gave a result, how many an
ElectraError (one line), and how many anything else (unexpected: a bug), with the first few reproducers; then
a final JSON line. Exit status 1 when anything unexpected happened.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

from fuzz_targets import TARGETS, Target, outcome  # noqa: E402

REPRODUCERS = 3


def fuzz(target: Target, seconds: float, seed: int) -> dict[str, Any]:
    """Feed ``target`` fresh inputs (new Hypothesis seeds, chunk by chunk) until ``seconds`` have passed."""
    counts: dict[str, Any] = {"tried": 0, "result": 0, "error": 0, "unexpected": 0, "reproducers": []}
    deadline = time.monotonic() + seconds
    chunk = 0
    while time.monotonic() < deadline:
        @settings(max_examples=25, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @hypothesis_seed(seed * 100_003 + chunk)
        @given(target.strategy)
        def run(value: Any) -> None:
            if time.monotonic() >= deadline:
                return
            counts["tried"] += 1
            try:
                counts[outcome(target, value)] += 1
            except Exception as e:  # noqa: BLE001 - counting them is the point
                counts["unexpected"] += 1
                if len(counts["reproducers"]) < REPRODUCERS:
                    counts["reproducers"].append({"input": repr(value)[:400],
                                                  "exception": f"{type(e).__name__}: {e}"[:400]})

        run()
        chunk += 1
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="total time, split evenly over the readers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="comma-separated reader names (default: all)")
    args = p.parse_args()
    logging.disable(logging.WARNING)  # the readers' warnings about damaged inputs are expected here
    targets = [t for t in TARGETS if not args.only or t.name in args.only.split(",")]
    per = 60 * args.minutes / len(targets)
    report: dict[str, dict[str, Any]] = {}
    print(f"{'reader':<16}{'tried':>8}{'results':>9}{'errors':>8}{'unexpected':>11}")
    for t in targets:
        c = fuzz(t, per, args.seed)
        report[t.name] = c
        print(f"{t.name:<16}{c['tried']:>8}{c['result']:>9}{c['error']:>8}{c['unexpected']:>11}", flush=True)
        for r in c["reproducers"]:
            print(f"    {r['exception']}\n      input: {r['input']}")
    total = {k: sum(c[k] for c in report.values()) for k in ("tried", "result", "error", "unexpected")}
    print(f"{'total':<16}{total['tried']:>8}{total['result']:>9}{total['error']:>8}{total['unexpected']:>11}")
    print(json.dumps({"minutes": args.minutes, "seed": args.seed, **total,
                      "readers": {k: {n: v for n, v in c.items() if n != "reproducers"} for k, c in report.items()}}))
    sys.exit(1 if total["unexpected"] else 0)


if __name__ == "__main__":
    main()
