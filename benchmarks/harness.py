"""What the benchmark scripts share: paths, process set-up, timing statistics, side-by-side timing, a table, JSON.

``python benchmarks/NAME.py`` puts this folder first on ``sys.path``, so a script imports ``harness`` (and another
benchmark, ``from inference_throughput import ...``) without editing it; ``electra`` is the installed package.
torch is not imported here (nor by the ``electra`` module used), so a script can set its process up before torch loads.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from electra.training.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"  # the shared data sets, beside the checkout
# glibc malloc thresholds (what ``electra`` commands set at run time): big activation/gradient buffers stay in the
# heap instead of being mmap'ed, faulted in and unmapped every step. Read when a process starts: see restart_with.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def restart_with(malloc: bool = True, wait_policy: str | None = None) -> None:
    """Re-exec this script once with ``MALLOC_ENV`` (unless ``malloc`` is False) and ``OMP_WAIT_POLICY`` set, so
    that every implementation it times runs under the same settings (both are read only at start-up)."""
    env = {**(MALLOC_ENV if malloc else {}), **({"OMP_WAIT_POLICY": wait_policy} if wait_policy else {})}
    if all(os.environ.get(k) == v for k, v in env.items()):
        return
    os.environ.update(env)
    os.execv(sys.executable, [sys.executable, *sys.argv])


def set_threads(n: int | None) -> None:
    """Intra-op threads: torch's pool if torch is loaded, and OMP/MKL_NUM_THREADS for what loads or starts later."""
    if n:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN without values."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


median = statistics.median


def paired(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of ``num[i] / den[i]``: round i of both ran under the same machine load, so this is less
    sensitive to the machine's speed drifting during a run than a ratio of medians (zero denominators skipped)."""
    ratios = [a / b for a, b in zip(num, den) if b]
    return statistics.median(ratios) if ratios else float("nan")


def alternate(fns: dict[str, Callable[[int], object]], rounds: int, *, reverse_odd: bool = False,
              before: Callable[[], object] | None = None, after: Callable[[], object] | None = None,
              ) -> dict[str, list[float]]:
    """Seconds of ``fn(round)`` per name, the implementations taking turns round after round (reversed on odd
    rounds with ``reverse_odd``) so that machine noise hits all alike. ``before`` runs ahead of each call off the
    clock (e.g. ``gc.collect``), ``after`` on it (e.g. a device sync)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name in list(fns)[::-1] if reverse_odd and r % 2 else fns:
            if before:
                before()
            t = time.perf_counter()
            fns[name](r)
            if after:
                after()
            times[name].append(time.perf_counter() - t)
    return times


def table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[object]], sep: str = "",
          header: bool = True) -> str:
    """A header line and one line per row; ``columns`` are (title, format spec such as ``">10.1f"``), each title
    aligned and padded as its spec's leading alignment and width say."""
    def head(title: str, spec: str) -> str:
        m = re.match(r"[<>^]\d+", spec)
        return format(title, m.group() if m else "")

    lines = [sep.join(head(title, spec) for title, spec in columns)] if header else []
    lines += [sep.join(format(v, spec) for v, (_, spec) in zip(row, columns)) for row in rows]
    return "\n".join(lines)


def emit(result: dict) -> dict:
    """Print the final JSON line (what tests and other scripts read back with :func:`last_json`) and return it."""
    print(json.dumps(result), flush=True)
    return result


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_script(name: str, *args: object, **kwargs) -> subprocess.CompletedProcess:
    """``benchmarks/NAME`` in a fresh interpreter from the checkout's root, its output captured as text."""
    kwargs.setdefault("cwd", ROOT)
    return subprocess.run([sys.executable, str(HERE / name), *map(str, args)], capture_output=True, text=True, **kwargs)


def named(spec: str, default: str | None = None) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare PATH is named ``default``, or by its last component."""
    name, sep, path = spec.partition("=")
    return (name, path) if sep else (default or Path(spec).name, spec)


def read_tsv(path: Path) -> list[list[str]]:
    """A GLUE-style TSV's rows as they are (the header included; no quoting)."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def unigram_for(train_dir: Path, held, *exclude: int):
    """The unigram distribution of prepared shards, special tokens (``held``'s roles, unk and any other special
    token) and ``exclude`` left out: the corruption that is the same for every model compared."""
    from electra.data.pretraining_data import PretrainingData
    from electra.detection_eval import unigram_distribution

    specials = [held.pad_id, held.cls_id, held.sep_id, held.mask_id, *held.other_special_ids, *exclude]
    return unigram_distribution(PretrainingData(train_dir, seed=0), exclude=specials)


def detection(model, held, unigram, batches: int) -> tuple:
    """Held-out detection against the model's own generator's replacements and against ``unigram``'s."""
    from electra.detection_eval import evaluate_on_data

    model = model.eval()
    return (evaluate_on_data(model, held, batches, seed=1),
            evaluate_on_data(model, held, batches, seed=1, unigram=unigram))
