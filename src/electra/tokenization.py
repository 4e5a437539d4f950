"""Tokenizers (Hugging Face ``tokenizers``): any ``tokenizer.json`` (WordPiece, Unigram/SentencePiece, BPE), and
the special-token *roles* every consumer reads (:func:`special_tokens`).

A role (``pad``, ``unk``, ``cls``, ``sep``, ``mask``) names a token of the tokenizer, as ``transformers``'
``special_tokens_map.json`` does: BERT's are ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4 here), XLM-R's and our
Unigram tokenizers' ``<pad> <unk> <s> </s> <mask>`` (ids 1, 3, 0, 2 and the last). Roles come from the
directory's ``special_tokens_map.json`` / ``tokenizer_config.json`` when it is loaded, else from the tokenizer
itself (its post-processor's first and last special tokens, its model's unknown token), never from literal
strings or ids.

A tokenizer directory holds ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``;
a WordPiece one also ``vocab.txt`` (BERT format, line number = id) and ``tokenizer_class: ElectraTokenizer``, any
other ``PreTrainedTokenizerFast``; so ``transformers.AutoTokenizer.from_pretrained(DIR)`` loads it and encodes
exactly like ``load_tokenizer(DIR)``.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import (
    AddedToken,
    Encoding,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from tokenizers.models import Unigram, WordPiece

from electra.config import at_least, check_values, read_json
from electra.errors import ElectraError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, the WordPiece trainer's ids 0-4
ROLES = ("pad", "unk", "cls", "sep", "mask")
BERT_ROLES = dict(zip(ROLES, SPECIAL_TOKENS, strict=True))
# our Unigram trainer's, in XLM-R's order: <s> <pad> </s> <unk> first (ids 0-3), <mask> the last id
UNIGRAM_ROLES = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"}
MODELS = ("wordpiece", "unigram")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class SpecialTokens:
    """The tokenizer's special-token roles: role -> token and role -> id (``mask`` may be absent), plus the ids
    of every other token the tokenizer marks special (never masked, replaced or proposed)."""

    tokens: Mapping[str, str]
    ids: Mapping[str, int]
    other_ids: frozenset[int] = frozenset()

    @property
    def pad_id(self) -> int:
        return self.ids["pad"]

    @property
    def unk_id(self) -> int | None:
        return self.ids.get("unk")

    @property
    def cls_id(self) -> int:
        return self.ids["cls"]

    @property
    def sep_id(self) -> int:
        return self.ids["sep"]

    @property
    def mask_id(self) -> int | None:
        return self.ids.get("mask")

    @property
    def mask(self) -> str | None:
        return self.tokens.get("mask")

    @property
    def all_ids(self) -> frozenset[int]:
        """Every special id: the roles' and the other special tokens'."""
        return frozenset(self.ids.values()) | self.other_ids

    def need_mask(self, why: str) -> int:
        """The mask id, or a one-line error saying ``why`` it is needed."""
        if self.mask_id is None:
            raise ElectraError(f"the tokenizer has no mask token ({why}); name one as mask_token in its "
                               "special_tokens_map.json")
        return self.mask_id


_ROLES: weakref.WeakKeyDictionary[Tokenizer, dict[str, str]] = weakref.WeakKeyDictionary()
_SPECIALS: weakref.WeakKeyDictionary[Tokenizer, SpecialTokens] = weakref.WeakKeyDictionary()  # special_tokens()'s


def _component(part: object) -> dict:
    """One part of a tokenizer (normalizer, pre-tokenizer, post-processor) as its JSON: cheap, where
    ``tok.to_str()`` serialises the whole vocabulary (250k pieces for XLM-R)."""
    return json.loads(part.__getstate__()) if part is not None else {}


def set_special_tokens(tok: Tokenizer, roles: Mapping[str, str], source: str = "tokenizer") -> Tokenizer:
    """Record ``tok``'s roles (role -> token; unknown roles ignored) and register those tokens as special, so a
    ``[MASK]``/``<mask>`` typed in a text is the mask token. A token missing from the vocabulary is an error."""
    kept = {r: t for r, t in roles.items() if r in ROLES and t}
    for role, token in kept.items():
        if tok.token_to_id(token) is None:
            raise ElectraError(f"{source}: {role}_token {token!r} is not in the vocabulary")
    added = set(tok.get_added_tokens_decoder().values())
    missing = [t for t in dict.fromkeys(kept.values()) if not any(a.content == t and a.special for a in added)]
    if missing:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    _ROLES[tok] = kept
    _SPECIALS.pop(tok, None)
    return tok


def copy_tokenizer(tok: Tokenizer) -> Tokenizer:
    """An independent copy of ``tok`` with the same roles (``Tokenizer.from_str`` alone loses them)."""
    out = Tokenizer.from_str(tok.to_str())
    _ROLES[out] = dict(_ROLES.get(tok) or inferred_roles(tok))
    return out


def inferred_roles(tok: Tokenizer) -> dict[str, str]:
    """Roles read from the tokenizer itself: ``cls``/``sep`` from its post-processor (the first and last special
    token of the single-sequence template), ``unk`` from its model, ``pad`` from its padding settings."""
    roles: dict[str, str] = {}
    post = _component(tok.post_processor)
    if post.get("type") == "Sequence":
        post = next((p for p in post.get("processors", []) if p.get("type") in
                     ("TemplateProcessing", "BertProcessing", "RobertaProcessing")), {})
    if post.get("type") == "TemplateProcessing":
        specials = [p["SpecialToken"]["id"] for p in post.get("single", []) if "SpecialToken" in p]
        if specials:
            roles["cls"], roles["sep"] = specials[0], specials[-1]
    elif post.get("type") in ("BertProcessing", "RobertaProcessing"):
        roles["cls"], roles["sep"] = post["cls"][0], post["sep"][0]
    if getattr(tok.model, "unk_token", None):
        roles["unk"] = tok.model.unk_token
    elif model_type(tok) == "Unigram":  # its unk is an id into the vocabulary: read the model (slow for 250k pieces)
        model = json.loads(tok.model.__getstate__())
        if model.get("unk_id") is not None:
            roles["unk"] = model["vocab"][model["unk_id"]][0]
    if tok.padding and tok.padding.get("pad_token"):
        roles["pad"] = tok.padding["pad_token"]
    return roles


def read_roles(directory: str | Path) -> dict[str, str]:
    """Roles named in a directory's ``special_tokens_map.json``, else its ``tokenizer_config.json`` (values as
    strings or ``{"content": ...}``); ``bos``/``eos`` stand in for a missing ``cls``/``sep`` (XLM-R's files)."""
    directory = Path(directory)
    roles: dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins
        path = directory / name
        if not path.is_file():
            continue
        settings = read_json(path, "tokenizer settings")
        if not isinstance(settings, dict):
            raise ElectraError(f"{path}: expected a JSON object")
        for role in (*ROLES, "bos", "eos"):
            value = settings.get(f"{role}_token")
            if isinstance(value, dict):
                value = value.get("content")
            if value is not None and not isinstance(value, str):
                raise ElectraError(f"{path}: {role}_token: expected a string or {{\"content\": ...}}, got {value!r}")
            if value:
                roles[role] = value
    roles.setdefault("cls", roles.get("bos", ""))
    roles.setdefault("sep", roles.get("eos", ""))
    return {r: t for r, t in roles.items() if r in ROLES and t}


def special_tokens(tok: Tokenizer) -> SpecialTokens:
    """The roles of ``tok`` with their ids (see the module docstring); ``pad``, ``cls`` and ``sep`` must exist.
    Computed once per tokenizer (again after :func:`set_special_tokens`)."""
    cached = _SPECIALS.get(tok)
    if cached is not None:
        return cached
    recorded = _ROLES.get(tok) or {}
    roles = {**(inferred_roles(tok) if not {"cls", "sep", "pad", "unk"} <= set(recorded) else {}), **recorded}
    missing = [r for r in ("cls", "sep", "pad") if r not in roles]
    if missing:
        raise ElectraError(f"the tokenizer names no {'/'.join(missing)} token; name them (cls_token, sep_token, "
                           "pad_token) in its special_tokens_map.json")
    ids = {}
    for role, token in roles.items():
        i = tok.token_to_id(token)
        if i is None:
            raise ElectraError(f"the tokenizer's {role}_token {token!r} is not in its vocabulary")
        ids[role] = i
    others = frozenset(i for i, a in tok.get_added_tokens_decoder().items() if a.special) - frozenset(ids.values())
    _SPECIALS[tok] = SpecialTokens(roles, ids, others)
    return _SPECIALS[tok]


def new_tokenizer(vocab: dict[str, int] | None = None, lowercase: bool = True) -> Tokenizer:
    """A BERT WordPiece pipeline: clean text, split CJK characters, lower-case + strip accents (or cased)."""
    model = WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100) if vocab else \
        WordPiece(unk_token="[UNK]", max_input_chars_per_word=100)
    tok = Tokenizer(model)
    # strip_accents=None follows lowercase, as in BERT (uncased strips accents, cased keeps them)
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    if vocab:
        # as BERT's tokenizers: "[MASK]" typed in a text is the mask token, not "[", "mask", "]"
        set_special_tokens(tok, {r: t for r, t in BERT_ROLES.items() if t in vocab})
        _add_post_processor(tok, BERT_ROLES)
    return tok


def _add_post_processor(tok: Tokenizer, roles: Mapping[str, str]) -> None:
    """``cls A sep`` and ``cls A sep B sep`` with token types 0 and 1, as BERT."""
    cls, sep = roles["cls"], roles["sep"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])


def new_unigram_tokenizer(lowercase: bool = False) -> Tokenizer:
    """A SentencePiece-style Unigram pipeline: NFKC (and lower-case), runs of spaces collapsed, Metaspace ``▁``."""
    steps = [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    steps += [normalizers.Lowercase()] if lowercase else []
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    return tok


def train_tokenizer(texts: Iterable[str], out: str | Path, vocab_size: int, *, model: str = "wordpiece",
                    lowercase: bool | None = None, min_frequency: int = 2, limit_alphabet: int | None = None,
                    show_progress: bool = True) -> Tokenizer:
    """Train a tokenizer on an iterable of lines and write the tokenizer directory ``out``.

    ``wordpiece``: BERT's pipeline (lower-cased unless ``lowercase=False``), special tokens ``[PAD] [UNK] [CLS]
    [SEP] [MASK]`` at ids 0..4; ``limit_alphabet=None`` keeps every character seen (Chinese needs thousands).
    ``unigram``: SentencePiece's model, as XLM-R (cased unless ``lowercase=True``): ``<s> <pad> </s> <unk>`` at ids
    0..3 and ``<mask>`` the last id; ``min_frequency`` and ``limit_alphabet`` do not apply to it.
    """
    if model not in MODELS:
        raise ElectraError(f"--model {model}: expected one of {', '.join(MODELS)}")
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ElectraError(f"--vocab-size {vocab_size}: must exceed the {len(SPECIAL_TOKENS)} special tokens")
    check_values("tokenizer option", {"min_frequency": min_frequency, "limit_alphabet": limit_alphabet},
                 {"min_frequency": at_least(0), "limit_alphabet": at_least(1).optional()})
    if model == "unigram":
        return _train_unigram(texts, out, vocab_size, bool(lowercase), show_progress)
    tok = new_tokenizer(lowercase=True if lowercase is None else lowercase)
    options = {} if limit_alphabet is None else {"limit_alphabet": limit_alphabet}
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
                                        show_progress=show_progress, **options)
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ElectraError("no text to train the tokenizer on (all inputs empty or skipped)")
    set_special_tokens(tok, BERT_ROLES)
    _add_post_processor(tok, BERT_ROLES)
    save_tokenizer(tok, out)
    return tok


def _train_unigram(texts: Iterable[str], out: str | Path, vocab_size: int, lowercase: bool,
                   show_progress: bool) -> Tokenizer:
    tok = new_unigram_tokenizer(lowercase)
    first = [UNIGRAM_ROLES[r] for r in ("cls", "pad", "sep", "unk")]
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size - 1, special_tokens=first, unk_token=UNIGRAM_ROLES["unk"],
                                      show_progress=show_progress)
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() <= len(first):
        raise ElectraError("no text to train the tokenizer on (all inputs empty or skipped)")
    # The same text must give the same ids. The trainer's EM sums in parallel, so scores differ in their last digits
    # from run to run (near-ties swap ids): round them. And it appends the characters no piece covers in hash-set
    # order with made-up scores (1e-4 apart): give the scores of that last run of single characters to its
    # characters in code-point order (single characters never compete with each other in a segmentation).
    vocab = [(p, round(score, 8)) for p, score in json.loads(tok.model.__getstate__())["vocab"][len(first):]]
    tail = len(vocab)
    while tail > 0 and len(vocab[tail - 1][0]) == 1:
        tail -= 1
    chars = sorted(p for p, _ in vocab[tail:])
    vocab[tail:] = zip(chars, sorted((score for _, score in vocab[tail:]), reverse=True), strict=True)
    pieces = sorted(vocab, key=lambda ps: (-ps[1], ps[0]))
    specials = [(p, 0.0) for p in first]
    tok.model = Unigram(specials + pieces, unk_id=first.index(UNIGRAM_ROLES["unk"]), byte_fallback=False)
    tok.add_special_tokens([AddedToken(UNIGRAM_ROLES["mask"], special=True, normalized=False)])
    set_special_tokens(tok, UNIGRAM_ROLES)
    _add_post_processor(tok, UNIGRAM_ROLES)
    save_tokenizer(tok, out)
    return tok


def read_vocab(path: str | Path) -> dict[str, int]:
    """Read a BERT ``vocab.txt`` (token per line, id = line number) and check the special tokens."""
    path = Path(path)
    if not path.is_file():
        raise ElectraError(f"{path}: vocab file not found")
    vocab: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ElectraError(f"{path}: byte {e.start}: not valid UTF-8 (expected a vocab.txt)") from None
    if lines and lines[-1] == "":
        lines.pop()
    for i, token in enumerate(lines):
        token = token.rstrip("\r")
        if token in vocab:
            raise ElectraError(f"{path}:{i + 1}: duplicate token {token!r}")
        vocab[token] = i
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ElectraError(f"{path}: missing special token(s) {' '.join(missing)} "
                           f"(expected {' '.join(SPECIAL_TOKENS)})")
    return vocab


def tokenizer_from_vocab(vocab_file: str | Path, out: str | Path | None = None, *,
                         lowercase: bool = True) -> Tokenizer:
    """Build our tokenizer from an existing ``vocab.txt`` (e.g. BERT's); write the directory if ``out``."""
    tok = new_tokenizer(read_vocab(vocab_file), lowercase=lowercase)
    if out is not None:
        save_tokenizer(tok, out)
    return tok


def is_lowercase(tok: Tokenizer) -> bool:
    """Whether the tokenizer's normaliser lower-cases (BERT 'uncased')."""
    norm = _component(tok.normalizer)
    steps = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm]
    return any(s.get("lowercase", False) or s.get("type") == "Lowercase" for s in steps)


def model_type(tok: Tokenizer) -> str:
    """The tokenizer's model: ``WordPiece``, ``Unigram``, ``BPE`` or ``WordLevel``."""
    return type(tok.model).__name__


def vocab_tokens(tok: Tokenizer) -> list[str]:
    """Tokens in id order (ids must be 0..N-1 without holes, as a vocab.txt requires)."""
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [""] * len(vocab)
    for token, i in vocab.items():
        if i >= len(tokens):
            raise ElectraError(f"tokenizer ids are not contiguous (id {i} with {len(tokens)} tokens)")
        tokens[i] = token
    return tokens


def save_tokenizer(tok: Tokenizer, out: str | Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (the roles) into ``out``; for
    WordPiece also vocab.txt and ``ElectraTokenizer`` as the class, for any other model
    ``PreTrainedTokenizerFast``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    roles = special_tokens(tok).tokens
    try:
        tok.save(str(out / "tokenizer.json"))
    except Exception as e:  # tokenizers reports a failed write (a full disk) as a plain Exception
        raise OSError(f"{out / 'tokenizer.json'}: {e}") from None
    specials = {f"{r}_token": roles[r] for r in ("unk", "sep", "pad", "cls", "mask") if r in roles}
    if model_type(tok) == "WordPiece":
        (out / "vocab.txt").write_text("".join(t + "\n" for t in vocab_tokens(tok)), encoding="utf-8")
        config = {"tokenizer_class": "ElectraTokenizer", "do_lower_case": is_lowercase(tok), "strip_accents": None,
                  "tokenize_chinese_chars": True, "model_max_length": 512, **specials}
    else:
        (out / "vocab.txt").unlink(missing_ok=True)
        # token_type_ids too, as ElectraTokenizerFast returns them (PreTrainedTokenizerFast omits them by default)
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512,
                  "model_input_names": ["input_ids", "token_type_ids", "attention_mask"], **specials}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    return out


def find_tokenizer_dir(path: str | Path) -> Path:
    """The directory with the tokenizer files: ``path`` or its ``tokenizer/`` (a checkpoint or data dir)."""
    path = Path(path)
    if not path.exists():
        raise ElectraError(f"{path}: tokenizer directory not found (make one: `electra tokenizer train`)")
    for d in (path, path / "tokenizer"):
        if d.is_dir() and any((d / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
            return d
    raise ElectraError(f"{path}: no tokenizer.json or vocab.txt in this directory")


def load_tokenizer(path: str | Path, lowercase: bool | None = None) -> Tokenizer:
    """Load ``tokenizer.json`` from a directory (or a file), else build one from a ``vocab.txt``.

    For a bare ``vocab.txt``, ``lowercase`` defaults to ``do_lower_case`` of a ``tokenizer_config.json``
    next to it, else True. Roles come from the directory's files (:func:`read_roles`); a WordPiece
    ``tokenizer.json`` with no file naming them is BERT's (``[PAD] [UNK] [CLS] [SEP] [MASK]``).
    """
    path = Path(path)
    if path.is_dir():
        path = find_tokenizer_dir(path)
        path = path / "tokenizer.json" if (path / "tokenizer.json").is_file() else path / "vocab.txt"
    if not path.is_file():
        raise ElectraError(f"{path}: tokenizer not found")
    if path.suffix == ".json":
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exceptions
            raise ElectraError(f"{path}: not a valid tokenizer file ({e})") from None
        roles = read_roles(path.parent)
        if not roles and model_type(tok) == "WordPiece":  # a bare BERT tokenizer.json (no files naming roles)
            roles = {r: t for r, t in BERT_ROLES.items() if tok.token_to_id(t) is not None}
        if not {"cls", "sep", "pad", "unk"} <= set(roles):
            roles = {**inferred_roles(tok), **roles}
        return set_special_tokens(tok, roles, str(path.parent))
    if lowercase is None:
        lowercase = True
        config = path.parent / "tokenizer_config.json"
        if config.is_file():
            settings = read_json(config, "tokenizer config")
            lowercase = bool(settings.get("do_lower_case", True)) if isinstance(settings, dict) else True
    return tokenizer_from_vocab(path, lowercase=lowercase)


def tokenizer_hash(tok: Tokenizer) -> str:
    """A short fingerprint of what decides token ids: the vocabulary in id order and the normaliser options.

    Only named options enter it (not the whole JSON), so it survives ``tokenizers`` upgrades.
    """
    spec = json.loads(tok.to_str())
    norm = spec.get("normalizer") or {}
    pre = spec.get("pre_tokenizer") or {}
    keys = ("type", "clean_text", "handle_chinese_chars", "strip_accents", "lowercase")
    options = {k: norm.get(k) for k in keys}
    options["pre_tokenizer"] = pre.get("type")
    if norm.get("type") != "BertNormalizer" and norm:  # a pipeline of steps: their names and options
        options["steps"] = json.dumps(norm, sort_keys=True)
    if spec["model"]["type"] != "WordPiece":
        options["model"] = spec["model"]["type"]
    h = hashlib.sha256()
    h.update("\n".join(vocab_tokens(tok)).encode("utf-8"))
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()[:16]


def pad_to(batch: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """Right-pad every input to at least ``length`` positions (padding: id 0, mask 0, segment 0)."""
    seq = batch["input_ids"].shape[1]
    if seq >= length:
        return batch
    return {k: np.pad(v, ((0, 0), (0, length - seq))) for k, v in batch.items()}


def pad_batch(rows: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None = None,
              pad_id: int = 0) -> dict[str, np.ndarray]:
    """Pad token id lists (and their segment ids) to the longest; the attention mask marks real tokens."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    tt = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
        if types is not None:
            tt[i, :len(r)] = types[i]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}

def encode_candidates(tokenizer: Tokenizer, candidates: Sequence[str], contexts: Sequence[str | None] | None = None,
                      max_len: int = 512) -> list[Encoding]:
    """``[CLS] candidate [SEP]`` or ``[CLS] context [SEP] candidate [SEP]``; an over-long context is cut from
    its start (the turns nearest the candidate are kept), an over-long candidate from its end."""
    out = []
    for i, cand in enumerate(candidates):
        ctx = contexts[i] if contexts is not None else None
        enc = tokenizer.encode(cand) if ctx is None else tokenizer.encode(ctx, cand)
        if len(enc.ids) > max_len:
            enc = _truncate(tokenizer, ctx, cand, max_len)
        out.append(enc)
    return out


def _truncate(tokenizer: Tokenizer, ctx: str | None, cand: str, max_len: int) -> Encoding:
    cand_ids = tokenizer.encode(cand, add_special_tokens=False).ids
    if ctx is None or len(cand_ids) + 3 >= max_len:
        cand_ids = cand_ids[: max_len - (3 if ctx is not None else 2)]
        ctx_ids: list[int] = []
    else:
        ctx_ids = tokenizer.encode(ctx, add_special_tokens=False).ids
        ctx_ids = ctx_ids[len(ctx_ids) - (max_len - 3 - len(cand_ids)):]
    text_a = tokenizer.decode(ctx_ids) if ctx_ids else None
    enc = tokenizer.encode(text_a, tokenizer.decode(cand_ids)) if text_a else tokenizer.encode(tokenizer.decode(
        cand_ids))
    if len(enc.ids) > max_len:  # decode/encode round trips are not always exact: cut hard
        enc.truncate(max_len)
    return enc


def continuation_prefix(tok: Tokenizer) -> tuple[str, bool] | None:
    """How the vocabulary marks word boundaries: ``("##", False)`` for WordPiece (a continuation piece starts with
    ``##``), ``("▁", True)`` for Metaspace (SentencePiece: a piece starting with ``▁`` starts a word), ``("Ġ",
    True)`` for byte-level BPE; None when it marks none."""
    if model_type(tok) == "WordPiece":
        return tok.model.continuing_subword_prefix or "##", False

    def kinds(p: dict) -> list[dict]:
        return [q for x in p.get("pretokenizers", []) for q in kinds(x)] if p.get("type") == "Sequence" else [p]

    for pre in kinds(_component(tok.pre_tokenizer)):
        if pre.get("type") == "Metaspace":
            return pre.get("replacement") or "\u2581", True
        if pre.get("type") == "ByteLevel":
            return "\u0120", True
    return None


def word_start_table(tok: Tokenizer) -> np.ndarray:
    """A bool per id: whether that token begins a word (special tokens do; see :func:`continuation_prefix`). A
    tokenizer whose vocabulary marks no word boundaries: a one-line error."""
    marking = continuation_prefix(tok)
    if marking is None:
        raise ElectraError(f"the {model_type(tok)} tokenizer marks no word starts in its vocabulary (no WordPiece "
                           "prefix, Metaspace or byte-level pre-tokenizer)")
    prefix, marks_start = marking
    vocab = tok.get_vocab(with_added_tokens=True)
    table = np.zeros(max(vocab.values(), default=-1) + 1, dtype=bool)
    ids = np.fromiter(vocab.values(), np.int64, count=len(vocab))
    table[ids] = [token.startswith(prefix) == marks_start for token in vocab]
    table[list(special_tokens(tok).all_ids)] = True
    return table
