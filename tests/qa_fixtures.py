"""Shared builders for the QA and tagging tests: a tiny WordPiece tokenizer and a tiny pre-trained checkpoint."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers.implementations import BertWordPieceTokenizer

from electra.checkpoint import save_checkpoint
from electra.config import ModelConfig
from electra.modeling import Electra

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CITIES = ["paris", "london", "rome", "berlin", "madrid", "vienna", "lisbon", "oslo", "dublin", "athens",
          "prague", "warsaw"]
COUNTRIES = ["france", "england", "italy", "germany", "spain", "austria", "portugal", "norway", "ireland",
             "greece", "czechia", "poland"]
FILLER = ["the", "river", "runs", "through", "green", "hills", "and", "old",
          "towns", "where", "people", "walk", "every", "day"]


def tiny_checkpoint(root: Path, extra_text: list[str] = (), seed: int = 0) -> Path:
    """A randomly initialised ``tiny`` checkpoint with a WordPiece vocabulary of toy text (its characters, two-letter
    pieces and words)."""
    text = [" ".join(FILLER), " ".join(CITIES), " ".join(COUNTRIES), "what is the capital of ? . , ' s",
            "who when where which", *extra_text]
    tok_dir = root / "tok"
    tok_dir.mkdir(parents=True, exist_ok=True)
    # written, not trained: WordPiece training breaks ties differently in every process, so the fixture models (and
    # the near-ties that lossy backends may flip) would change from run to run
    bert = BertWordPieceTokenizer(lowercase=True)
    words = sorted({w for line in text for w, _ in bert.pre_tokenizer.pre_tokenize_str(
        bert.normalizer.normalize_str(line))})
    chars = sorted({c for w in words for c in w})
    pieces = sorted({w[i:i + 2] for w in words for i in range(1, len(w) - 1)})  # word pieces, as training adds
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars),
             *(f"##{p}" for p in pieces), *(w for w in words if len(w) > 1)]
    (tok_dir / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tok = BertWordPieceTokenizer(str(tok_dir / "vocab.txt"), lowercase=True)
    torch.manual_seed(seed)
    model = Electra(ModelConfig.preset("tiny", vocab_size=tok.get_vocab_size()))
    return save_checkpoint(model, root / "ckpt", tokenizer_dir=tok_dir)


def toy_squad(n_articles: int = 6, questions: int = 4, seed: int = 0, v2: bool = False) -> dict:
    """SQuAD-format toy data: 'The capital of X is Y.' with the question 'What is the capital of X?'."""
    rng = random.Random(seed)
    data = []
    for a in range(n_articles):
        paras = []
        for p in range(questions):
            i = rng.randrange(len(CITIES))
            pre = " ".join(rng.sample(FILLER, 4))
            sent = f"The capital of {COUNTRIES[i].title()} is {CITIES[i].title()}."
            context = f"{pre.capitalize()}. {sent} {' '.join(rng.sample(FILLER, 3))}."
            start = context.index(CITIES[i].title())
            qid = f"a{a}p{p}"
            impossible = v2 and rng.random() < 0.4
            if impossible:
                j = (i + 1) % len(COUNTRIES)
                qa = {"id": qid, "question": f"What is the capital of {COUNTRIES[j].title()}?", "answers": [],
                      "is_impossible": True}
            else:
                qa = {"id": qid, "question": f"What is the capital of {COUNTRIES[i].title()}?",
                      "answers": [{"text": CITIES[i].title(), "answer_start": start}], "is_impossible": False}
            paras.append({"context": context, "qas": [qa]})
        data.append({"title": f"t{a}", "paragraphs": paras})
    return {"version": "v2.0" if v2 else "1.1", "data": data}


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False))
    return path
