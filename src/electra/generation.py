"""Using generator and discriminator together: fill masks, detect replaced tokens.

:func:`detect` and :func:`fill_mask` take our PyTorch model; :func:`detect_encoded` and :func:`fill_encoded`
do the same for a batch of tokenized texts on any :class:`electra.inference.Runner` (PyTorch fp32/bf16/int8 or
onnxruntime), which is what ``electra detect/fill --backend`` and ``electra serve`` use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    from electra.tokenization import pad_batch

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
    pipeline gives them (``sequence``: the text with that mask filled, ``score``, ``token`` id, ``token_str``).

    Special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]``, ``[UNK]`` and any other the tokenizer marks
    special) are never candidates; ``transformers``' pipeline does not exclude them, so it can answer ``[UNK]`` or
    ``[SEP]``. Scores stay the probabilities over the whole vocabulary (not renormalised)."""
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
    ranked = probs.copy()
    ranked[..., [t for t in special_token_ids(tokenizer) if t < ranked.shape[-1]]] = -1.0
    results = []
    for i, (enc, pos) in enumerate(zip(encodings, positions)):
        per_mask = []
        for j, at in enumerate(pos):
            top = np.argsort(-ranked[i, j], kind="stable")[:top_k]
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


def special_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of the tokenizer's special tokens: ours (:data:`electra.tokenization.SPECIAL_TOKENS`) and any added
    token marked special."""
    from electra.tokenization import SPECIAL_TOKENS

    ids = {tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    ids |= {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    return sorted(i for i in ids if i is not None)


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


# =========================================================================================================
# Generator + discriminator together: mask-predict infilling, generation, detect-and-correct, augmentation.
# Everything below runs on a :class:`Pair` of runners, so the PyTorch and onnxruntime backends both work.
# =========================================================================================================
MASK = "[MASK]"
MASK_ANY = "[MASK*]"  # a span of unknown length: 1..max_span tokens are tried
_MARKER = re.compile(r"\[MASK\*?\]")
CONFIDENCES = ("generator", "discriminator")


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
    from electra.inference import torch_pretrained_runners

    runners = torch_pretrained_runners(model, "fp32")
    return Pair(runners["generator"], runners["discriminator"], tokenizer,
                model.config.discriminator.max_position_embeddings)


def load_pair(path: str | Path, backend: str = "torch", precision: str = "fp32", command: str = "this command"
              ) -> Pair:
    """A pre-trained checkpoint, run folder or ONNX export as a :class:`Pair`; a one-line error when it is a
    fine-tuned run or has no trained generator (e.g. ``electra import-hf --discriminator`` alone)."""
    from electra.inference import load_model

    p = Path(path)
    if backend == "torch" and not (p / "onnx.json").is_file():
        from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint

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


# ---- the two networks on ragged batches ------------------------------------------------------------------
def generator_probs(pair: Pair, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                    temperature: float = 1.0) -> list[np.ndarray]:
    """The generator's softmax (at ``temperature``) at ``positions`` of each row: one (n_i, vocab) array each."""
    from electra.tokenization import pad_batch

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
    from electra.tokenization import pad_batch

    logits = pair.discriminator(pad_batch(rows))["logits"].astype(np.float64)
    return [1.0 / (1.0 + np.exp(-logits[i, :len(r)])) for i, r in enumerate(rows)]


def sentence_score(p_replaced: np.ndarray) -> float:
    """Mean log p(original) over the tokens between ``[CLS]`` and ``[SEP]`` (higher: more plausible)."""
    inner = p_replaced[1:-1]
    return float(np.log1p(-np.minimum(inner, 1 - 1e-6)).mean()) if len(inner) else 0.0


def _choose(probs: np.ndarray, top_k: int, rng: np.random.Generator | None) -> tuple[int, float]:
    """argmax, or a sample from the ``top_k`` most probable tokens (``top_k`` 0: the whole distribution)."""
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


def _banned(tokenizer: Tokenizer) -> np.ndarray:
    """Ids never proposed: the special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]) and ``[unusedN]`` entries."""
    vocab = tokenizer.get_vocab()
    ban = np.zeros(max(vocab.values()) + 1, dtype=bool)
    for tok, i in vocab.items():
        if tok in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", MASK) or tok.startswith("[unused"):
            ban[i] = True
    return ban


# ---- mask-predict --------------------------------------------------------------------------------------
def mask_predict(pair: Pair, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                 iterations: int = 4, confidence: str = "generator", top_k: int = 0, temperature: float = 1.0,
                 rng: np.random.Generator | None = None) -> tuple[list[list[int]], list[np.ndarray]]:
    """Mask-predict (Ghazvininejad et al. 2019) over a batch of rows, each with its own masked ``positions``.

    Iteration 0 fills every masked position; iteration t = 1..T-1 re-masks the n = N·(T-t)/T least confident
    of them (rounded down; N masked positions in the row) and predicts those again, the others staying as
    they are. ``confidence``: ``"generator"`` — the generator's probability of the token when it was last
    predicted (the paper's); ``"discriminator"`` — 1 - p(replaced) of the current sequence (our variant: the
    critic of the same vocabulary re-reads the whole filled text each round). ``rng`` None: argmax;
    otherwise sampling from the ``top_k`` tokens at ``temperature``. Special tokens are never proposed.
    Returns the filled rows and the generator probability of each filled token (per row, in ``positions`` order).
    """
    if confidence not in CONFIDENCES:
        raise ElectraError(f"confidence {confidence!r}: expected one of {', '.join(CONFIDENCES)}")
    if iterations < 1:
        raise ElectraError(f"iterations {iterations}: must be >= 1")
    ban = _banned(pair.tokenizer)
    rows = [list(r) for r in rows]
    conf = [np.zeros(len(p)) for p in positions]
    gen_p = [np.zeros(len(p)) for p in positions]
    todo = [list(range(len(p))) for p in positions]  # indices into positions[i] to (re)predict
    for t in range(iterations):
        for r, p, idx in zip(rows, positions, todo):
            for j in idx:
                r[p[j]] = pair.mask_id
        ask = [[p[j] for j in idx] for p, idx in zip(positions, todo)]
        live = [i for i, a in enumerate(ask) if a]
        if live:
            probs = generator_probs(pair, [rows[i] for i in live], [ask[i] for i in live], temperature)
            for i, pr in zip(live, probs):
                pr = pr.copy()
                pr[:, ban[:pr.shape[1]]] = 0.0
                pr /= pr.sum(-1, keepdims=True)
                for j, dist in zip(todo[i], pr):
                    tok, prob = _choose(dist, top_k, rng)
                    rows[i][positions[i][j]] = tok
                    gen_p[i][j] = conf[i][j] = prob
        if confidence == "discriminator":
            for i, pr in enumerate(replaced_probs(pair, rows)):
                conf[i] = 1.0 - pr[list(positions[i])]
        if t + 1 < iterations:
            todo = []
            for i, p in enumerate(positions):
                n = len(p) * (iterations - t - 1) // iterations
                todo.append(sorted(np.argsort(conf[i], kind="stable")[:n].tolist()))
    return rows, gen_p


# ---- text with [MASK] / [MASK*] markers ------------------------------------------------------------------
@dataclass
class Filled:
    """A filled text, its spans (in the filled text's characters) and scores."""

    text: str
    spans: list[dict[str, Any]]
    score: float  # the discriminator's sentence score (mean log p(original)) of the filled text
    span_score: float  # mean log generator probability of the filled tokens (length-normalised)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "spans": self.spans, "score": round(self.score, 4),
                "span_score": round(self.span_score, 4)}


def _pieces(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids if text.strip() else []


def _parse_markers(text: str) -> list[tuple[int, int, bool]]:
    """Runs of markers separated by whitespace only: (start, end, unknown length?) with their mask counts."""
    runs: list[list[Any]] = []
    for m in _MARKER.finditer(text):
        star = m.group() == MASK_ANY
        if runs and not text[runs[-1][1]:m.start()].strip() and not star and not runs[-1][3]:
            runs[-1][1] = m.end()
            runs[-1][2] += 1
        else:
            runs.append([m.start(), m.end(), 1, star])
    return [(s, e, n if not star else -1) for s, e, n, star in runs]  # n -1: unknown length


def decode_span(tokenizer: Tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False).replace(" ##", "").removeprefix("##")


def fill_text(pair: Pair, text: str, iterations: int = 4, confidence: str = "generator", max_span: int = 5,
              samples: int = 1, top_k: int = 0, temperature: float = 1.0, seed: int | None = None) -> list[Filled]:
    """Fill every ``[MASK]`` (one token each; adjacent ones form a multi-token span) and ``[MASK*]`` (a span of
    unknown length: 1..``max_span`` tokens are tried, every ``[MASK*]`` of the text taking the same length in a
    candidate, and the candidate with the best length-normalised score — the mean log generator probability
    of its filled tokens — is kept) by mask-predict. ``samples`` > 1 (with ``top_k`` or ``temperature``)
    draws that many fillings; the results are ranked by the discriminator's sentence score, best first.
    ``iterations`` 1 is one-shot filling (every mask at once, argmax)."""
    from electra.config import at_least, check_values, positive

    check_values("fill option", {"iterations": iterations, "max_span": max_span, "samples": samples,
                                 "top_k": top_k, "temperature": temperature},
                 {"iterations": at_least(1), "max_span": at_least(1), "samples": at_least(1), "top_k": at_least(0),
                  "temperature": positive()})
    if not text.strip():
        raise ElectraError("empty text: nothing to fill")
    runs = _parse_markers(text)
    if not runs:
        raise ElectraError(f"no {MASK} or {MASK_ANY} in the text; write {MASK} where a token should be filled")
    lengths = range(1, max_span + 1) if any(n < 0 for _, _, n in runs) else [0]
    sampling = samples > 1 or top_k > 0 or temperature != 1.0
    rng = np.random.default_rng(seed) if sampling else None
    if samples > 1 and top_k == 0 and temperature == 1.0:
        top_k = 10  # several greedy fillings would all be the same
    results: list[Filled] = []
    for length in lengths:
        ids, positions, where = [pair.cls_id], [], []
        cursor = 0
        for s, e, n in runs:
            ids += _pieces(pair.tokenizer, text[cursor:s])
            k = n if n > 0 else length
            where.append((s, e, len(positions), k))
            positions += list(range(len(ids), len(ids) + k))
            ids += [pair.mask_id] * k
            cursor = e
        ids += _pieces(pair.tokenizer, text[cursor:]) + [pair.sep_id]
        if len(ids) > pair.max_len:
            raise ElectraError(f"text is {len(ids)} tokens long with its masks; the model takes at most "
                               f"{pair.max_len} (shorten it)")
        rows, gen_p = mask_predict(pair, [ids] * samples, [positions] * samples, iterations, confidence, top_k,
                                   temperature, rng)
        scores = replaced_probs(pair, rows)
        for row, gp, pr in zip(rows, gen_p, scores):
            out, spans, cursor = [], [], 0
            for s, e, first, k in where:
                out.append(text[cursor:s])
                fill = decode_span(pair.tokenizer, [row[positions[j]] for j in range(first, first + k)])
                start = sum(len(x) for x in out)
                out.append(fill)
                spans.append({"start": start, "end": start + len(fill), "text": fill, "tokens": k})
                cursor = e
            out.append(text[cursor:])
            results.append(Filled("".join(out), spans, sentence_score(pr), float(np.log(np.maximum(gp, 1e-12)).mean())))
    if len(lengths) > 1:  # unknown lengths: the best length-normalised candidate per sample
        per_sample = [results[i::samples] for i in range(samples)]
        results = [max(c, key=lambda f: f.span_score) for c in per_sample]
    unique: dict[str, Filled] = {}
    for f in sorted(results, key=lambda f: -f.score):
        unique.setdefault(f.text, f)
    return list(unique.values())


def generate(pair: Pair, prompt: str, length: int = 8, iterations: int = 10, samples: int = 1,
             confidence: str = "generator", top_k: int = 0, temperature: float = 1.0,
             seed: int | None = None) -> list[Filled]:
    """Continue ``prompt`` with ``length`` new tokens (or, when it holds ``[MASK]``/``[MASK*]``, fill those)
    by mask-predict; ``samples`` candidates ranked by the discriminator, best first."""
    from electra.config import at_least, check_values

    check_values("generate option", {"length": length}, {"length": at_least(1)})
    text = prompt if _MARKER.search(prompt) else (prompt.rstrip() + " " + " ".join([MASK] * length)).strip()
    return fill_text(pair, text, iterations, confidence, samples=samples, top_k=top_k, temperature=temperature,
                     seed=seed)


# ---- detect and correct ----------------------------------------------------------------------------------
@dataclass
class Word:
    """A pre-tokenizer word of the original text: its characters [start, end) and its pieces."""

    start: int
    end: int
    ids: list[int]
    unknown: bool = False  # [UNK]: never flagged or replaced (what it stands for is not known)


@dataclass
class Edit:
    start: int  # in the original text's characters
    end: int
    original: str
    replacement: str
    p_replaced: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "original": self.original, "replacement": self.replacement,
                "p_replaced": round(self.p_replaced, 4)}


@dataclass
class Correction:
    text: str
    edits: list[Edit]
    windows: int = 1  # how many windows a text longer than the model's positions was corrected in

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "edits": [e.to_dict() for e in self.edits]}


def words_of(tokenizer: Tokenizer, text: str) -> list[Word]:
    """The text's words (the tokenizer's pre-tokenization) with character offsets into ``text`` itself."""
    enc = tokenizer.encode(text, add_special_tokens=False)
    unk = tokenizer.token_to_id("[UNK]")
    words: list[Word] = []
    last = None
    for tid, wid, (s, e) in zip(enc.ids, enc.word_ids, enc.offsets):
        if wid is None:
            continue
        if wid != last:
            words.append(Word(s, e, [tid], tid == unk))
            last = wid
        else:
            words[-1].end = e
            words[-1].ids.append(tid)
            words[-1].unknown |= tid == unk
    return words


_SENTENCE_END = ".!?\u2026\u3002\uff01\uff1f"  # . ! ? … 。 ！ ？
_OPENING = "\"'([{\u201c\u2018\u00ab"


def is_name(text: str, word: Word) -> bool:
    """A word that starts with a capital letter and does not start a sentence (nothing but opening quotes or
    brackets between it and the text's start or the last sentence-final mark): taken for a name."""
    if not text[word.start:word.end][:1].isupper():
        return False
    before = text[:word.start].rstrip().rstrip(_OPENING).rstrip()
    return bool(before) and before[-1] not in _SENTENCE_END


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """``text`` with each edit's [start, end) replaced; everything else byte for byte."""
    out, cursor = [], 0
    for e in sorted(edits, key=lambda e: e.start):
        out += [text[cursor:e.start], e.replacement]
        cursor = e.end
    return "".join(out + [text[cursor:]])


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def read_vocabulary(path: str | Path) -> list[str]:
    """One candidate word per line (blank lines and duplicates skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: not UTF-8 text (byte {e.start})") from None
    words = list(dict.fromkeys(w.strip() for w in lines if w.strip()))
    if not words:
        raise ElectraError(f"{path}: no words (expected one candidate word per line)")
    return words


# The correction defaults, chosen on planted errors in SQuAD dev sentences 200-499 (the benchmark scores 0-199),
# with the full-depth-generator pair: README, "Detect and correct".
DEFAULT_THRESHOLD = 0.8
DEFAULT_MAX_NEW_P = 0.1
DEFAULT_MIN_GENERATOR_PROB = 0.6


class Corrector:
    """Detect and correct (our method; each step stated so it can be checked):

    1. the discriminator reads the text; a word is *flagged* when its largest piece p(replaced) > ``threshold``;
    2. flagged words are visited from the most to the least suspicious; for each, candidates are proposed:
       the generator's ``top_k`` whole-word tokens at the word masked as one position, plus (for a word of
       n > 1 pieces) its n-piece mask-predict filling; or, when restricted, the candidate words
       (``vocabulary``, or the words the other n-best ``hypotheses`` align with this one: HyPoradise's
       compositional correction), ranked by the generator;
    3. every candidate is put in place and the discriminator re-reads the text; the best is kept only if the
       sentence score (mean log p(original)) rises by more than ``min_gain`` and the discriminator then finds the
       new word original (its p(replaced) <= ``max_new_p``); generator proposals must also have a generator
       probability >= ``min_generator_prob``: proposer and critic must both be sure. With ``keep_names`` a
       capitalised word that does not start a sentence (:func:`is_name`) gets no generator proposals: an uncased
       generator proposes common words there ("the", "he"), never the name. These filters (the defaults, chosen
       on planted errors in held-out sentences disjoint from the benchmark's, ``benchmarks/correction.py
       --skip 200``) are what buys precision: without them the critic accepts any fluent word, right or not;
    4. repeat from 1 until nothing changes or ``rounds`` rounds. Words already replaced stay as they are.

    The output is the original text with only the replaced words' characters changed (the tokenizer's
    offsets; case follows the original word when the vocabulary is uncased). [UNK] words are never touched.
    A text longer than the model's positions is corrected in consecutive windows of whole words.
    """

    def __init__(self, pair: Pair, threshold: float = DEFAULT_THRESHOLD, top_k: int = 10, rounds: int = 3,
                 min_gain: float = 0.0, vocabulary: Sequence[str] | None = None,
                 max_new_p: float = DEFAULT_MAX_NEW_P, min_generator_prob: float = DEFAULT_MIN_GENERATOR_PROB,
                 keep_names: bool = True):
        from electra.config import at_least, check_values, interval

        check_values("correct option", {"threshold": threshold, "top_k": top_k, "rounds": rounds,
                                        "max_new_p": max_new_p, "min_generator_prob": min_generator_prob},
                     {"threshold": interval(0, 1, "[]"), "top_k": at_least(1), "rounds": at_least(1),
                      "max_new_p": interval(0, 1, "[]"), "min_generator_prob": interval(0, 1, "[]")})
        self.pair, self.threshold, self.top_k, self.rounds, self.min_gain = pair, threshold, top_k, rounds, min_gain
        self.max_new_p, self.min_generator_prob, self.keep_names = max_new_p, min_generator_prob, keep_names
        self.ban = _banned(pair.tokenizer)
        vocab = pair.tokenizer.get_vocab()
        self.whole = np.zeros(len(self.ban), dtype=bool)  # tokens that are whole words
        for tok, i in vocab.items():
            self.whole[i] = not tok.startswith("##") and not self.ban[i]
        self.vocabulary = None if vocabulary is None else [(w, _pieces(pair.tokenizer, w)) for w in vocabulary]

    # -- candidates
    def _generator_candidates(self, ids: list[int], w: int, spans: list[tuple[int, int]]) -> list[list[int]]:
        s, e = spans[w]
        one = ids[:s] + [self.pair.mask_id] + ids[e:]
        probs = generator_probs(self.pair, [one], [[s]])[0][0].copy()
        probs[~self.whole[:len(probs)]] = 0
        cands = [[int(t)] for t in np.argsort(-probs, kind="stable")[:self.top_k]
                 if probs[t] >= self.min_generator_prob]
        if e - s > 1:
            rows, gen_p = mask_predict(self.pair, [ids[:s] + [self.pair.mask_id] * (e - s) + ids[e:]],
                                       [list(range(s, e))], iterations=2)
            if np.exp(np.log(np.maximum(gen_p[0], 1e-12)).mean()) >= self.min_generator_prob:
                cands.append(rows[0][s:e])
        return cands

    def _listed_candidates(self, ids: list[int], w: int, spans: list[tuple[int, int]],
                           words: list[tuple[str, list[int]]]) -> list[list[int]]:
        """Candidate words ranked by the generator: mean log probability of their pieces, the word masked."""
        s, e = spans[w]
        by_len: dict[int, list[tuple[str, list[int]]]] = {}
        for word, pieces in words:
            if pieces and len(pieces) <= 8:
                by_len.setdefault(len(pieces), []).append((word, pieces))
        scored = []
        for n, group in by_len.items():
            row = ids[:s] + [self.pair.mask_id] * n + ids[e:]
            if len(row) > self.pair.max_len:
                continue
            lp = np.log(np.maximum(generator_probs(self.pair, [row], [list(range(s, s + n))])[0], 1e-12))
            scored += [(float(np.mean([lp[j, t] for j, t in enumerate(p)])), p) for _, p in group]
        scored.sort(key=lambda x: -x[0])
        return [p for _, p in scored[:self.top_k]]

    # -- one window of words
    def _correct_words(self, words: list[Word], alternatives: list[dict[int, list[list[int]]]] | None,
                       names: frozenset[int] | set[int] = frozenset()
                       ) -> dict[int, tuple[list[int], float]]:
        """{word index: (new pieces, p(replaced) of the original)} for the words to replace; ``names``: word
        indices that get no generator proposals."""
        pair = self.pair
        current = [list(w.ids) for w in words]
        done: dict[int, tuple[list[int], float]] = {}

        def layout(pieces: list[list[int]]) -> tuple[list[int], list[tuple[int, int]]]:
            ids, spans = [pair.cls_id], []
            for p in pieces:
                spans.append((len(ids), len(ids) + len(p)))
                ids += p
            return ids + [pair.sep_id], spans

        ids, spans = layout(current)
        p = replaced_probs(pair, [ids])[0]
        score = sentence_score(p)
        for _ in range(self.rounds):
            changed = False
            word_p = [float(p[s:e].max()) for s, e in spans]
            order = [i for i in np.argsort(word_p, kind="stable")[::-1]
                     if word_p[i] > self.threshold and i not in done and not words[i].unknown]
            for w in order:
                ids, spans = layout(current)
                if float(p[spans[w][0]:spans[w][1]].max()) <= self.threshold:  # an earlier fix cleared it
                    continue
                if alternatives is not None:
                    cands = [c for c in alternatives[0].get(w, [])]
                elif self.vocabulary is not None:
                    cands = self._listed_candidates(ids, w, spans, self.vocabulary)
                elif w in names:
                    continue
                else:
                    cands = self._generator_candidates(ids, w, spans)
                cands = [c for c in dict.fromkeys(map(tuple, cands)) if list(c) != current[w]]
                trials = [current[:w] + [list(c)] + current[w + 1:] for c in cands]
                rows = [layout(t)[0] for t in trials]
                rows_ok = [(t, r) for t, r in zip(trials, rows) if len(r) <= pair.max_len]
                if not rows_ok:
                    continue
                probs = replaced_probs(pair, [r for _, r in rows_ok])
                s0 = spans[w][0]
                fine = [j for j, (t, _) in enumerate(rows_ok)  # the critic finds the new word original
                        if float(probs[j][s0:s0 + len(t[w])].max()) <= self.max_new_p]
                if not fine:
                    continue
                best = max(fine, key=lambda j: sentence_score(probs[j]))
                gain = sentence_score(probs[best]) - score
                if gain > self.min_gain:
                    done[w] = (rows_ok[best][0][w], word_p[w])
                    current = rows_ok[best][0]
                    p, score = probs[best], sentence_score(probs[best])
                    changed = True
            if not changed:
                break
            ids, spans = layout(current)
        return done

    def correct(self, text: str, hypotheses: Sequence[str] | None = None) -> Correction:
        """Correct ``text``; ``hypotheses``: the other entries of its n-best list, the only candidates then."""
        if not isinstance(text, str) or not text.strip():
            raise ElectraError("empty text: nothing to correct")
        words = words_of(self.pair.tokenizer, text)
        alternatives = None
        if hypotheses is not None:
            alternatives = [self._aligned(words, text, hypotheses)]
            if len(words) + 2 > self.pair.max_len or sum(len(w.ids) for w in words) + 2 > self.pair.max_len:
                raise ElectraError(f"text is longer than the model's {self.pair.max_len} positions; n-best "
                                   "correction takes one window only")
        windows, cur, size = [], [], 0
        for i, w in enumerate(words):  # consecutive windows of whole words that fit the positions
            if cur and size + len(w.ids) > self.pair.max_len - 2:
                windows.append(cur)
                cur, size = [], 0
            if len(w.ids) > self.pair.max_len - 2:
                raise ElectraError(f"a word of {len(w.ids)} pieces at character {w.start} is longer than the "
                                   f"model's {self.pair.max_len} positions")
            cur.append(i)
            size += len(w.ids)
        if cur:
            windows.append(cur)
        edits = []
        for win in windows:
            names = {k for k, i in enumerate(win) if self.keep_names and is_name(text, words[i])}
            done = self._correct_words([words[i] for i in win], alternatives, names)
            for local, (pieces, pr) in sorted(done.items()):
                w = words[win[local]]
                original = text[w.start:w.end]
                repl = _match_case(original, decode_span(self.pair.tokenizer, pieces))
                edits.append(Edit(w.start, w.end, original, repl, pr))
        return Correction(apply_edits(text, edits), edits, len(windows))

    def _aligned(self, words: list[Word], text: str, hypotheses: Sequence[str]) -> dict[int, list[list[int]]]:
        """For each word of the 1-best: the pieces of the words other hypotheses put in its place (one-for-one
        substitutions of a difflib alignment over normalised word strings)."""
        import difflib

        tok = self.pair.tokenizer

        def norm(ws: list[Word]) -> list[str]:
            return [tok.decode(w.ids) for w in ws]

        base = norm(words)
        out: dict[int, list[list[int]]] = {}
        for h in hypotheses:
            if not isinstance(h, str) or not h.strip():
                continue
            hw = words_of(tok, h)
            other = norm(hw)
            for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=base, b=other, autojunk=False).get_opcodes():
                if op == "replace" and i2 - i1 == j2 - j1:
                    for k in range(i2 - i1):
                        if not hw[j1 + k].unknown:
                            out.setdefault(i1 + k, []).append(hw[j1 + k].ids)
        return out


def correct(pair: Pair, text: str, threshold: float = DEFAULT_THRESHOLD, top_k: int = 10, rounds: int = 3,
            vocabulary: Sequence[str] | None = None, hypotheses: Sequence[str] | None = None, **filters: float
            ) -> Correction:
    """Detect and correct ``text`` (see :class:`Corrector`; ``filters``: ``max_new_p``, ``min_generator_prob``,
    ``keep_names``)."""
    return Corrector(pair, threshold, top_k, rounds, vocabulary=vocabulary, **filters).correct(text, hypotheses)


# ---- augmentation (SSMBA-style corrupt and reconstruct) ------------------------------------------------------
def augment_text(pair: Pair, text: str, copies: int, rng: np.random.Generator, mask_prob: float = 0.15,
                 min_score: float | None = None, tries: int = 2) -> list[str]:
    """Up to ``copies`` new versions of ``text`` (SSMBA, Ng et al. 2020, with our generator): mask ``mask_prob``
    of the words (at least one), resample each masked word from the generator's softmax (whole-word tokens
    only), and keep the ``copies`` candidates (of ``tries × copies`` drawn) the discriminator finds most
    plausible (highest sentence score; above ``min_score`` when given), different from the text and each
    other. Untouched words keep their original characters. A text too long for the model is returned
    without copies."""
    words = [w for w in words_of(pair.tokenizer, text)]
    if not words or sum(len(w.ids) for w in words) + 2 > pair.max_len:
        return []
    whole = np.array([not t.startswith("##") for t, _ in sorted(pair.tokenizer.get_vocab().items(),
                                                                 key=lambda x: x[1])])
    ban = _banned(pair.tokenizer)
    n = max(1, round(mask_prob * len(words)))
    rows, positions, chosen = [], [], []
    for _ in range(copies * tries):
        pick = sorted(rng.choice(len(words), size=min(n, len(words)), replace=False).tolist())
        ids, pos = [pair.cls_id], []
        for i, w in enumerate(words):
            if i in pick:
                pos.append(len(ids))
                ids.append(pair.mask_id)
            else:
                ids += w.ids
        rows.append(ids + [pair.sep_id])
        positions.append(pos)
        chosen.append(pick)
    probs = generator_probs(pair, rows, positions)
    texts = []
    for row, pos, pick, pr in zip(rows, positions, chosen, probs):
        pr = pr.copy()
        pr[:, ban[:pr.shape[1]] | ~whole[:pr.shape[1]]] = 0
        pr /= pr.sum(-1, keepdims=True)
        edits = []
        for at, i, dist in zip(pos, pick, pr):
            t, _ = _choose(dist, 0, rng)
            row[at] = t
            w = words[i]
            orig = text[w.start:w.end]
            edits.append(Edit(w.start, w.end, orig, _match_case(orig, decode_span(pair.tokenizer, [t])), 0.0))
        texts.append(apply_edits(text, edits))
    scores = [sentence_score(p) for p in replaced_probs(pair, rows)]
    kept: list[str] = []
    for j in np.argsort(scores, kind="stable")[::-1]:
        if len(kept) == copies or (min_score is not None and scores[j] < min_score):
            break
        if texts[j] != text and texts[j] not in kept:
            kept.append(texts[j])
    return kept


def augment_file(pair: Pair, task: Any, input_path: str | Path, out_path: str | Path, copies: int,
                 mask_prob: float = 0.15, seed: int = 0, progress: bool = False) -> tuple[int, int]:
    """Write ``out_path``: every line of the task's TSV file ``input_path``, then ``copies`` augmented rows per
    example (text columns replaced by :func:`augment_text`, the other columns copied). Written to a temporary
    file and renamed. Returns (examples, new rows)."""
    from electra.config import at_least, check_values, interval
    from electra.data.glue import _rows
    from electra.files import write_text_atomic

    check_values("augment option", {"copies": copies, "mask_prob": mask_prob},
                 {"copies": at_least(1), "mask_prob": interval(0, 1, "(]")})
    path = Path(input_path)
    if not path.is_file():
        raise ElectraError(f"{path}: file not found")
    if path.suffix.lower() in (".csv", ".jsonl", ".json"):
        raise ElectraError(f"{path}: augment reads tab-separated files (.tsv, GLUE layout)")
    rows = _rows(path, "tsv")
    if not rows:
        raise ElectraError(f"{path}: no examples")
    layout = task.labelled
    if layout.header:
        header = rows[0][1]
        missing = [c for c in layout.text if c not in header]
        if missing:
            raise ElectraError(f"{path}:{rows[0][0]}: no column {missing[0]!r} in the header (expected "
                               f"{', '.join(map(str, layout.text))})")
        cols, data = [header.index(c) for c in layout.text], rows[1:]
    else:
        cols, data = list(layout.text), rows
    rng = np.random.default_rng(seed)
    new = []
    for i, (line, fields) in enumerate(data):
        if len(fields) <= max(cols):
            raise ElectraError(f"{path}:{line}: {len(fields)} fields; expected at least {max(cols) + 1}")
        per_col = [augment_text(pair, fields[c], copies, rng, mask_prob) for c in cols]
        for k in range(min(len(x) for x in per_col) if per_col else 0):
            f = list(fields)
            for c, versions in zip(cols, per_col):
                f[c] = " ".join(versions[k].split())
            new.append("\t".join(f))
        if progress and (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(data)} examples, {len(new)} new rows", flush=True)
    original = path.read_text(encoding="utf-8-sig").rstrip("\n").split("\n")
    write_text_atomic(out_path, "\n".join(original + new) + "\n", "augmented file")
    return len(data), len(new)


def correct_lines(corrector: Corrector, path: str | Path, nbest: bool = False) -> Iterator[Correction]:
    """Correct a file one line at a time, yielding each result as soon as it is done (empty lines pass
    through). ``nbest``: each line is a JSON list of hypotheses, the first corrected with the others' words."""
    import json

    path = Path(path)
    if not path.is_file():
        raise ElectraError(f"{path}: file not found")
    with open(path, encoding="utf-8", newline="") as f:
        i = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise ElectraError(f"{path}:{i + 1}: not UTF-8 text (byte {e.start} of the chunk read)") from None
            if not line:
                return
            i += 1
            line = line.rstrip("\r\n")
            if not line.strip():
                yield Correction(line, [])
                continue
            try:
                if not nbest:
                    yield corrector.correct(line)
                    continue
                try:
                    hyps = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ElectraError(f"invalid JSON ({e.msg}); expected a list of hypotheses") from None
                if not isinstance(hyps, list) or not hyps or not all(isinstance(h, str) for h in hyps):
                    raise ElectraError("expected a JSON list of hypothesis strings, the 1-best first")
                yield corrector.correct(hyps[0], hyps[1:])
            except ElectraError as e:
                raise ElectraError(f"{path}:{i}: {e}") from None
