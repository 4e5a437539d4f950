"""`electra demo`: raw text to a pre-trained tiny ELECTRA in a few minutes on a laptop CPU.

Trains a WordPiece tokenizer on the bundled Wikipedia slice, prepares shards, pre-trains the tiny preset,
then shows what the discriminator and generator learned.
"""

from __future__ import annotations

import random
from pathlib import Path

from electra.config import PretrainConfig
from electra.errors import ElectraError

DEMO_TEXT = Path(__file__).resolve().parents[2] / "data" / "demo" / "en-wiki-sample.txt"
DETECT_SENTENCES = [
    ("original", "the city is located on the north bank of the river."),
    ("one word replaced", "the city is located on the north bank of the banana."),
]
FILL_SENTENCE = "the river flows into the [MASK] near the city."


def find_demo_text() -> Path:
    if DEMO_TEXT.is_file():
        return DEMO_TEXT
    raise ElectraError(f"{DEMO_TEXT}: bundled demo text not found (run the demo from a clone of the repository)")


def run_demo(out: str | Path, steps: int = 1500, batch_size: int = 32, vocab_size: int = 8000,
             seed: int = 0, progress: bool = True) -> Path:
    """Tokenizer -> prepare -> pretrain (tiny) -> detect + fill. Returns the run folder."""
    from electra.checkpoint import load_checkpoint, resolve_checkpoint
    from electra.data.corpus import Corpus
    from electra.data.prepare import prepare
    from electra.generation import detect, fill_mask
    from electra.tokenization import load_tokenizer, train_tokenizer
    from electra.training.pretrainer import pretrain

    out = Path(out)
    text = find_demo_text()
    random.seed(seed)
    print(f"[1/4] training a {vocab_size}-entry WordPiece tokenizer on {text.name}")
    train_tokenizer(Corpus([text]).texts(), out / "tokenizer", vocab_size=vocab_size, show_progress=progress)
    print("[2/4] preparing pre-training shards (max length 128)")
    summary = prepare([text], out / "tokenizer", out / "data", 128, seed=seed, overwrite=True, progress=progress)
    print(summary.format())
    print(f"[3/4] pre-training the tiny preset for {steps} steps of {batch_size} x 128 tokens")
    cfg = PretrainConfig.for_preset("tiny", data=str(out / "data"), out=str(out / "run"), max_steps=steps,
                                    batch_size=batch_size, warmup_steps=min(100, steps // 10), save_every=500,
                                    log_every=25, seed=seed)
    run = pretrain(cfg, overwrite=True, progress=progress)
    print("[4/4] what the model learned")
    ckpt = resolve_checkpoint(run)
    model, tokenizer = load_checkpoint(ckpt), load_tokenizer(ckpt / "tokenizer")
    for label, sentence in DETECT_SENTENCES:
        d = detect(model, tokenizer, sentence)
        top = max(range(len(d.tokens)), key=lambda i: d.replaced_prob[i])
        print(f"  detect ({label}): {sentence!r}\n    most suspicious token: {d.tokens[top]!r} "
              f"(p replaced = {d.replaced_prob[top]:.2f}); sequence score {d.sequence_score:.2f}")
        print("    " + " ".join(f"{t}:{p:.2f}" for t, p in zip(d.tokens, d.replaced_prob)))
    for i, cands in enumerate(fill_mask(model, tokenizer, FILL_SENTENCE)):
        print(f"  fill {FILL_SENTENCE!r} [MASK] #{i + 1}: " + ", ".join(f"{t} ({p:.2f})" for t, p in cands))
    print(f"\nrun folder: {run}\ncurves:     {run / 'curves.png'}\ncheckpoint: {ckpt}\n"
          f"try:        electra detect --model {run} \"your sentence\"")
    return run
