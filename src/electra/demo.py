"""`electra demo`: raw text to a pre-trained tiny ELECTRA within a wall-clock budget on a laptop CPU.

Splits the bundled Wikipedia slice by document into training text and held-out text, trains a WordPiece tokenizer
on the training part, prepares shards of both, trains word2vec over them (one epoch, seconds), pre-trains with the
``cpu`` recipe (the tiny shape, its word embeddings the word vectors, held fixed; docs/learning-at-cpu-scale.md §5)
for ``minutes`` (the LR schedule sized to the step rate measured in a short probe, so it decays to zero at the
deadline), then reports detection on the held-out documents and judges the showcase honestly: the planted word
must be the most suspicious token of the altered sentence and flagged (p > 0.5), and no token of the original
sentence may be above 0.5.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from electra.config import PretrainConfig
from electra.errors import ElectraError

DEMO_TEXT = Path(__file__).resolve().parents[2] / "data" / "demo" / "en-wiki-sample.txt"
ORIGINAL = "the city is located on the north bank of the river."
PLANTED = ("the city is located on the north bank of the banana.", "banana")
FILL_SENTENCE = "the river flows into the [MASK] near the city."
HELD_OUT_DOCUMENTS = 60  # the last documents of the sample: never trained on


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

    def verdict(self, budget: str) -> str:
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
        return (f"showcase: NOT REACHED in {budget} — " + "; ".join(why) + ".\n  What would: start from a "
                "pre-trained BERT-family checkpoint (measured: all-MiniLM-L6-v2 + 30 minutes of RTD flags the "
                "planted word at 0.88, the original <= 0.40): electra import-hf --bert DIR --out ckpt && electra "
                "pretrain --init-from ckpt --data ... (README: 'Start from what exists'). More CPU minutes from "
                "scratch did not get there where measured: this 2.7 MB text overfits (10 minutes: held-out AUC "
                "0.79, below 3 minutes' 0.84), and 47 minutes on a 16M-token corpus leave the planted word at 0.12 "
                "(docs/learning-at-cpu-scale.md §8).")


def judge_showcase(model, tokenizer) -> tuple[Showcase, list[tuple[str, str, object]]]:
    """Detect the original and the altered sentence; whether the planted word stands out and the original is clean."""
    from electra.generation import detect

    original = detect(model, tokenizer, ORIGINAL)
    sentence, word = PLANTED
    altered = detect(model, tokenizer, sentence)
    start = sentence.index(word)
    enc = tokenizer.encode(sentence)
    inner = [(a, b) for tok, (a, b) in zip(enc.tokens, enc.offsets) if tok not in ("[CLS]", "[SEP]")]
    planted = {i for i, (a, b) in enumerate(inner) if a < start + len(word) and b > start}
    top = max(range(len(altered.tokens)), key=lambda i: altered.replaced_prob[i])
    show = Showcase(planted_is_top=top in planted, original_max=max(original.replaced_prob),
                    planted_top_token=altered.tokens[top], planted_top_prob=altered.replaced_prob[top])
    return show, [("original", ORIGINAL, original), ("one word replaced", sentence, altered)]


def word_vectors(out: Path, seed: int) -> str:
    """One epoch of word2vec over the prepared shards (``out/vectors.txt``); "" (random embeddings) without gensim."""
    import importlib.util

    if importlib.util.find_spec("gensim") is None:
        print("[3/6] word vectors: skipped (gensim is not installed: pip install 'electra[wordvectors]'); "
              "the word embeddings stay random, still held fixed")
        return ""
    from electra.init.wordvectors import train_word_vectors

    report = train_word_vectors([out / "data"], out / "vectors.txt", dim=64, epochs=1, seed=seed, progress=False)
    print(f"[3/6] word vectors: word2vec over the shards, 1 epoch: {report.format()}")
    return str(out / "vectors.txt")


def run_demo(out: str | Path, minutes: float = 3.0, steps: int | None = None, batch_size: int = 32,
             vocab_size: int = 8000, seed: int = 0, progress: bool = True) -> Path:
    """Tokenizer -> prepare -> word2vec -> pretrain (cpu recipe, ``minutes`` or exactly ``steps``) -> held-out
    report, detect, fill."""
    from electra.checkpoint import load_checkpoint, resolve_checkpoint
    from electra.data.corpus import Corpus
    from electra.data.prepare import prepare
    from electra.generation import fill_mask
    from electra.tokenization import load_tokenizer, train_tokenizer
    from electra.training.pretrainer import DETECTION_FILE, plan_steps, pretrain

    if steps is None and minutes <= 0:
        raise ElectraError(f"--minutes {minutes:g}: must be > 0")
    out = Path(out)
    random.seed(seed)
    train_text, held_text = split_documents(find_demo_text(), out)
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

    if steps is None:
        steps, tokens_per_s = plan_steps(config(10_000), minutes)
        print(f"[4/6] pre-training (cpu recipe) for {minutes:g} minutes: ≈ {tokens_per_s / (batch_size * 128):.1f} "
              f"steps/s here, so {steps} steps of {batch_size} x 128 tokens (LR schedule sized to them)")
        cfg = config(steps, max_minutes=minutes)
    else:
        print(f"[4/6] pre-training (cpu recipe) for {steps} steps of {batch_size} x 128 tokens")
        cfg = config(steps)
    run = pretrain(cfg, overwrite=True, progress=progress)
    print(f"[5/6] held-out detection (documents never trained on): see {run / DETECTION_FILE}")
    print("[6/6] what the model learned")
    ckpt = resolve_checkpoint(run)
    model, tokenizer = load_checkpoint(ckpt), load_tokenizer(ckpt / "tokenizer")
    show, rows = judge_showcase(model, tokenizer)
    for label, sentence, d in rows:
        top = max(range(len(d.tokens)), key=lambda i: d.replaced_prob[i])
        print(f"  detect ({label}): {sentence!r}\n    most suspicious token: {d.tokens[top]!r} "
              f"(p replaced = {d.replaced_prob[top]:.2f}); sequence score {d.sequence_score:.2f}")
        print("    " + " ".join(f"{t}:{p:.2f}" for t, p in zip(d.tokens, d.replaced_prob)))
    for i, cands in enumerate(fill_mask(model, tokenizer, FILL_SENTENCE)):
        print(f"  fill {FILL_SENTENCE!r} [MASK] #{i + 1}: " + ", ".join(f"{t} ({p:.2f})" for t, p in cands))
    print("  " + show.verdict(f"{minutes:g} minutes" if cfg.max_minutes else f"{steps} steps"))
    print(f"\nrun folder: {run}\ncurves:     {run / 'curves.png'}\ncheckpoint: {ckpt}\n"
          f"try:        electra detect --model {run} \"your sentence\"")
    return run
