"""Property-based fuzzing (Hypothesis) of every reader and writer: corpus files, prepare's shards, GLUE-style
TSV/CSV/JSONL, SQuAD/CMRC JSON (+ the scorer), CoNLL, TOML/JSON configs and config values, checkpoint folders
(ours, training, fine-tuned, Hugging Face, tokenizer), prepared data folders and word-vector files.

The property: a result, or an ``ElectraError`` with a one-line message; never another exception, never a
partially written output. A bounded, derandomized number of examples per reader keeps CI deterministic and
fast; ``benchmarks/fuzz.py --minutes N`` runs the same targets for longer.
"""

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS, outcome

# Examples per reader in CI (the whole module stays well under a minute on 2 cores).
EXAMPLES = {"corpus": 150, "prepare": 50, "glue": 200, "squad-file": 150, "squad-object": 150, "conll": 150,
            "config-file": 150, "config-values": 300, "checkpoint": 80, "prepared-data": 80, "word-vectors": 150}


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_reader_gives_a_result_or_a_one_line_electra_error(target):
    @settings(max_examples=EXAMPLES[target.name], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def check(value):
        outcome(target, value)

    check()


@pytest.mark.slow
def test_fuzz_benchmark_prints_counts_per_reader_and_a_json_line():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "fuzz.py"), "--minutes", "0.05", "--only",
                           "conll,glue"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report["readers"]) == {"conll", "glue"} and report["unexpected"] == 0
    assert report["tried"] == report["result"] + report["error"] > 0
