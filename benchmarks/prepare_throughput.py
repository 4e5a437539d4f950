"""Throughput of ``electra prepare`` (raw text -> finished shards) next to plain ``tokenizers`` encode_batch.

Same text, same tokenizer, same run: the figure is our overhead over raw tokenization. Also the peak memory of
``prepare`` on a small and a large slice of the corpus (it must stay flat: the text is streamed).

    python benchmarks/prepare_throughput.py                       # ../shared/data/corpus/en, 10 MB vs all
    python benchmarks/prepare_throughput.py --small-mb 10 --limit-mb 30

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import harness
from electra.data.corpus import Corpus
from electra.tokenization import load_tokenizer, train_tokenizer


def files_up_to(corpus: Path, limit_mb: float | None) -> list[Path]:
    """The corpus's .txt files in sorted order, whole files, until ``limit_mb`` is reached."""
    files, total = [], 0
    for f in sorted(corpus.glob("*.txt")):
        if limit_mb is not None and total >= limit_mb * 1e6:
            break
        files.append(f)
        total += f.stat().st_size
    return files


def raw_encode(tok_dir: Path, files: list[Path], fast: bool, batch_chars: int = 1 << 20) -> float:
    """Seconds for tokenizers' encode_batch over the same lines (text already in memory, untimed)."""
    tok = load_tokenizer(tok_dir)
    batches, batch, chars = [], [], 0
    for line in Corpus(files).texts():
        batch.append(line)
        chars += len(line)
        if chars >= batch_chars:
            batches.append(batch)
            batch, chars = [], 0
    batches.append(batch)
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    t0 = time.perf_counter()
    n = 0
    for b in batches:
        n += sum(len(e.ids) for e in encode(b, add_special_tokens=False))
    return time.perf_counter() - t0


def prepare_in_subprocess(tok_dir: Path, files: list[Path], out: Path, workers: int) -> dict:
    """Run prepare in a fresh process; its summary plus the process's peak resident memory."""
    code = textwrap.dedent(f"""
        import json, resource
        from electra.data.prepare import prepare
        s = prepare({[str(f) for f in files]!r}, {str(tok_dir)!r}, {str(out)!r}, max_seq_len=128,
                    workers={workers}, progress=False)
        print(json.dumps({{"bytes": s.bytes, "seconds": s.seconds, "tokens": s.tokens,
                          "documents": s.documents,
                          "examples": s.examples,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(harness.ROOT / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=harness.DATA / "corpus" / "en")
    p.add_argument("--tokenizer", type=Path,
                   help="tokenizer dir (default: train 30522 WordPiece on the demo text)")
    p.add_argument("--small-mb", type=float, default=10.0, help="the small slice for the memory comparison")
    p.add_argument("--limit-mb", type=float, default=None, help="cap the large slice (default: whole corpus)")
    p.add_argument("--workers", type=int, default=0, help="prepare --workers for the timed runs")
    args = p.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"{args.corpus}: corpus folder not found")

    with tempfile.TemporaryDirectory(prefix="electra-bench-") as tmp:
        tmp = Path(tmp)
        tok_dir = args.tokenizer
        if tok_dir is None:
            demo = harness.ROOT / "data" / "demo" / "en-wiki-sample.txt"
            tok_dir = tmp / "tok"
            train_tokenizer(Corpus([demo]).texts(), tok_dir, vocab_size=30522, show_progress=False)
        large, small = files_up_to(args.corpus, args.limit_mb), files_up_to(args.corpus, args.small_mb)
        rows = {}
        for name, files in (("small", small), ("large", large)):
            rows[name] = prepare_in_subprocess(tok_dir, files, tmp / f"out-{name}", args.workers)
        t_batch = raw_encode(tok_dir, large, fast=False)
        t_fast = raw_encode(tok_dir, large, fast=True)

    mb = rows["large"]["bytes"] / 1e6
    ours = rows["large"]["seconds"]
    lines = [
        ("input (large slice)", f"{mb:.1f} MB, {len(large)} files, {rows['large']['documents']:,} docs, "
                                f"{rows['large']['tokens']:,} tokens"),
        ("tokenizers encode_batch", f"{mb / t_batch:.2f} MB/s ({t_batch:.1f} s, text preloaded)"),
        ("tokenizers encode_batch_fast", f"{mb / t_fast:.2f} MB/s ({t_fast:.1f} s, text preloaded)"),
        ("electra prepare (end to end)",
         f"{mb / ours:.2f} MB/s ({ours:.1f} s: read, tokenize, write, index)"),
        ("prepare time / encode_batch", f"{ours / t_batch:.2f}x"),
        (f"peak RSS, {rows['small']['bytes'] / 1e6:.0f} MB input", f"{rows['small']['peak_rss_mb']:.0f} MB"),
        (f"peak RSS, {mb:.0f} MB input", f"{rows['large']['peak_rss_mb']:.0f} MB"),
    ]
    print(harness.table([("", f"<{max(len(k) for k, _ in lines)}"), ("", "")], lines, sep="  ", header=False))
    harness.emit({
        "benchmark": "prepare_throughput", "input_mb": round(mb, 2), "tokens": rows["large"]["tokens"],
        "encode_batch_mb_s": round(mb / t_batch, 3), "encode_batch_fast_mb_s": round(mb / t_fast, 3),
        "prepare_mb_s": round(mb / ours, 3), "prepare_over_encode_batch": round(ours / t_batch, 3),
        "small_input_mb": round(rows["small"]["bytes"] / 1e6, 2),
        "peak_rss_mb_small": round(rows["small"]["peak_rss_mb"], 1),
        "peak_rss_mb_large": round(rows["large"]["peak_rss_mb"], 1), "workers": args.workers,
    })


if __name__ == "__main__":
    main()
