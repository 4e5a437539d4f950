"""WordPiece tokenizers (Hugging Face ``tokenizers``) with BERT's normaliser and pre-tokeniser.

A tokenizer directory holds ``tokenizer.json`` (ours), ``vocab.txt`` (BERT format, one token per line, line
number = id), ``tokenizer_config.json`` (``tokenizer_class: ElectraTokenizer``, ``do_lower_case``) and
``special_tokens_map.json``, so ``transformers.AutoTokenizer.from_pretrained(DIR)`` loads it and encodes
exactly like ``load_tokenizer(DIR)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece

from electra.config import at_least, check_values, read_json
from electra.errors import ElectraError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


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
        tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in vocab])
        _add_post_processor(tok)
    return tok


def _add_post_processor(tok: Tokenizer) -> None:
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])


def train_tokenizer(texts: Iterable[str], out: str | Path, vocab_size: int, *, lowercase: bool = True,
                    min_frequency: int = 2, limit_alphabet: int | None = None,
                    show_progress: bool = True) -> Tokenizer:
    """Train WordPiece on an iterable of lines and write the tokenizer directory ``out``.

    ``limit_alphabet=None`` keeps every character seen (Chinese needs thousands of single characters);
    the special tokens get ids 0..4 in the order of ``SPECIAL_TOKENS`` ([PAD]=0).
    """

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ElectraError(f"--vocab-size {vocab_size}: must exceed the {len(SPECIAL_TOKENS)} special tokens")
    check_values("tokenizer option", {"min_frequency": min_frequency, "limit_alphabet": limit_alphabet},
                 {"min_frequency": at_least(0), "limit_alphabet": at_least(1).optional()})
    tok = new_tokenizer(lowercase=lowercase)
    options = {} if limit_alphabet is None else {"limit_alphabet": limit_alphabet}
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
                                        show_progress=show_progress, **options)
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ElectraError("no text to train the tokenizer on (all inputs empty or skipped)")
    _add_post_processor(tok)
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
    norm = json.loads(tok.to_str()).get("normalizer") or {}
    return bool(norm.get("lowercase", False))


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
    """Write tokenizer.json, vocab.txt, tokenizer_config.json and special_tokens_map.json into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lowercase = is_lowercase(tok)
    try:
        tok.save(str(out / "tokenizer.json"))
    except Exception as e:  # tokenizers reports a failed write (a full disk) as a plain Exception
        raise OSError(f"{out / 'tokenizer.json'}: {e}") from None
    (out / "vocab.txt").write_text("".join(t + "\n" for t in vocab_tokens(tok)), encoding="utf-8")
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    config = {"tokenizer_class": "ElectraTokenizer", "do_lower_case": lowercase, "strip_accents": None,
              "tokenize_chinese_chars": True, "model_max_length": 512, **specials}
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
    next to it, else True. The result adds ``[CLS] A [SEP] (B [SEP])`` and token-type ids when encoding
    with special tokens.
    """
    path = Path(path)
    if path.is_dir():
        path = find_tokenizer_dir(path)
        path = path / "tokenizer.json" if (path / "tokenizer.json").is_file() else path / "vocab.txt"
    if not path.is_file():
        raise ElectraError(f"{path}: tokenizer not found")
    try:
        if path.suffix == ".json":
            tok = Tokenizer.from_file(str(path))
            if not tok.get_added_tokens_decoder():
                # written from a vocab.txt before special tokens were registered (e.g. an older import-hf): as
                # BERT's tokenizers and new_tokenizer, "[MASK]" typed in a text is the mask token
                tok.add_special_tokens([t for t in SPECIAL_TOKENS if tok.token_to_id(t) is not None])
            return tok
    except Exception as e:  # tokenizers raises plain Exceptions
        raise ElectraError(f"{path}: not a valid tokenizer file ({e})") from None
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
    h = hashlib.sha256()
    h.update("\n".join(vocab_tokens(tok)).encode("utf-8"))
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()[:16]


def special_ids(tok: Tokenizer, names: Sequence[str] = SPECIAL_TOKENS) -> dict[str, int]:
    """Ids of the special tokens, e.g. ``{"[PAD]": 0, ...}``; an error names any that is missing."""
    ids = {}
    for name in names:
        i = tok.token_to_id(name)
        if i is None:
            raise ElectraError(f"tokenizer has no {name} token")
        ids[name] = i
    return ids

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
