"""Inference throughput: our sequence classifier vs `transformers`' ElectraForSequenceClassification, side by side.

Both models hold the same weights (ours converted with ``electra.interop.hf``'s key map, the classifier head in the
``transformers`` style: dense -> GELU -> linear on ``[CLS]``). Timed alternately in one process, batch 32 x 128 by
default, under ``torch.inference_mode()`` and the same glibc malloc settings for all (``--system-malloc`` to opt
out; ``electra`` commands apply them at start-up):
  reference fp32          ElectraForSequenceClassification, eval mode
  reference bf16          the same under bf16 autocast
  ours fp32               ``TaskModel`` (fused QKV, SDPA, no mask when a batch has no padding, and a last layer
                          that computes only the ``[CLS]`` row the classifier reads)
  ours bf16               our model with its weights cast to bf16 once (``--bf16-mode cast``, default) or under
                          autocast (``--bf16-mode autocast``); LayerNorm weights and the head in fp32 either way
Prints sequences/s, ratios, and — when ``../shared/data/glue/SST-2/dev.tsv`` (or ``--tsv``) exists — how often
each implementation's bf16 predictions agree with the fp32 reference's on those sentences (a model from
``--model RUN``, a fine-tuned classification run, else random weights). Final line: JSON.

On a CPU without native bf16 (``electra.training.precision.emulated_bf16``) the two bf16 rows are left out, with
one line saying so, unless ``--force-emulated-bf16``: emulated bf16 matmuls are ~100x slower than fp32.

  python benchmarks/inference_throughput.py --preset small --batch 32 --seq 128
"""

from __future__ import annotations

import argparse
import contextlib
import zlib
from pathlib import Path

import torch
from torch import nn

import harness
from electra.config import EncoderConfig, ModelConfig
from electra.interop.hf import to_hf_config, to_hf_state_dict
from electra.modeling import Electra
from electra.tasks.heads import ClassificationHead
from electra.tasks.runner import TaskModel
from electra.training.precision import EMULATED_BF16_MESSAGE, emulated_bf16

SST2_DEV = harness.DATA / "glue" / "SST-2" / "dev.tsv"


class _EncoderOnly(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder


def ours_random(cfg: EncoderConfig, num_labels: int, seed: int = 0) -> TaskModel:
    torch.manual_seed(seed)
    encoder = Electra(ModelConfig(discriminator=cfg)).discriminator.encoder
    head = ClassificationHead(cfg, num_labels=num_labels, style="transformers")
    return TaskModel(encoder, head, {"task": "benchmark"})


def to_reference(model: TaskModel):
    """The same weights in ``transformers.ElectraForSequenceClassification``."""
    import transformers

    cfg = model.encoder.config
    hf_cfg = transformers.ElectraConfig(**to_hf_config(cfg, "discriminator"), num_labels=model.head.num_labels)
    ref = transformers.ElectraForSequenceClassification(hf_cfg)
    sd = to_hf_state_dict(_EncoderOnly(model.encoder), "discriminator")
    head = model.head
    sd |= {"classifier.dense.weight": head.dense.weight, "classifier.dense.bias": head.dense.bias,
           "classifier.out_proj.weight": head.out.weight, "classifier.out_proj.bias": head.out.bias}
    missing, unexpected = ref.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"weight conversion failed: missing {missing}, unexpected {unexpected}")
    return ref.eval()


def cast_for_bf16(model: TaskModel) -> BF16Classifier:
    """A bf16 copy for inference: Linear and Embedding weights in bf16; LayerNorm weights and the head stay fp32
    (LayerNorm of a bf16 input with fp32 weights computes in fp32 and returns bf16, as under autocast)."""
    import copy

    m = copy.deepcopy(model)
    for module in m.encoder.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.to(torch.bfloat16)
    return BF16Classifier(m)


class BF16Classifier(nn.Module):
    """Runs the encoder with bf16 weights, then the head in fp32."""

    def __init__(self, model: TaskModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = self.model.encoder(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"),
                                    cls_only=self.model.head.reads_cls_only)
        return self.model.head(hidden.float(), batch)


def random_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def sentences(path: Path, limit: int) -> list[str]:
    return [r[0] for r in harness.read_tsv(path)[1:limit + 1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--model", help="a fine-tuned classification run (default: random weights of --preset)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed batches per implementation")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bf16-mode", choices=["cast", "autocast"], default="cast")
    ap.add_argument("--tsv", type=Path, default=SST2_DEV, help="sentences for the agreement check (column 0)")
    ap.add_argument("--agreement-limit", type=int, default=872)
    ap.add_argument("--system-malloc", action="store_true",
                    help="keep glibc's default malloc thresholds (default: the same settings as the pre-training "
                         "benchmark, for both implementations)")
    ap.add_argument("--force-emulated-bf16", action="store_true",
                    help="time the bf16 rows even on a CPU without native bf16 (emulated: very slow)")
    args = ap.parse_args()
    with_bf16 = args.force_emulated_bf16 or not emulated_bf16("cpu")
    if not with_bf16:
        print(f"bf16 rows skipped: {EMULATED_BF16_MESSAGE} (--force-emulated-bf16 to time them anyway)")
    if not args.system_malloc:
        harness.restart_with()

    if args.model:
        from electra.tasks.runner import load_task_model, run_tokenizer_dir

        model = load_task_model(args.model)
        if model.head.dense is None:
            raise SystemExit("--model: the reference comparison needs a head trained with --head transformers")
        tokenizer_dir = run_tokenizer_dir(args.model)
    else:
        cfg = ModelConfig.preset(args.preset).discriminator
        model, tokenizer_dir = ours_random(cfg, num_labels=2), None
    model = model.eval()
    ref = to_reference(model)
    ours_bf16 = (cast_for_bf16(model) if args.bf16_mode == "cast" else model).eval()
    vocab = model.encoder.config.vocab_size
    batch = random_batch(args.batch, args.seq, vocab)

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    null = contextlib.nullcontext
    impls = {
        "reference_fp32": (lambda b: ref(**b).logits, null),
        "reference_bf16": (lambda b: ref(**b).logits, bf16),
        "ours_fp32": (lambda b: model(b)["logits"], null),
        "ours_bf16": ((lambda b: ours_bf16(b)["logits"]), null if args.bf16_mode == "cast" else bf16),
    }
    if not with_bf16:
        impls = {k: v for k, v in impls.items() if not k.endswith("_bf16")}
    with torch.inference_mode():
        diff = (impls["ours_fp32"][0](batch) - impls["reference_fp32"][0](batch)).abs().max().item()
        print(f"max |ours - reference| logit difference, fp32: {diff:.2e}")
        def run(fn, ctx) -> None:
            with ctx():
                fn(batch)

        for fn, ctx in impls.values():
            for _ in range(args.warmup):
                run(fn, ctx)
        times = harness.alternate({name: lambda _, f=fn, c=ctx: run(f, c) for name, (fn, ctx) in impls.items()},
                                  args.steps)
    result: dict[str, float | str | int] = {"preset": args.preset if not args.model else str(args.model),
                                            "batch": args.batch, "seq": args.seq, "bf16_mode": args.bf16_mode,
                                            "threads": torch.get_num_threads(), "fp32_max_logit_diff": diff}
    base = args.batch / harness.median(times["reference_fp32"])
    for name, ts in times.items():
        result[f"{name}_seq_per_s"] = args.batch / harness.median(ts)
    print("\n" + harness.table([("implementation", "<16"), ("sequences/s", ">12.1f"), ("vs ref fp32", ">13")],
                               [(n, result[f"{n}_seq_per_s"], f"{result[f'{n}_seq_per_s'] / base:.2f}x")
                                for n in times]))
    result["ours_fp32_over_reference_fp32"] = result["ours_fp32_seq_per_s"] / base
    if with_bf16:
        result["ours_bf16_over_reference_fp32"] = result["ours_bf16_seq_per_s"] / base
        result["ours_bf16_over_reference_bf16"] = result["ours_bf16_seq_per_s"] / result["reference_bf16_seq_per_s"]

    if args.tsv.is_file():
        result |= agreement(args, model, impls, tokenizer_dir)
    else:
        print(f"agreement check skipped: {args.tsv} not found")
    harness.emit(result)


def agreement(args, model: TaskModel, impls: dict, tokenizer_dir: Path | None) -> dict[str, float | int]:
    """Share of ``--tsv`` sentences where each implementation predicts the fp32 reference's label."""
    from electra.tokenization import load_tokenizer

    texts = sentences(args.tsv, args.agreement_limit)
    if tokenizer_dir is None:  # random weights: any WordPiece vocabulary of the right size gives realistic ids
        vocab = model.encoder.config.vocab_size
        ids = [[2] + [5 + zlib.crc32(w.encode()) % (vocab - 5) for w in t.split()][:args.seq - 2] + [3] for t in texts]
    else:
        tok = load_tokenizer(tokenizer_dir)
        ids = [e.ids[:args.seq - 1] + [3] if len(e.ids) > args.seq else e.ids for e in tok.encode_batch(texts)]
    preds: dict[str, list[int]] = {n: [] for n in impls}
    with torch.inference_mode():
        for i in range(0, len(ids), args.batch):
            chunk = ids[i:i + args.batch]
            width = max(map(len, chunk))
            input_ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for j, row in enumerate(chunk):
                input_ids[j, :len(row)] = torch.tensor(row)
                mask[j, :len(row)] = 1
            b = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}
            for name, (fn, ctx) in impls.items():
                with ctx():
                    preds[name] += fn(b).float().argmax(-1).tolist()
    gold = preds["reference_fp32"]
    out: dict[str, float | int] = {"agreement_sentences": len(gold)}
    print(f"\nprediction agreement with reference fp32 on {len(gold)} sentences of {args.tsv}:")
    for name, p in preds.items():
        share = sum(a == b for a, b in zip(p, gold)) / len(gold)
        out[f"{name}_agreement"] = share
        print(f"  {name:<16}{share:.2%}")
    return out


if __name__ == "__main__":
    main()
