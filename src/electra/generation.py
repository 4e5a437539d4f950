"""Using generator and discriminator together: fill masks, detect replaced tokens.

:func:`detect` and :func:`fill_mask` take our PyTorch model; :func:`detect_encoded` and :func:`fill_encoded`
do the same for a batch of tokenized texts on any :class:`electra.inference.Runner` (PyTorch fp32/bf16/int8 or
onnxruntime), which is what ``electra detect/fill --backend`` and ``electra serve`` use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer

from electra.errors import ElectraError
from electra.modeling import Electra


@dataclass
class Detection:
    tokens: list[str]
    replaced_prob: list[float]
    sequence_score: float  # geometric mean of P(original) over the tokens: 1.0 = surely unaltered

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "replaced_prob": self.replaced_prob, "sequence_score": self.sequence_score}


def encode(tokenizer: Tokenizer, text: str, max_len: int) -> Encoding:
    """``[CLS] text [SEP]``, refused with a one-line error when longer than ``max_len`` tokens."""
    enc = tokenizer.encode(text)
    if len(enc.ids) > max_len:
        raise ElectraError(f"text is {len(enc.ids)} tokens long; the model takes at most {max_len}")
    return enc


def _inputs(encodings: list[Encoding]) -> dict[str, np.ndarray]:
    from electra.inference import pad_batch

    return pad_batch([e.ids for e in encodings])


def detect_encoded(runner: Any, encodings: list[Encoding]) -> list[Detection]:
    """The discriminator's probability that each token was replaced, for a batch of encoded texts."""
    logits = runner(_inputs(encodings))["logits"]
    out = []
    for row, enc in zip(logits, encodings):
        tokens = enc.tokens
        probs = 1.0 / (1.0 + np.exp(-row[:len(tokens)].astype(np.float64)))
        inner = slice(1, len(tokens) - 1) if tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" else slice(None)
        p = probs[inner]
        score = float(np.exp(np.log1p(-np.minimum(p, 1 - 1e-6)).mean())) if len(p) else 1.0
        out.append(Detection(tokens[inner], [round(float(x), 4) for x in p], round(score, 4)))
    return out


def fill_encoded(runner: Any, tokenizer: Tokenizer, encodings: list[Encoding], top_k: int = 5
                 ) -> list[list[list[dict[str, Any]]]]:
    """For each text, for each ``[MASK]``: the generator's ``top_k`` candidates as ``transformers``' fill-mask
    pipeline gives them (``sequence``: the text with that mask filled, ``score``, ``token`` id, ``token_str``)."""
    mask_id = tokenizer.token_to_id("[MASK]")
    positions = [[i for i, t in enumerate(e.ids) if t == mask_id] for e in encodings]
    for p in positions:
        if not p:
            raise ElectraError("no [MASK] token in the text; write [MASK] where a word should be filled")
    batch = _inputs(encodings)
    width = max(len(p) for p in positions)
    if runner.backend in ("torch", "tf"):  # the vocabulary projection at the masked positions only
        pos = np.array([p + [0] * (width - len(p)) for p in positions], dtype=np.int64)
        logits = runner({**batch, "positions": pos})["logits"]
    else:
        full = runner(batch)["logits"]
        logits = np.stack([full[i, p + [0] * (width - len(p))] for i, p in enumerate(positions)])
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    results = []
    for i, (enc, pos) in enumerate(zip(encodings, positions)):
        per_mask = []
        for j, at in enumerate(pos):
            top = np.argsort(-probs[i, j], kind="stable")[:top_k]
            cands = []
            for t in top:
                ids = list(enc.ids)
                ids[at] = int(t)
                inner = ids[1:-1] if enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]" else ids
                cands.append({"sequence": tokenizer.decode(inner, skip_special_tokens=False),
                              "score": round(float(probs[i, j, t]), 4), "token": int(t),
                              "token_str": tokenizer.id_to_token(int(t))})
            per_mask.append(cands)
        results.append(per_mask)
    return results


def _runner(model: Electra, kind: str) -> Any:
    from electra.inference import torch_pretrained_runners

    return torch_pretrained_runners(model, "fp32")[kind]


@torch.no_grad()
def detect(model: Electra, tokenizer: Tokenizer, text: str) -> Detection:
    """The discriminator's probability that each token of ``text`` was replaced."""
    enc = encode(tokenizer, text, model.config.discriminator.max_position_embeddings)
    return detect_encoded(_runner(model, "discriminator"), [enc])[0]


@torch.no_grad()
def fill_mask(model: Electra, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The generator's top-k candidates (token, probability) for every ``[MASK]`` in ``text``."""
    from electra.config import at_least, check_values

    check_values("fill option", {"top_k": top_k}, {"top_k": at_least(1)})
    enc = encode(tokenizer, text, model.config.discriminator.max_position_embeddings)
    return [[(c["token_str"], c["score"]) for c in cands]
            for cands in fill_encoded(_runner(model, "generator"), tokenizer, [enc], top_k)[0]]
