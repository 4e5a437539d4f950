"""Pre-training step throughput: ours vs a `transformers`-based ELECTRA step, side by side in one run.

Measures, alternating between implementations so machine noise hits all of them alike:
  (a) the machine's matmul ceiling at the run's precision (torch.mm; only that one: on a CPU without native
      bf16 a 2048 x 2048 bf16 product is emulated and takes seconds to minutes),
  (b) the reference RTD step built from transformers' ElectraForMaskedLM + ElectraForPreTraining (generator
      called with labels, full-vocabulary logits, torch.optim.AdamW), and the tuned reference (generator head
      only on masked positions, fused AdamW, torch.compile),
  (c) our step: ``electra.training.pretrainer.train_step`` with ``ReplacedTokenDetection`` and our AdamW.
All use the same config, masking (``mask_tokens``) and losses, and the same precision. The references sample
replacements with the Gumbel-max trick as google-research/electra does; ours inverts the CDF (the same
distribution, ``electra.pretraining.sample_from_softmax``).

Model FLOPs per step (forward x 3 for forward + backward, matmuls only):
  per encoder: B*T*[L*(8H^2 + 4HF + 4TH) + 2EH (if E != H)]; discriminator head 2H^2 per token;
  generator head per masked position (B*P of them): 2*H_g*E + 2*E*V.
``--deberta`` times DeBERTa-v3-shaped networks instead (architecture deberta-v2: relative attention, 256 log
buckets, p2c|c2p, shared keys, no absolute positions or token types; the preset's shapes): ours, the reference
built from transformers' DebertaV2ForMaskedLM (generator, word table shared) + DebertaV2Model (discriminator)
with our head's shape (dense -> GELU -> logit), called as the plain reference is, and our BERT-body step at the
same shapes (what the disentangled attention costs). Its FLOPs add the c2p and p2c matmuls (8 * span * H per
token and layer) and the relative-embedding projections, over all 2 x span rows as transformers computes them
(ours reads only the rows a sequence reaches: 255 of 512 at 128 tokens).

Prints a table and a final JSON line. ``--precision bf16`` on a CPU without native bf16 (AVX512-BF16/AMX-BF16,
``electra.training.precision.emulated_bf16``) is refused in one line unless ``--force-emulated-bf16``.

  python benchmarks/pretrain_throughput.py --preset small --batch 32 --seq 128 --steps 8 --precision fp32
  python benchmarks/pretrain_throughput.py --deberta --preset small --batch 8 --seq 128 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import harness
from electra.config import EncoderConfig, ModelConfig
from electra.modeling import Electra
from electra.pretraining import (
    ReplacedTokenDetection,
    SpecialIds,
    gumbel_sample,
    mask_tokens,
    max_predictions_per_seq,
    scatter_replace,
)
from electra.training.optim import AdamW, param_groups
from electra.training.precision import EMULATED_BF16_MESSAGE, emulated_bf16
from electra.training.pretrainer import StepInputs, train_step

SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)


def matmul_ceiling(dtype: torch.dtype, device: str = "cpu", n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        torch.mm(a, b)
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def encoder_flops(c: EncoderConfig, tokens: int, seq: int) -> float:
    h, f, layers = c.hidden_size, c.intermediate_size, c.num_layers
    per_token = layers * (8 * h * h + 4 * h * f + 4 * seq * h)
    if c.embedding_size != h:
        per_token += 2 * c.embedding_size * h
    total = tokens * per_token
    if c.architecture == "deberta-v2" and c.relative_attention:  # c2p, p2c; relative embeddings through 2 projections
        span = c.position_buckets if c.position_buckets > 0 else c.max_position_embeddings
        terms = len(c.pos_att_type.split("|"))
        total += tokens * layers * terms * 4 * span * h + layers * terms * 2 * (2 * span) * h * h
    return total


def step_flops(cfg: ModelConfig, batch: int, seq: int, predictions: int) -> float:
    d, g = cfg.discriminator, cfg.generator
    tokens = batch * seq
    fwd = encoder_flops(d, tokens, seq) + encoder_flops(g, tokens, seq) + tokens * 2 * d.hidden_size**2
    fwd += batch * predictions * (2 * g.hidden_size * d.embedding_size + 2 * d.embedding_size * d.vocab_size)
    return 3 * fwd


def make_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    ids[:, 0] = SPECIAL.cls
    ids[:, seq // 2] = SPECIAL.sep
    ids[:, -1] = SPECIAL.sep
    tt = torch.zeros_like(ids)
    tt[:, seq // 2 + 1:] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": tt}


# DeBERTa-v3's shape options (microsoft/deberta-v3-*): relative attention in 256 log buckets, p2c|c2p with shared
# keys, normalised relative embeddings, no absolute positions and no token types.
DEBERTA_V3 = dict(architecture="deberta-v2", relative_attention=True, position_buckets=256,
                  position_biased_input=False, pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", share_att_key=True,
                  type_vocab_size=0)


# ---- the transformers-based reference ------------------------------------------------------------------
def hf_models(cfg: ModelConfig):
    import transformers

    def conf(c: EncoderConfig) -> transformers.ElectraConfig:
        return transformers.ElectraConfig(
            vocab_size=c.vocab_size, embedding_size=c.embedding_size, hidden_size=c.hidden_size,
            num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_position_embeddings, hidden_dropout_prob=c.hidden_dropout,
            attention_probs_dropout_prob=c.attention_dropout, layer_norm_eps=c.layer_norm_eps)

    gen = transformers.ElectraForMaskedLM(conf(cfg.generator))
    disc = transformers.ElectraForPreTraining(conf(cfg.discriminator))
    gen.electra.embeddings = disc.electra.embeddings  # shared embeddings, as ELECTRA
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
    return gen.train(), disc.train()


class HFStep:
    """An RTD step with transformers models; ``tuned`` uses masked-only generator head, fused AdamW, compile."""

    def __init__(self, cfg: ModelConfig, seq: int, tuned: bool, device: str = "cpu"):
        torch.manual_seed(0)
        self.gen, self.disc = (m.to(device) for m in hf_models(cfg))
        self.tuned = tuned
        self.max_pred = max_predictions_per_seq(seq, 0.15)
        params = list({id(p): p for p in [*self.gen.parameters(), *self.disc.parameters()]}.values())
        self.params = params
        self.opt = torch.optim.AdamW(params, lr=1e-4, eps=1e-6, weight_decay=0.01, fused=tuned or None)
        self.loss_fn = torch.compile(self._loss) if tuned else self._loss

    def _loss(self, ids, am, tt, rng_seed: int):
        rng = torch.Generator(device=ids.device).manual_seed(rng_seed)
        m = mask_tokens(ids, am, SPECIAL, 0.15, self.max_pred, rng)
        if self.tuned:
            hidden = self.gen.electra(m.input_ids, am, tt).last_hidden_state
            hidden = hidden.gather(1, m.positions[..., None].expand(-1, -1, hidden.shape[-1]))
            logits = self.gen.generator_lm_head(self.gen.generator_predictions(hidden))
            mlm = (F.cross_entropy(logits.float().flatten(0, 1), m.ids.flatten(), reduction="none")
                   * m.weights.flatten()).sum() / (m.weights.sum() + 1e-6)
        else:
            labels = torch.full_like(ids, -100)
            labels.scatter_(1, m.positions, torch.where(m.weights.bool(), m.ids, -100))
            out = self.gen(input_ids=m.input_ids, attention_mask=am, token_type_ids=tt, labels=labels)
            mlm = out.loss
            logits = out.logits.gather(1, m.positions[..., None].expand(-1, -1, out.logits.shape[-1]))
        sampled = gumbel_sample(logits.detach(), rng)
        fake = scatter_replace(ids, m.positions, m.ids, sampled, m.weights)
        labels_d = (fake != ids).long()
        out_d = self.disc(input_ids=fake, attention_mask=am, token_type_ids=tt, labels=labels_d)
        return mlm + 50.0 * out_d.loss

    def __call__(self, batch, step: int, autocast) -> None:
        self.opt.zero_grad(set_to_none=True)
        with autocast:
            loss = self.loss_fn(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()


def hf_deberta_models(cfg: ModelConfig):
    """(DebertaV2ForMaskedLM generator, DebertaV2Model discriminator, detection head) sharing the word table."""
    import transformers

    from electra.interop.hf_deberta import hf_deberta_config

    gen = transformers.DebertaV2ForMaskedLM(transformers.DebertaV2Config(**hf_deberta_config(cfg.generator,
                                                                                            "generator")))
    disc = transformers.DebertaV2Model(transformers.DebertaV2Config(**hf_deberta_config(cfg.discriminator,
                                                                                       "discriminator")))
    gen.deberta.embeddings.word_embeddings = disc.embeddings.word_embeddings  # es, as ours: the word table shared
    h = cfg.discriminator.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.GELU(), torch.nn.Linear(h, 1))
    return gen.train(), disc.train(), head.train()


class HFDebertaStep:
    """An RTD step with transformers' DeBERTa-v2 classes, called as :class:`HFStep`'s plain reference."""

    def __init__(self, cfg: ModelConfig, seq: int, device: str = "cpu"):
        torch.manual_seed(0)
        self.gen, self.disc, self.head = (m.to(device) for m in hf_deberta_models(cfg))
        self.max_pred = max_predictions_per_seq(seq, 0.15)
        modules = (self.gen, self.disc, self.head)
        self.params = list({id(p): p for m in modules for p in m.parameters()}.values())
        self.opt = torch.optim.AdamW(self.params, lr=1e-4, eps=1e-6, weight_decay=0.01)

    def _loss(self, ids, am, tt, rng_seed: int):
        rng = torch.Generator(device=ids.device).manual_seed(rng_seed)
        m = mask_tokens(ids, am, SPECIAL, 0.15, self.max_pred, rng)
        labels = torch.full_like(ids, -100)
        labels.scatter_(1, m.positions, torch.where(m.weights.bool(), m.ids, -100))
        out = self.gen(input_ids=m.input_ids, attention_mask=am, labels=labels)
        logits = out.logits.gather(1, m.positions[..., None].expand(-1, -1, out.logits.shape[-1]))
        sampled = gumbel_sample(logits.detach(), rng)
        fake = scatter_replace(ids, m.positions, m.ids, sampled, m.weights)
        hidden = self.disc(input_ids=fake, attention_mask=am).last_hidden_state
        disc_loss = F.binary_cross_entropy_with_logits(self.head(hidden).squeeze(-1), (fake != ids).float())
        return out.loss + 50.0 * disc_loss

    def __call__(self, batch, step: int, autocast) -> None:
        self.opt.zero_grad(set_to_none=True)
        with autocast:
            loss = self._loss(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()


class OurStep:
    def __init__(self, cfg: ModelConfig, seq: int, compile_: bool, device: str = "cpu"):
        torch.manual_seed(0)
        self.obj = ReplacedTokenDetection(Electra(cfg).to(device), SPECIAL, seq)
        self.opt = AdamW(param_groups(self.obj.model, 1e-4, 0.01), lr=1e-4)
        self.forward = torch.compile(self.obj) if compile_ else None

    def __call__(self, batch, step: int, autocast) -> None:
        train_step(self.obj, self.opt, StepInputs([batch], [0]), step, 0, 1.0, autocast, self.forward)


def builders_for(cfg: ModelConfig, args: argparse.Namespace) -> dict:
    if args.deberta:
        deberta = cfg.replace(**DEBERTA_V3)
        return {
            "deberta_reference": lambda: HFDebertaStep(deberta, args.seq, device=args.device),
            "deberta_ours": lambda: OurStep(deberta, args.seq, args.ours_compile, device=args.device),
            "bert_ours": lambda: OurStep(cfg, args.seq, args.ours_compile, device=args.device),
        }
    return {
        "reference": lambda: HFStep(cfg, args.seq, tuned=False, device=args.device),
        "tuned_reference": lambda: HFStep(cfg, args.seq, tuned=True, device=args.device),
        "ours": lambda: OurStep(cfg, args.seq, args.ours_compile, device=args.device),
    }


def peak_rss_mb(device: str = "cpu") -> float:
    """Peak device memory on an accelerator; peak resident set size of the process on the CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # VmHWM is this process image's own high-water mark; ru_maxrss of a forked+exec'ed child starts at the
    # parent's RSS at fork time (Linux carries the old mm's peak across exec), which biased every peak upward.
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per implementation")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", default="", help="comma-separated: reference,tuned_reference,ours (--deberta: "
                    "deberta_reference,deberta_ours,bert_ours)")
    ap.add_argument("--deberta", action="store_true", help="time DeBERTa-v3-shaped steps (see the docstring)")
    ap.add_argument("--ours-compile", action="store_true", help="also torch.compile our step")
    ap.add_argument("--system-malloc", action="store_true",
                    help="keep glibc's default malloc thresholds (default: set MALLOC_ENV for all implementations)")
    ap.add_argument("--ceiling-size", type=int, default=2048, help="n of the n x n matmuls that measure the ceiling")
    ap.add_argument("--force-emulated-bf16", action="store_true",
                    help="run --precision bf16 even on a CPU without native bf16 (emulated: very slow)")
    ap.add_argument("--peak-only", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.precision == "bf16" and emulated_bf16(args.device) and not args.force_emulated_bf16:
        raise SystemExit(f"pretrain_throughput: {EMULATED_BF16_MESSAGE}; measure --precision fp32, or pass "
                         "--force-emulated-bf16 to time the emulation anyway")
    if not args.system_malloc:  # the same glibc malloc settings for every implementation (the plain transformers
        harness.restart_with()  # step spent 17-24% of its time in page faults without them)

    cfg = ModelConfig.preset(args.preset, max_position_embeddings=max(512, args.seq))
    batch = {k: v.to(args.device) for k, v in make_batch(args.batch, args.seq, cfg.discriminator.vocab_size).items()}
    device_type = torch.device(args.device).type
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def autocast():
        return torch.autocast(device_type, dtype=dtype) if dtype else contextlib.nullcontext()

    if args.peak_only:
        impl = builders_for(cfg, args)[args.peak_only]()
        for i in range(3):
            impl(batch, i, autocast())
        print(peak_rss_mb(args.device))
        return
    ceiling = matmul_ceiling(torch.bfloat16 if args.precision == "bf16" else torch.float32, args.device,
                             n=args.ceiling_size)
    print(f"matmul ceiling ({args.precision}, {args.ceiling_size}^2): {ceiling:.0f} GFLOP/s; "
          f"threads {torch.get_num_threads()}; MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_')}")
    skip = set(filter(None, args.skip.split(",")))
    impls = {name: build() for name, build in builders_for(cfg, args).items() if name not in skip}
    for impl in impls.values():  # warm-up (and compilation) for each, peak memory measured apart
        for i in range(args.warmup):
            impl(batch, i, autocast())
    times = harness.alternate({name: lambda i, impl=impl: impl(batch, 100 + i, autocast())  # step by step
                               for name, impl in impls.items()}, args.steps,
                              before=lambda: (gc.collect(), _sync(args.device)), after=lambda: _sync(args.device))
    peaks = {name: _step_peak_mb(name, args) for name in impls}
    predictions = max_predictions_per_seq(args.seq, 0.15)
    flops = step_flops(cfg, args.batch, args.seq, predictions)
    result: dict[str, float | str] = {"preset": args.preset, "batch": args.batch, "seq": args.seq,
                                      "precision": args.precision, "flops_per_step": flops,
                                      f"ceiling_{args.precision}_gflops": ceiling}
    if args.deberta:
        result["deberta_flops_per_step"] = step_flops(cfg.replace(**DEBERTA_V3), args.batch, args.seq, predictions)
    rows = []
    for name, ts in times.items():
        med = harness.median(ts)
        tps = args.batch * args.seq / med
        gflops = (result["deberta_flops_per_step"] if name.startswith("deberta") else flops) / med / 1e9
        result[f"{name}_tokens_per_s"] = tps
        result[f"{name}_mfu"] = gflops / ceiling
        result[f"{name}_peak_mem_mb"] = peaks[name]
        rows.append((name, tps, gflops, gflops / ceiling, peaks[name]))
    print("\n" + harness.table([("implementation", "<18"), ("tokens/s", ">10.0f"), ("GFLOP/s", ">10.1f"),
                                ("MFU", ">8.1%"), ("peak MB", ">10.0f")], rows))
    for ours, ref, key in (("deberta_ours", "deberta_reference", "deberta_ours_over_reference"),
                           ("deberta_ours", "bert_ours", "deberta_over_bert_step_time")):
        if ours in times and ref in times:
            if key.endswith("step_time"):  # how much longer the DeBERTa step takes than the BERT one
                ratio, paired = harness.median(times[ours]) / harness.median(times[ref]), harness.paired(times[ours],
                                                                                                        times[ref])
            else:
                ratio, paired = (result[f"{ours}_tokens_per_s"] / result[f"{ref}_tokens_per_s"],
                                 harness.paired(times[ref], times[ours]))
            result[key], result[key + "_paired"] = ratio, paired
            print(f"{key}: {ratio:.2f}x (median of per-round ratios {paired:.2f}x)")
    if "ours" in times:
        for ref in ("reference", "tuned_reference"):
            if ref in times:
                ratio = result["ours_tokens_per_s"] / result[f"{ref}_tokens_per_s"]
                paired = harness.paired(times[ref], times["ours"])
                result[f"ours_over_{ref}"] = ratio
                result[f"ours_over_{ref}_paired"] = paired
                print(f"ours / {ref}: {ratio:.2f}x (median of per-round ratios {paired:.2f}x)")
    harness.emit(result)


def _step_peak_mb(name: str, args: argparse.Namespace) -> float:
    """Peak RSS (MB) of a fresh process running warm-up + 2 steps of one implementation: isolated, comparable."""
    flags = [f for f, on in (("--ours-compile", args.ours_compile), ("--force-emulated-bf16", args.force_emulated_bf16),
                             ("--deberta", args.deberta)) if on]
    out = harness.run_script(Path(__file__).name, "--peak-only", name, "--preset", args.preset, "--batch", args.batch,
                             "--seq", args.seq, "--precision", args.precision, "--device", args.device, *flags)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        print(f"peak-memory run of {name} failed: {out.stderr.strip().splitlines()[-1:]}")
        return float("nan")


if __name__ == "__main__":
    main()
