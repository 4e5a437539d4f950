"""A generator and a discriminator used together: the :class:`Pair`, and what each network says about a text.

ELECTRA pre-trains two networks of one vocabulary (Clark et al. 2020, §2): a small masked language model, the
generator, and the discriminator that tells original tokens from replaced ones. Both stay useful after
pre-training: the generator proposes tokens (:func:`generator_probs`), the discriminator scores every token
of a text (:func:`replaced_probs`, :func:`detect`; :func:`sentence_score` sums that into one number). A
:class:`Pair` holds both as :class:`electra.inference.Runner` objects, so everything built on it (filling,
correction, augmentation: the other modules of :mod:`electra.generation`) runs on PyTorch (fp32/bf16/int8) and
onnxruntime alike. :func:`detect` takes our PyTorch model; :func:`detect_encoded` does the same for a batch of
tokenized texts on any runner, which is what ``electra detect --backend`` and ``electra serve`` use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer

from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
from electra.errors import ElectraError
from electra.inference import load_model, torch_pretrained_runners
from electra.modeling import Electra
from electra.tokenization import SPECIAL_TOKENS, pad_batch

MASK = "[MASK]"


@dataclass
class Pair:
    """A generator and a discriminator of one vocabulary, their tokenizer, and the longest input they take."""

    generator: Any  # an electra.inference.Runner
    discriminator: Any
    tokenizer: Tokenizer
    max_len: int

    @property
    def cls_id(self) -> int:
        return self.tokenizer.token_to_id("[CLS]")

    @property
    def sep_id(self) -> int:
        return self.tokenizer.token_to_id("[SEP]")

    @property
    def mask_id(self) -> int:
        return self.tokenizer.token_to_id(MASK)


def pair_from_model(model: Electra, tokenizer: Tokenizer) -> Pair:
    """A :class:`Pair` over our PyTorch model in fp32."""
    runners = torch_pretrained_runners(model, "fp32")
    return Pair(runners["generator"], runners["discriminator"], tokenizer,
                model.config.discriminator.max_position_embeddings)


def load_pair(path: str | Path, backend: str = "torch", precision: str = "fp32", command: str = "this command"
              ) -> Pair:
    """A pre-trained checkpoint, run folder or ONNX export as a :class:`Pair`; a one-line error when it is a
    fine-tuned run or has no trained generator (e.g. ``electra import-hf --discriminator`` alone)."""
    p = Path(path)
    if backend == "torch" and not (p / "onnx.json").is_file():
        try:
            meta = read_checkpoint_meta(resolve_checkpoint(p))
        except ElectraError:
            meta = {}
        if meta and not meta.get("has_generator", True):
            raise ElectraError(f"{path}: the checkpoint has no generator (a discriminator imported alone); "
                               f"{command} needs a generator + discriminator pair")
    loaded = load_model(path, backend, precision)
    if loaded.kind != "pretrained":
        raise ElectraError(f"{path}: a fine-tuned {loaded.kind} run; {command} needs a pre-trained checkpoint "
                           "(generator + discriminator)")
    if "generator" not in loaded.runners or "discriminator" not in loaded.runners:
        raise ElectraError(f"{path}: has no generator; {command} needs a generator + discriminator pair")
    return Pair(loaded.runners["generator"], loaded.runners["discriminator"], loaded.tokenizer, loaded.max_sequence)


def torch_runner(model: Electra, kind: str) -> Any:
    """The fp32 PyTorch runner of one network of ``model``: ``"generator"`` or ``"discriminator"``."""
    return torch_pretrained_runners(model, "fp32")[kind]


# ---- tokens ----------------------------------------------------------------------------------------------
def encode(tokenizer: Tokenizer, text: str, max_len: int) -> Encoding:
    """``[CLS] text [SEP]``, refused with a one-line error when longer than ``max_len`` tokens."""
    enc = tokenizer.encode(text)
    if len(enc.ids) > max_len:
        raise ElectraError(f"text is {len(enc.ids)} tokens long; the model takes at most {max_len}")
    return enc


def pieces_of(tokenizer: Tokenizer, text: str) -> list[int]:
    """The token ids of ``text`` without ``[CLS]``/``[SEP]`` (none for blank text)."""
    return tokenizer.encode(text, add_special_tokens=False).ids if text.strip() else []


def decode_span(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Token ids as text, word pieces joined (``##`` continuation marks removed)."""
    return tokenizer.decode(ids, skip_special_tokens=False).replace(" ##", "").removeprefix("##")


def special_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of the tokenizer's special tokens: ours (:data:`electra.tokenization.SPECIAL_TOKENS`) and any added
    token marked special."""
    ids = {tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    ids |= {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    return sorted(i for i in ids if i is not None)


def banned_ids(tokenizer: Tokenizer) -> np.ndarray:
    """A bool mask over the vocabulary of ids never proposed: the special tokens ([PAD] [UNK] [CLS] [SEP]
    [MASK]) and ``[unusedN]`` entries."""
    vocab = tokenizer.get_vocab()
    ban = np.zeros(max(vocab.values()) + 1, dtype=bool)
    for tok, i in vocab.items():
        if tok in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", MASK) or tok.startswith("[unused"):
            ban[i] = True
    return ban


def choose(probs: np.ndarray, top_k: int, rng: np.random.Generator | None) -> tuple[int, float]:
    """A token from ``probs`` and its probability: argmax (``rng`` None), or a sample from the ``top_k`` most
    probable tokens (``top_k`` 0: the whole distribution)."""
    if rng is None:
        t = int(np.argmax(probs))
        return t, float(probs[t])
    if top_k > 0:
        cand = np.argpartition(-probs, min(top_k, len(probs) - 1))[:top_k]
    else:
        cand = np.arange(len(probs))
    w = probs[cand] / probs[cand].sum()
    t = int(cand[rng.choice(len(cand), p=w)])
    return t, float(probs[t])


# ---- the two networks on ragged batches ------------------------------------------------------------------
def generator_probs(pair: Pair, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                    temperature: float = 1.0) -> list[np.ndarray]:
    """The generator's softmax (at ``temperature``) at ``positions`` of each row: one (n_i, vocab) array each."""
    batch = pad_batch(rows)
    width = max(1, max(len(p) for p in positions))
    pos = np.array([list(p) + [0] * (width - len(p)) for p in positions], dtype=np.int64)
    if pair.generator.backend == "torch":  # the vocabulary projection at the asked positions only
        logits = pair.generator({**batch, "positions": pos})["logits"]
    else:
        logits = pair.generator(batch)["logits"][np.arange(len(rows))[:, None], pos]
    logits = logits.astype(np.float64) / temperature
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return [probs[i, :len(p)] for i, p in enumerate(positions)]


def replaced_probs(pair: Pair, rows: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """The discriminator's p(replaced) at every position of each row (``[CLS]``/``[SEP]`` included)."""
    logits = pair.discriminator(pad_batch(rows))["logits"].astype(np.float64)
    return [1.0 / (1.0 + np.exp(-logits[i, :len(r)])) for i, r in enumerate(rows)]


def sentence_score(p_replaced: np.ndarray) -> float:
    """Mean log p(original) over the tokens between ``[CLS]`` and ``[SEP]`` (higher: more plausible)."""
    inner = p_replaced[1:-1]
    return float(np.log1p(-np.minimum(inner, 1 - 1e-6)).mean()) if len(inner) else 0.0


# ---- replaced-token detection --------------------------------------------------------------------------
@dataclass
class Detection:
    tokens: list[str]
    replaced_prob: list[float]
    sequence_score: float  # geometric mean of P(original) over the tokens: 1.0 = surely unaltered

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "replaced_prob": self.replaced_prob, "sequence_score": self.sequence_score}


def detect_encoded(runner: Any, encodings: list[Encoding]) -> list[Detection]:
    """The discriminator's probability that each token was replaced, for a batch of encoded texts."""
    logits = runner(pad_batch([e.ids for e in encodings]))["logits"]
    out = []
    for row, enc in zip(logits, encodings):
        tokens = enc.tokens
        probs = 1.0 / (1.0 + np.exp(-row[:len(tokens)].astype(np.float64)))
        inner = slice(1, len(tokens) - 1) if tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" else slice(None)
        p = probs[inner]
        score = float(np.exp(np.log1p(-np.minimum(p, 1 - 1e-6)).mean())) if len(p) else 1.0
        out.append(Detection(tokens[inner], [round(float(x), 4) for x in p], round(score, 4)))
    return out


@torch.no_grad()
def detect(model: Electra, tokenizer: Tokenizer, text: str) -> Detection:
    """The discriminator's probability that each token of ``text`` was replaced."""
    enc = encode(tokenizer, text, model.config.discriminator.max_position_embeddings)
    return detect_encoded(torch_runner(model, "discriminator"), [enc])[0]
