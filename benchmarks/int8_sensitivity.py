"""Which MatMuls the per-tensor int8 recipe (``--quantize int8-tensor``) should keep fp32: a greedy sensitivity sweep.

The fine-tuned classifier ``--model`` is exported (fused fp32 graph, as ``electra export --format onnx``), then
quantized per tensor (onnxruntime's ``quantize_dynamic``, per-channel weights) with the nodes of
``electra.export.onnx.TENSOR_FP32_NODES`` left fp32. Calibration: ``--calibration`` SST-2 *train* sentences that
the fine-tuning run did not train on (its ``--train-limit`` subset is left out; a seeded sample of the rest), in
batches of 32. Each step tries every still-quantized MatMul/Attention node in fp32 and keeps the one that raises
argmax agreement with the fp32 graph most, until agreement reaches ``--target`` or ``--max-extra`` nodes were
added. The chosen set is then checked once on SST-2 dev (never used for choosing). Table, then a JSON line.

  python benchmarks/int8_sensitivity.py --model runs/sst2-minilm
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness
from onnx_inference import outside_subset

GLUE = harness.DATA / "glue" / "SST-2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="fine-tuned SST-2 classification run")
    ap.add_argument("--data", type=Path, default=GLUE, help="SST-2 folder (train.tsv, dev.tsv)")
    ap.add_argument("--calibration", type=int, default=1000, help="train sentences to choose on")
    ap.add_argument("--train-limit", type=int, default=4000,
                    help="the fine-tuning run's --train-limit (its subset is left out of the calibration)")
    ap.add_argument("--target", type=float, default=0.995, help="stop at this train agreement")
    ap.add_argument("--max-extra", type=int, default=3, help="at most this many nodes added")
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import numpy as np
    import onnx

    from electra.data.glue import get_task, load_split
    from electra.export.onnx import (
        TENSOR_FP32_NODES,
        _fuse,
        _pre_process,
        _quantize_tensor,
        _torch_export,
        targets,
    )
    from electra.export.session import ort_session
    from electra.tasks.runner import load_task_model, run_tokenizer_dir
    from electra.tokenization import load_tokenizer, pad_batch

    spec = load_task_model(args.model).spec
    task = get_task("sst2")
    train = load_split(task, args.data, "train")
    rest = outside_subset(len(train), args.train_limit)
    calib = [train[i] for i in sorted(rest[: args.calibration])]
    dev = load_split(task, args.data, "dev")
    tok = load_tokenizer(run_tokenizer_dir(args.model))
    tok.enable_truncation(spec.get("max_seq_len", 128))

    def batches(examples):
        encs = tok.encode_batch([e.texts[0] for e in examples])
        return [pad_batch([e.ids for e in encs[i:i + 32]], [e.type_ids for e in encs[i:i + 32]])
                for i in range(0, len(encs), 32)]

    calib_b, dev_b = batches(calib), batches(dev)
    dev_gold = np.array([spec["labels"].index(e.label) for e in dev])

    def predict(path: Path, bs: list) -> np.ndarray:
        s = ort_session(path, args.threads)
        return np.concatenate([s.run(["logits"], b)[0].argmax(-1) for b in bs])

    with tempfile.TemporaryDirectory(prefix="int8-sens-") as tmp:
        work = Path(tmp)
        target = targets(args.model)[0]
        _torch_export(target, work / "raw.onnx", 17)
        _fuse(work / "raw.onnx", work / "fused.onnx", target)
        _pre_process(work / "fused.onnx", work / "pre.onnx")
        ref_calib, ref_dev = predict(work / "fused.onnx", calib_b), predict(work / "fused.onnx", dev_b)
        nodes = [n.name for n in onnx.load(str(work / "pre.onnx")).graph.node if n.op_type in ("MatMul", "Attention")]

        def agreement(fp32: tuple[str, ...], bs: list, ref: np.ndarray) -> float:
            q = work / "q.onnx"
            _quantize_tensor(work / "pre.onnx", q, fp32)
            return float((predict(q, bs) == ref).mean())

        base = tuple(TENSOR_FP32_NODES)
        kept = _excluded(nodes, base)
        chosen: list[str] = []
        steps = [{"added": None, "train_agreement": agreement(base, calib_b, ref_calib)}]
        print(f"calibration: {len(calib)} SST-2 train sentences (not in the fine-tuning subset), {len(nodes)} "
              f"MatMul/Attention nodes, fp32 already: {', '.join(kept)}")
        print(f"step 0 (recipe as is): train agreement {steps[0]['train_agreement']:.2%}")
        while steps[-1]["train_agreement"] < args.target and len(chosen) < args.max_extra:
            trial = {}
            for name in nodes:
                if name in kept or name in chosen:
                    continue
                trial[name] = agreement(base + tuple(chosen) + (name,), calib_b, ref_calib)
            best = max(trial, key=lambda n: trial[n])  # ties: the first in graph order
            chosen.append(best)
            ranked = sorted(trial.items(), key=lambda kv: -kv[1])
            steps.append({"added": best, "train_agreement": trial[best],
                          "top5": [{"node": n, "train_agreement": a} for n, a in ranked[:5]]})
            print(f"step {len(chosen)}: + {best}: train agreement {trial[best]:.2%}   (next: "
                  + ", ".join(f"{n} {a:.2%}" for n, a in ranked[1:4]) + ")")
        final = base + tuple(chosen)
        q = work / "q.onnx"
        _quantize_tensor(work / "pre.onnx", q, final)
        dev_pred = predict(q, dev_b)
        _quantize_tensor(work / "pre.onnx", q, base)
        dev_base = predict(q, dev_b)
    report = {"model": args.model, "calibration_sentences": len(calib), "target": args.target, "steps": steps,
              "fp32_nodes": list(final), "dev_sentences": len(dev),
              "dev_agreement": float((dev_pred == ref_dev).mean()),
              "dev_accuracy": float((dev_pred == dev_gold).mean()),
              "dev_agreement_recipe_as_is": float((dev_base == ref_dev).mean()),
              "dev_accuracy_fp32": float((ref_dev == dev_gold).mean())}
    print("\n" + harness.table(
        [("fp32 nodes", "<60"), ("train agreement", ">16.2%"), ("dev agreement", ">15.2%"), ("dev acc", ">9.4f")],
        [("as is: " + ", ".join(kept), steps[0]["train_agreement"], report["dev_agreement_recipe_as_is"],
          float((dev_base == dev_gold).mean())),
         ("+ " + ", ".join(chosen), steps[-1]["train_agreement"], report["dev_agreement"], report["dev_accuracy"])]))
    print(f"fp32 graph: dev accuracy {report['dev_accuracy_fp32']:.4f}")
    harness.emit(report)


def _excluded(nodes: list[str], patterns: tuple[str, ...]) -> list[str]:
    return [n for n in nodes if any(p in n for p in patterns)]


if __name__ == "__main__":
    main()
