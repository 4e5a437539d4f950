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
import importlib.util
import logging
import sys
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

import harness

REPRODUCERS = 3


def load_targets() -> Any:
    """``tests/fuzz_targets.py`` (this script is the long run of the tests' targets), loaded from its file: the one
    module a benchmark takes from tests/, without putting tests/ on ``sys.path``."""
    spec = importlib.util.spec_from_file_location("fuzz_targets", harness.ROOT / "tests" / "fuzz_targets.py")
    module = sys.modules["fuzz_targets"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


targets = load_targets()


def fuzz(target: Any, seconds: float, seed: int) -> dict[str, Any]:
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
                counts[targets.outcome(target, value)] += 1
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
    chosen = [t for t in targets.TARGETS if not args.only or t.name in args.only.split(",")]
    per = 60 * args.minutes / len(chosen)
    report: dict[str, dict[str, Any]] = {}
    keys = ("tried", "result", "error", "unexpected")
    columns = [("reader", "<16"), ("tried", ">8"), ("results", ">9"), ("errors", ">8"), ("unexpected", ">11")]
    print(harness.table(columns, []))
    for t in chosen:
        c = fuzz(t, per, args.seed)
        report[t.name] = c
        print(harness.table(columns, [(t.name, *(c[k] for k in keys))], header=False), flush=True)
        for r in c["reproducers"]:
            print(f"    {r['exception']}\n      input: {r['input']}")
    total = {k: sum(c[k] for c in report.values()) for k in keys}
    print(harness.table(columns, [("total", *total.values())], header=False))
    harness.emit({"minutes": args.minutes, "seed": args.seed, **total,
                  "readers": {k: {n: v for n, v in c.items() if n != "reproducers"} for k, c in report.items()}})
    sys.exit(1 if total["unexpected"] else 0)


if __name__ == "__main__":
    main()
