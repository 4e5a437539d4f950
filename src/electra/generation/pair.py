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

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer

from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
from electra.errors import ElectraError
from electra.inference import load_model, torch_pretrained_runners
from electra.modeling import Electra
from electra.tokenization import SpecialTokens, continuation_prefix, pad_batch, special_tokens

MASK = "[MASK]"  # our marker syntax for a token to fill (any tokenizer; its own mask token works too)
METASPACE = "\u2581"  # SentencePiece's word-start mark (▁)


@dataclass
class Pair:
    """A generator and a discriminator of one vocabulary, their tokenizer, and the longest input they take."""

    generator: Any  # an electra.inference.Runner
    discriminator: Any
    tokenizer: Tokenizer
    max_len: int

    @cached_property
    def special(self) -> SpecialTokens:
        """The tokenizer's special-token roles (:func:`electra.tokenization.special_tokens`)."""
        return roles(self.tokenizer)

    @property
    def cls_id(self) -> int:
        return self.special.cls_id

    @property
    def sep_id(self) -> int:
        return self.special.sep_id

    @cached_property
    def mask_id(self) -> int:
        return self.special.need_mask("filling, generation and correction mask tokens")


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
_BANNED: weakref.WeakKeyDictionary[Tokenizer, np.ndarray] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PieceStyle:
    """How a tokenizer marks word boundaries in its pieces: WordPiece's continuation prefix (``##ing``), or a
    word-start mark (SentencePiece's Metaspace ``▁``: ``▁the``; byte-level BPE's ``Ġ``); ``marker`` empty when
    it marks neither."""

    marker: str = ""
    starts_word: bool = False  # True: the marker begins a word (▁); False: it continues one (##)

    def is_word_start(self, token: str) -> bool:
        """Whether ``token`` can begin a word: it has the word-start mark (and more), or lacks the continuation
        prefix."""
        if not self.marker:
            return True
        if self.starts_word:
            return token.startswith(self.marker) and len(token) > len(self.marker)
        return not token.startswith(self.marker)

    def body(self, token: str) -> str:
        """``token`` without its marker (``##ing`` -> ``ing``, ``▁the`` -> ``the``)."""
        return token[len(self.marker):] if self.marker and token.startswith(self.marker) else token


def roles(tokenizer: Tokenizer) -> SpecialTokens:
    """:func:`electra.tokenization.special_tokens` of ``tokenizer`` (computed once per tokenizer object)."""
    return special_tokens(tokenizer)


def piece_style(tokenizer: Tokenizer) -> PieceStyle:
    """The tokenizer's :class:`PieceStyle`, from :func:`electra.tokenization.continuation_prefix`."""
    marking = continuation_prefix(tokenizer)
    return PieceStyle(*marking) if marking else PieceStyle()


def encode(tokenizer: Tokenizer, text: str, max_len: int) -> Encoding:
    """``cls text sep`` (the tokenizer's own), refused with a one-line error when longer than ``max_len`` tokens."""
    enc = tokenizer.encode(text)
    if len(enc.ids) > max_len:
        raise ElectraError(f"text is {len(enc.ids)} tokens long; the model takes at most {max_len}")
    return enc


def pieces_of(tokenizer: Tokenizer, text: str) -> list[int]:
    """The token ids of ``text`` without the tokenizer's cls/sep (none for blank text)."""
    return tokenizer.encode(text, add_special_tokens=False).ids if text.strip() else []


_CJK_GAP = re.compile(r"(?<=[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]) "
                      r"(?=[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef])")


def decode_span(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Token ids as text: word pieces joined (no ``##``/``▁`` marks), no space put between Chinese characters
    (a WordPiece decoder writes one between every two words, and a CJK character is a word there)."""
    style = piece_style(tokenizer)
    text = tokenizer.decode(ids, skip_special_tokens=False)
    if style.marker and not style.starts_word:
        text = text.replace(" " + style.marker, "").removeprefix(style.marker)
    elif style.starts_word:  # a byte-level BPE decoder keeps the space its first word's Ġ stands for
        text = text.lstrip()
    return _CJK_GAP.sub("", text)


def special_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of the tokenizer's special tokens: its roles' (cls, sep, pad, unk, mask) and any other token it
    marks special."""
    return sorted(roles(tokenizer).all_ids)


def banned_ids(tokenizer: Tokenizer, width: int | None = None) -> np.ndarray:
    """A bool mask of ids never proposed: the special tokens (:func:`special_token_ids`) and WordPiece's
    ``[unusedN]`` entries; over ``width`` ids when given (the model's output size), the output rows past the
    tokenizer's vocabulary banned too (an imported model's padded embedding table)."""
    if tokenizer not in _BANNED:
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        ban = np.zeros(size, dtype=bool)
        ban[[i for i in roles(tokenizer).all_ids if i < size]] = True
        style = piece_style(tokenizer)
        if style.marker and not style.starts_word:  # WordPiece (BERT's vocab.txt)
            for tok, i in tokenizer.get_vocab().items():
                if tok.startswith("[unused"):
                    ban[i] = True
        _BANNED[tokenizer] = ban
    ban = _BANNED[tokenizer]
    return fit(ban, width or len(ban), True)


def fit(mask: np.ndarray, width: int, fill: bool) -> np.ndarray:
    """A per-id bool ``mask`` cut or extended (with ``fill``) to ``width`` ids: the model's output size, which
    may exceed the tokenizer's vocabulary."""
    if len(mask) >= width:
        return mask[:width].copy()
    return np.concatenate([mask, np.full(width - len(mask), fill)])


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
    batch = pad_batch(rows, pad_id=pair.special.pad_id)
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
    """The discriminator's p(replaced) at every position of each row (the tokenizer's cls/sep included)."""
    logits = pair.discriminator(pad_batch(rows, pad_id=pair.special.pad_id))["logits"].astype(np.float64)
    return [1.0 / (1.0 + np.exp(-logits[i, :len(r)])) for i, r in enumerate(rows)]


def sentence_score(p_replaced: np.ndarray) -> float:
    """Mean log p(original) over the tokens between the first (cls) and the last (sep) (higher: more plausible)."""
    inner = p_replaced[1:-1]
    return float(np.log1p(-np.minimum(inner, 1 - 1e-6)).mean()) if len(inner) else 0.0


# ---- replaced-token detection --------------------------------------------------------------------------
@dataclass
class Detection:
    tokens: list[str]
    replaced_prob: list[float]
    sequence_score: float  # geometric mean of P(original) over the tokens: 1.0 = surely unaltered
    offsets: list[tuple[int, int]] | None = None  # each token's characters [start, end) in the text, if known

    def to_dict(self) -> dict:
        """What ``electra detect --json`` prints and ``/v1/detect`` answers: with ``offsets`` (each token's
        ``[start, end)`` characters in the text; what the page marks) when they are known."""
        out = {"tokens": self.tokens, "replaced_prob": self.replaced_prob, "sequence_score": self.sequence_score}
        if self.offsets is not None:
            out["offsets"] = [list(span) for span in self.offsets]
        return out


def token_spans(enc: Encoding, text: str | None = None) -> list[tuple[int, int]]:
    """Each token's characters [start, end) in the text it was encoded from: the tokenizer's offsets, less the
    space a SentencePiece word-start piece (``▁the``) carries before its word (with ``text``), and empty for a
    piece that is only the mark (``▁``, which stands for a space or for none at the text's start)."""
    out = []
    for tok, (s, e), special in zip(enc.tokens, enc.offsets, enc.special_tokens_mask):
        if text is not None and not special:
            if tok == METASPACE:
                s = e if text[s:e].isspace() else s
                e = s
            while s < e and text[s].isspace():
                s += 1
        out.append((s, e))
    return out


def inner_tokens(enc: Encoding) -> slice:
    """The text's tokens: all but the cls/sep the tokenizer's post-processor put around them."""
    mask = enc.special_tokens_mask
    if len(mask) >= 2 and mask[0] and mask[-1]:
        return slice(1, len(mask) - 1)
    return slice(None)


def detect_encoded(runner: Any, encodings: list[Encoding], texts: Sequence[str] | None = None) -> list[Detection]:
    """The discriminator's probability that each token was replaced, for a batch of encoded texts; with
    ``texts`` (what was encoded) each token's character offsets too (:func:`token_spans`)."""
    logits = runner(pad_batch([e.ids for e in encodings], pad_id=getattr(runner, "pad_id", 0)))["logits"]
    out = []
    for k, (row, enc) in enumerate(zip(logits, encodings)):
        tokens = enc.tokens
        probs = 1.0 / (1.0 + np.exp(-row[:len(tokens)].astype(np.float64)))
        inner = inner_tokens(enc)
        p = probs[inner]
        score = float(np.exp(np.log1p(-np.minimum(p, 1 - 1e-6)).mean())) if len(p) else 1.0
        spans = token_spans(enc, texts[k]) if texts is not None else None
        out.append(Detection(tokens[inner], [round(float(x), 4) for x in p], round(score, 4),
                             spans[inner] if spans is not None else None))
    return out


@torch.no_grad()
def detect(model: Electra, tokenizer: Tokenizer, text: str) -> Detection:
    """The discriminator's probability that each token of ``text`` was replaced, with the tokens' character
    offsets in ``text``."""
    enc = encode(tokenizer, text, model.config.discriminator.max_position_embeddings)
    return detect_encoded(torch_runner(model, "discriminator"), [enc], [text])[0]
