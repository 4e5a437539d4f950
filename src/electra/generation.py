"""Using generator and discriminator together: fill masks, detect replaced tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from electra.errors import ElectraError
from electra.modeling import Electra


@dataclass
class Detection:
    tokens: list[str]
    replaced_prob: list[float]
    sequence_score: float  # geometric mean of P(original) over the tokens: 1.0 = surely unaltered

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "replaced_prob": self.replaced_prob, "sequence_score": self.sequence_score}


def _encode(tokenizer: Tokenizer, text: str, max_len: int) -> tuple[torch.Tensor, list[str]]:
    enc = tokenizer.encode(text)
    if len(enc.ids) > max_len:
        raise ElectraError(f"text is {len(enc.ids)} tokens long; the model takes at most {max_len}")
    return torch.tensor([enc.ids]), enc.tokens


@torch.no_grad()
def detect(model: Electra, tokenizer: Tokenizer, text: str) -> Detection:
    """The discriminator's probability that each token of ``text`` was replaced."""
    model.eval()
    ids, tokens = _encode(tokenizer, text, model.config.discriminator.max_position_embeddings)
    probs = torch.sigmoid(model.discriminator(ids)[0].float())
    inner = slice(1, len(tokens) - 1) if tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" else slice(None)
    p = probs[inner]
    score = float(torch.exp(torch.log1p(-p.clamp(max=1 - 1e-6)).mean())) if len(p) else 1.0
    return Detection(tokens[inner], [round(float(x), 4) for x in p], round(score, 4))


@torch.no_grad()
def fill_mask(model: Electra, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The generator's top-k candidates (token, probability) for every ``[MASK]`` in ``text``."""
    from electra.config import at_least, check_values

    check_values("fill option", {"top_k": top_k}, {"top_k": at_least(1)})
    model.eval()
    mask_id = tokenizer.token_to_id("[MASK]")
    ids, _ = _encode(tokenizer, text, model.config.discriminator.max_position_embeddings)
    positions = (ids[0] == mask_id).nonzero().flatten()
    if len(positions) == 0:
        raise ElectraError("no [MASK] token in the text; write [MASK] where a word should be filled")
    logits = model.generator(ids, positions=positions[None])[0].float()
    probs = logits.softmax(-1)
    top = probs.topk(top_k, dim=-1)
    return [[(tokenizer.id_to_token(int(i)), round(float(p), 4)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(top.values, top.indices)]
