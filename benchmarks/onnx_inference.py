"""CPU inference of a sequence classifier: our backends against `transformers`, `torch.ao` int8 and onnxruntime.

Every implementation holds the same weights (a fine-tuned run from ``--model``, trained with ``--head
transformers`` so ``ElectraForSequenceClassification`` can hold them too, or random weights of ``--preset``):

  transformers_fp32   ElectraForSequenceClassification, eval mode (SDPA attention)
  torch_ao_int8       the same after ``torch.ao.quantization.quantize_dynamic`` of every Linear
  ort_fp32            transformers' model exported with ``torch.onnx.export(dynamo=False)``, eager attention,
                      run by onnxruntime (its own graph optimisations on)
  ort_optimized       the same graph after ``onnxruntime.transformers.optimizer`` (bert fusions)
  ort_int8            the optimised graph after ``quant_pre_process`` + ``quantize_dynamic`` (int8 MatMul/Attention)
  ours_torch_*        ``electra.inference`` torch runners: fp32, bf16 (where the CPU has native bf16), int8
  ours_onnx_*         ``electra export --format onnx`` graphs on onnxruntime (fused; the last layer computes the
                      [CLS] row only; the head and the first FFN output in fp32): int8 = activations quantized per
                      row (MatMulNBits), int8_tensor = per tensor (DynamicQuantizeMatMul/QAttention),
                      int8_smooth = per tensor after SmoothQuant smoothing (``--calibration``: 1,000 SST-2 train
                      sentences outside the fine-tuning subset; with ``--model`` only)

Timed alternately in one process, round after round (each round runs every implementation once at batch 32 and
``--b1-reps`` times at batch 1), sequence length 128, the same threads (``--threads``) and wait policy for all:
``OMP_WAIT_POLICY`` (default PASSIVE; the script re-execs itself to set it, with the same glibc malloc settings as
the other benchmarks) and onnxruntime sessions without spinning. Reports batch-1 latency p50/p99 and batch-32
throughput, ratios to transformers fp32 and to onnxruntime int8 (also per round, paired), and — on SST-2 dev
(``--tsv``) with ``--model`` — each implementation's accuracy and its argmax agreement with transformers fp32.
Final line: JSON.

  python benchmarks/onnx_inference.py --model runs/sst2-small            # fine-tuned Small (--head transformers)
  python benchmarks/onnx_inference.py --preset base --rounds 3           # random weights
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import harness

SST2_DEV = harness.DATA / "glue" / "SST-2" / "dev.tsv"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="fine-tuned classification run trained with --head transformers")
    ap.add_argument("--preset", default="small", help="random weights of this preset when no --model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE"])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--b1-reps", type=int, default=10, help="batch-1 runs per implementation and round")
    ap.add_argument("--tsv", type=Path, default=SST2_DEV, help="SST-2 dev.tsv for accuracy and agreement")
    ap.add_argument("--agreement-limit", type=int, default=872)
    ap.add_argument("--alone", type=int, default=64, help="sentences also run alone (batch independence)")
    ap.add_argument("--skip", default="", help="comma-separated implementations to leave out")
    ap.add_argument("--train-limit", type=int, default=4000,
                    help="the fine-tuning run's --train-limit: its SST-2 train subset is kept out of the calibration "
                         "text of ours_onnx_int8_smooth")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    harness.restart_with(wait_policy=args.wait_policy)  # the same wait policy and malloc settings for every one
    harness.set_threads(args.threads)
    import numpy as np

    from electra.training.precision import cpu_has_fast_bf16
    from inference_throughput import ours_random, random_batch

    if args.model:
        from electra.tasks.runner import load_task_model

        model = load_task_model(args.model).eval()
        if model.head.dense is None:
            raise SystemExit("--model: the transformers comparison needs a run fine-tuned with --head transformers")
    else:
        from electra.config import ModelConfig

        model = ours_random(ModelConfig.preset(args.preset).discriminator, num_labels=2).eval()
    cfg = model.encoder.config
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="onnx-bench-") as tmp:
        impls = build(model, Path(tmp), args, skip, cpu_has_fast_bf16())
        big = {k: v.numpy() for k, v in random_batch(args.batch, args.seq, cfg.vocab_size).items()}
        one = {k: v[:1] for k, v in big.items()}
        report = {"model": args.model or f"random {args.preset}", "threads": args.threads, "seq": args.seq,
                  "batch": args.batch, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                  "rounds": args.rounds, "b1_reps": args.b1_reps}
        ref = impls["transformers_fp32"](big)
        report["max_abs_logit_diff_vs_transformers"] = {n: float(np.abs(f(big) - ref).max()) for n, f in impls.items()}
        times = measure(impls, big, one, args)
        report |= summarise(times, args)
        if args.model and args.tsv.is_file():
            report |= agreement(impls, args)
        elif args.model:
            print(f"agreement skipped: {args.tsv} not found")
    harness.emit(report)


# ---- the implementations ---------------------------------------------------------------------------------
def build(model, tmp: Path, args: argparse.Namespace, skip: set[str], bf16: bool) -> dict:
    """name -> fn(numpy batch) -> numpy logits."""
    import torch

    from electra.export.onnx import export_onnx
    from electra.export.session import ort_session
    from electra.inference import OnnxRunner, torch_task_runner
    from electra.tasks.runner import run_tokenizer_dir, save_task_model
    from inference_throughput import to_reference

    ref = to_reference(model)
    cfg = model.encoder.config
    hf_raw, hf_fused, hf_int8 = tmp / "hf.onnx", tmp / "hf-fused.onnx", tmp / "hf-int8.onnx"
    if {"ort_fp32", "ort_optimized", "ort_int8"} - skip:
        eager = copy.deepcopy(ref)
        eager.config._attn_implementation = "eager"
        export_transformers(eager, hf_raw, cfg.vocab_size)
        optimize(hf_raw, hf_fused, cfg)
        quantize(hf_fused, hf_int8, tmp)
    run_dir = save_task_model(model, tmp / "run" / "best",  # the tokenizer reads the calibration text
                              tokenizer=run_tokenizer_dir(args.model) if args.model else None)

    def hf(m):
        def run(b):
            with torch.inference_mode():
                return m(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.float().numpy()
        return run

    def ao():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hf(torch.ao.quantization.quantize_dynamic(copy.deepcopy(ref), {torch.nn.Linear},
                                                             dtype=torch.qint8))

    def ours_torch(precision):
        r = torch_task_runner(model, precision)
        return lambda b: r(b)["logits"]

    def ort(path):
        s = ort_session(path, args.threads)
        return lambda b: s.run(["logits"], {k: b[k] for k in INPUTS})[0]

    def ours_onnx(quantize, calibration=None):
        name = f"ours-{quantize}" + ("-smooth" if calibration else "")
        r = OnnxRunner(export_onnx(run_dir, tmp / name, quantize=quantize, calibration=calibration)[0], args.threads)
        return lambda b: r(b)["logits"]

    makers = {"transformers_fp32": lambda: hf(ref), "torch_ao_int8": ao, "ort_fp32": lambda: ort(hf_raw),
              "ort_optimized": lambda: ort(hf_fused), "ort_int8": lambda: ort(hf_int8),
              "ours_torch_fp32": lambda: ours_torch("fp32"), "ours_torch_bf16": lambda: ours_torch("bf16"),
              "ours_torch_int8": lambda: ours_torch("int8"), "ours_onnx_fp32": lambda: ours_onnx(None),
              "ours_onnx_int8": lambda: ours_onnx("int8"), "ours_onnx_int8_tensor": lambda: ours_onnx("int8-tensor")}
    if args.model and args.tsv.with_name("train.tsv").is_file():
        calib = calibration_file(args.tsv.with_name("train.tsv"), args.train_limit, tmp / "calibration.txt")
        makers["ours_onnx_int8_smooth"] = lambda: ours_onnx("int8-tensor", calib)
    if not bf16:
        print("ours_torch_bf16 left out: this CPU has no native bf16")
        skip = skip | {"ours_torch_bf16"}
    return {k: make() for k, make in makers.items() if k not in skip or k == "transformers_fp32"}


def calibration_file(train_tsv: Path, train_limit: int, out: Path, lines: int = 1000) -> Path:
    """1,000 SST-2 train sentences outside the fine-tuning run's ``--train-limit`` subset (a seeded sample, as
    ``int8_sensitivity.py``), one per line: the calibration text of ``ours_onnx_int8_smooth``."""
    from electra.data.glue import get_task, load_split

    train = load_split(get_task("sst2"), train_tsv.parent, "train")
    rest = outside_subset(len(train), train_limit)
    if not rest:
        raise SystemExit(f"{train_tsv}: no sentence outside the --train-limit {train_limit} subset for calibration")
    out.write_text("\n".join(train[i].texts[0] for i in sorted(rest[:lines])) + "\n", encoding="utf-8")
    return out


def outside_subset(n: int, train_limit: int) -> list[int]:
    """Indices of a training split outside a fine-tuning run's ``--train-limit`` subset, in a seeded order."""
    import numpy as np

    from electra.tasks.runner import train_subset_indices

    used = set(train_subset_indices(n, train_limit))
    return [i for i in np.random.default_rng(1).permutation(n).tolist() if i not in used]


def export_transformers(model, path: Path, vocab: int) -> None:
    import torch

    from inference_throughput import random_batch

    b = random_batch(2, 16, vocab)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(b[k] for k in INPUTS), str(path), dynamo=False, input_names=list(INPUTS),
                          output_names=["logits"], opset_version=17,
                          dynamic_axes={**{k: {0: "batch", 1: "sequence"} for k in INPUTS}, "logits": {0: "batch"}})


def optimize(src: Path, dst: Path, cfg) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimize_model(str(src), model_type="bert", num_heads=cfg.num_heads, hidden_size=cfg.hidden_size,
                       opt_level=0).save_model_to_file(str(dst))


def quantize(src: Path, dst: Path, tmp: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / "hf-pre.onnx"
    quant_pre_process(str(src), str(pre), skip_optimization=True)
    quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"])


# ---- timing ------------------------------------------------------------------------------------------------
def measure(impls: dict, big: dict, one: dict, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    for f in impls.values():  # warm-up
        f(big)
        for _ in range(3):
            f(one)
    times = {n: {"b32": [], "b1": []} for n in impls}
    for r in range(args.rounds):
        for name, f in impls.items():
            t = time.perf_counter()
            f(big)
            times[name]["b32"].append(time.perf_counter() - t)
            for _ in range(args.b1_reps):
                t = time.perf_counter()
                f(one)
                times[name]["b1"].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    return times


def summarise(times: dict, args: argparse.Namespace) -> dict:
    out: dict = {"implementations": {}}
    base = "transformers_fp32"
    int8 = "ort_int8" if "ort_int8" in times else base
    pct = harness.percentile
    for name, t in times.items():
        b32 = harness.median(t["b32"])
        row = {"b1_p50_ms": 1e3 * pct(t["b1"], 0.5), "b1_p99_ms": 1e3 * pct(t["b1"], 0.99), "b32_ms": 1e3 * b32,
               "seq_per_s": args.batch / b32,
               # paired: the median over rounds of each round's ratio (same load for both in a round)
               "b32_speedup_vs_transformers": harness.paired(times[base]["b32"], t["b32"]),
               "b32_speedup_vs_ort_int8": harness.paired(times[int8]["b32"], t["b32"]),
               "b1_p50_ratio_vs_ort_int8": pct(t["b1"], 0.5) / pct(times[int8]["b1"], 0.5)}
        # paired at batch 1: each round's p50 over its --b1-reps runs against ort_int8's in the same round
        per_round = _round_p50_ratios(t["b1"], times[int8]["b1"], args.b1_reps)
        row |= {"b1_p50_ratio_vs_ort_int8_paired": harness.median(per_round),
                "b1_p50_ratio_vs_ort_int8_p10_p90": [pct(per_round, 0.1), pct(per_round, 0.9)],
                "b1_rounds_at_or_below_ort_int8": sum(r <= 1.0 for r in per_round) / len(per_round)}
        out["implementations"][name] = row
    print("\n" + harness.table(
        [("implementation", "<20"), ("b1 p50 ms", ">10.1f"), ("b1 p99 ms", ">10.1f"), ("b32 ms", ">9.0f"),
         ("seq/s", ">8.1f"), ("vs transformers", ">16"), ("vs ort_int8 b32", ">16"), ("vs ort_int8 b1", ">15")],
        [(n, r["b1_p50_ms"], r["b1_p99_ms"], r["b32_ms"], r["seq_per_s"], f"{r['b32_speedup_vs_transformers']:.2f}x",
          f"{r['b32_speedup_vs_ort_int8']:.2f}x", f"{r['b1_p50_ratio_vs_ort_int8']:.2f}x")
         for n, r in out["implementations"].items()]))
    ours = {n: r for n, r in out["implementations"].items() if n.startswith("ours_")}
    best32 = max(ours, key=lambda n: ours[n]["seq_per_s"])
    best1 = min(ours, key=lambda n: ours[n]["b1_p50_ms"])
    out |= {"best_ours_b32": best32, "best_ours_b32_speedup_vs_ort_int8": ours[best32]["b32_speedup_vs_ort_int8"],
            "best_ours_b32_speedup_vs_transformers": ours[best32]["b32_speedup_vs_transformers"],
            "best_ours_b1": best1, "best_ours_b1_p50_ratio_vs_ort_int8": ours[best1]["b1_p50_ratio_vs_ort_int8"]}
    print(f"\nbest of ours at batch {args.batch}: {best32} ({out['best_ours_b32_speedup_vs_ort_int8']:.2f}x ort_int8, "
          f"{out['best_ours_b32_speedup_vs_transformers']:.2f}x transformers fp32, paired); at batch 1: {best1} "
          f"(p50 {out['best_ours_b1_p50_ratio_vs_ort_int8']:.2f}x ort_int8's)")
    print("batch 1, paired by round (median, p10-p90, share of rounds <= 1.0x ort_int8): " + "; ".join(
        f"{n} {r['b1_p50_ratio_vs_ort_int8_paired']:.3f}x ({r['b1_p50_ratio_vs_ort_int8_p10_p90'][0]:.2f}-"
        f"{r['b1_p50_ratio_vs_ort_int8_p10_p90'][1]:.2f}, {r['b1_rounds_at_or_below_ort_int8']:.0%})"
        for n, r in ours.items()))
    return out


def _round_p50_ratios(ours: list[float], ref: list[float], reps: int) -> list[float]:
    """Per round: the p50 of ours' ``reps`` batch-1 runs over the p50 of ``ref``'s in the same round."""
    return [harness.median(ours[i:i + reps]) / harness.median(ref[i:i + reps]) for i in range(0, len(ref), reps)]


# ---- accuracy and agreement on SST-2 dev ------------------------------------------------------------------
def agreement(impls: dict, args: argparse.Namespace) -> dict:
    import numpy as np

    from electra.tasks.runner import load_task_model, run_tokenizer_dir
    from electra.tokenization import load_tokenizer, pad_batch

    spec = load_task_model(args.model).spec
    rows = harness.read_tsv(args.tsv)[1:args.agreement_limit + 1]
    tok = load_tokenizer(run_tokenizer_dir(args.model))
    tok.enable_truncation(spec.get("max_seq_len", 128))
    encs = tok.encode_batch([r[0] for r in rows])
    gold = np.array([spec["labels"].index(r[1]) for r in rows])
    preds = {n: [] for n in impls}
    first: dict = {n: [] for n in impls}
    for i in range(0, len(encs), 32):
        chunk = encs[i:i + 32]
        b = pad_batch([e.ids for e in chunk], [e.type_ids for e in chunk])
        for n, f in impls.items():
            logits = f(b)
            preds[n].append(logits.argmax(-1))
            if i < args.alone:
                first[n].append(logits)
    preds = {n: np.concatenate(p) for n, p in preds.items()}
    first = {n: np.concatenate(x)[:args.alone] for n, x in first.items()}
    # batch independence: the first --alone sentences again, each alone (no batch mates, no padding)
    alone = {n: np.concatenate([f(pad_batch([e.ids], [e.type_ids])) for e in encs[:len(first[n])]])
             for n, f in impls.items()}
    ref = preds["transformers_fp32"]
    out = {"sst2_sentences": len(gold), "accuracy": {}, "agreement_with_transformers_fp32": {},
           "alone_vs_batched_max_logit_diff": {}}
    print(f"\nSST-2 dev ({len(gold)} sentences, batches of 32): accuracy / argmax agreement with transformers fp32 / "
          f"max |logit alone - logit in its batch| over the first {args.alone}")
    for n, p in preds.items():
        out["accuracy"][n] = float((p == gold).mean())
        out["agreement_with_transformers_fp32"][n] = float((p == ref).mean())
        out["alone_vs_batched_max_logit_diff"][n] = float(np.abs(alone[n] - first[n]).max())
        print(f"  {n:<22}{out['accuracy'][n]:.4f}  {out['agreement_with_transformers_fp32'][n]:.2%}  "
              f"{out['alone_vs_batched_max_logit_diff'][n]:.2e}")
    return out


if __name__ == "__main__":
    main()
