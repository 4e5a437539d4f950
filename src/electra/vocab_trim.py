"""Trim a checkpoint's vocabulary to the pieces a corpus uses (``electra trim-vocab``).

A multilingual encoder spends most of its parameters on its vocabulary (multilingual-e5-small: 96 M of 118 M are
the 250,037-row embedding table). For one or two languages, most rows are never read. Trimming keeps

- every piece the checkpoint's own tokenizer produces on the corpus at least ``min_count`` times,
- every special token (all roles and every other special token, :func:`electra.tokenization.special_tokens`, and
  whatever the post-processor inserts),
- Unigram only: the pieces that keep the tokenizer's lattice unchanged on covered text (below),

and remaps together, in the old order with new contiguous ids: the tokenizer (Unigram: the kept pieces with
their scores and the unk id; WordPiece and WordLevel: the kept vocabulary; added tokens and the post-processor's
ids), the word-embedding rows of the discriminator and the generator (one table when they are tied), the
generator's output bias and the config's ``vocab_size`` / ``pad_token_id`` (the tokenizer's pad). Rows beyond the
tokenizer's ids (multilingual-e5: 35 of them) go.

Outputs are unchanged on *covered* text, text whose old tokenization uses only kept pieces: the new ids are the
old ones renamed, and every network computes the same numbers (the generator's logits restricted to kept ids).

- WordPiece (greedy longest match per word): every piece the old tokenization chose is kept and no longer
  piece was added, so each greedy step chooses the same piece.
- Unigram (Viterbi best path): the new lattice of a covered text is the old one minus nodes of dropped pieces,
  so the old best path is still there and nothing beats it, provided two details of the lattice hold still,
  which is why a few unused pieces are kept: a character with no one-character piece gets an *unknown* node, so
  the one-character piece of every character of a kept piece is kept (else dropping it would add unknown nodes
  that were not there before); and the unknown node's score is the lowest piece score minus 10, so the lowest-
  scored piece is kept (else that score would rise). Ties resolve as before (the first best candidate wins in
  ``tokenizers``, and only never-chosen candidates go).
- BPE is refused: its merges build pieces out of other pieces, so a kept piece can need dropped ones.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from electra.checkpoint import (
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
    save_checkpoint,
    tokenizer_dir,
)
from electra.data.corpus import DOC_END, Corpus
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.tokenization import (
    load_tokenizer,
    model_type,
    save_tokenizer,
    set_special_tokens,
    special_tokens,
    vocab_tokens,
)

TRIMMABLE = ("WordPiece", "Unigram", "WordLevel")
BATCH_CHARS = 1 << 20  # text handed to encode_batch at once
# tensors with one row (entry) per vocabulary id
VOCAB_TENSORS = ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.delta", "generator.head.bias")
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass
class TrimReport:
    """What a trim kept and where it wrote it."""

    source: str
    out: str
    model_type: str
    ids_before: int  # tokenizer ids
    rows_before: int  # embedding rows (may exceed the tokenizer's ids)
    kept: int
    used: int  # pieces the corpus uses at least min_count times (special tokens excluded)
    specials: int
    support: int  # Unigram: unused pieces kept so the tokenization of covered text is unchanged
    min_count: int
    lines: int
    tokens: int
    parameters_before: int = 0
    parameters_after: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        rows = [
            ("checkpoint", f"{self.source} -> {self.out}"),
            ("corpus", f"{self.lines:,} lines, {self.tokens:,} tokens ({self.model_type} tokenizer)"
                       + "".join(f"; skipped {n:,} {why}" for why, n in self.skipped.items())),
            ("kept", f"{self.kept:,} of {self.ids_before:,} ids ({self.used:,} used >= {self.min_count} time"
                     f"{'s' if self.min_count != 1 else ''}, {self.specials} special"
                     + (f", {self.support:,} to keep Unigram's lattice" if self.support else "") + ")"),
            ("embedding rows", f"{self.rows_before:,} -> {self.kept:,}"),
            ("parameters", f"{self.parameters_before:,} -> {self.parameters_after:,}"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# ---- counting ----------------------------------------------------------------------------------------------
def count_pieces(tok: Tokenizer, corpus: Sequence[str | Path], *, progress: bool = True,
                 batch_chars: int = BATCH_CHARS) -> tuple[np.ndarray, Corpus, int]:
    """(count per id, the corpus read, tokens counted): ``corpus``'s lines (files or folders of .txt, .txt.gz,
    .jsonl, streamed) tokenized by ``tok`` without special tokens, as ``electra prepare`` tokenizes them."""
    from tqdm.auto import tqdm

    text = Corpus(corpus)
    counts = np.zeros(tok.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets: faster (tokenizers >= 0.20)
    tokens = 0
    with tqdm(total=text.total_bytes, unit="B", unit_scale=True, desc="counting pieces", disable=not progress,
              leave=False) as bar:
        def add(lines: list[str]) -> None:
            nonlocal tokens
            ids = [e.ids for e in encode(lines, add_special_tokens=False)]
            n = sum(map(len, ids))
            flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=n)
            counts[:] += np.bincount(flat, minlength=len(counts))
            tokens += n
            bar.update(text.position() - bar.n)

        lines: list[str] = []
        chars = 0
        for line in text.lines():
            if line is DOC_END:
                continue
            lines.append(line)
            chars += len(line)
            if chars >= batch_chars:
                add(lines)
                lines, chars = [], 0
        if lines:
            add(lines)
    return counts, text, tokens


# ---- which ids stay ----------------------------------------------------------------------------------------
def check_min_count(min_count: int) -> None:
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ElectraError(f"--min-count {min_count}: expected a whole number >= 1")


def required_ids(tok: Tokenizer) -> set[int]:
    """Ids that stay whatever the corpus: every role and special token, the post-processor's and padding's."""
    spec = json.loads(tok.to_str())
    ids = set(special_tokens(tok).all_ids)
    ids |= set(_post_processor_ids(spec.get("post_processor")))
    if spec.get("padding") and spec["padding"].get("pad_id") is not None:
        ids.add(spec["padding"]["pad_id"])
    return ids


def _post_processor_ids(post: dict[str, Any] | None) -> list[int]:
    if not post:
        return []
    kind = post.get("type")
    if kind == "Sequence":
        return [i for p in post.get("processors", []) for i in _post_processor_ids(p)]
    if kind == "TemplateProcessing":
        return [i for t in post.get("special_tokens", {}).values() for i in t["ids"]]
    if kind in ("BertProcessing", "RobertaProcessing"):
        return [post["cls"][1], post["sep"][1]]
    return []


def unigram_support(tok: Tokenizer, kept: set[int], specials: set[int]) -> set[int]:
    """Unused Unigram pieces that keep the lattice of covered text unchanged (see the module docstring): the
    one-character piece of every character of a kept, non-special piece, and the lowest-scored piece."""
    model = json.loads(tok.to_str())["model"]
    vocab = model["vocab"]
    single = {piece: i for i, (piece, _) in enumerate(vocab) if len(piece) == 1}
    byte_fallback = bool(model.get("byte_fallback"))
    chars = {c for i in kept - specials if i < len(vocab)
             and not (byte_fallback and _BYTE_PIECE.fullmatch(vocab[i][0])) for c in vocab[i][0]}
    support = {single[c] for c in chars if c in single}
    support.add(min(range(len(vocab)), key=lambda i: vocab[i][1]))
    return support - kept


def choose_ids(tok: Tokenizer, counts: np.ndarray, min_count: int = 1, corpus: str = "the corpus"
               ) -> tuple[list[int], int, int, int]:
    """(kept ids in order, pieces used, special ids, support pieces); a corpus that uses no piece is an error."""
    check_min_count(min_count)
    required = required_ids(tok)
    used = set(np.flatnonzero(counts >= min_count).tolist()) - required
    if not used:
        raise ElectraError(f"{corpus}: no piece of the tokenizer occurs {min_count} time{'s' if min_count > 1 else ''}"
                           " or more (every line empty or unknown); expected text the tokenizer covers")
    support = unigram_support(tok, used, required) - required if model_type(tok) == "Unigram" else set()
    return sorted(used | required | support), len(used), len(required), len(support)


# ---- remapping ---------------------------------------------------------------------------------------------
def check_trimmable(tok: Tokenizer, source: str = "tokenizer") -> str:
    """The tokenizer's model type, or a one-line error for one that cannot be trimmed (BPE)."""
    kind = model_type(tok)
    if kind not in TRIMMABLE:
        raise ElectraError(f"{source}: a {kind} tokenizer cannot be trimmed (its merges build pieces from other "
                           f"pieces, so a kept piece can need dropped ones); expected {', '.join(TRIMMABLE)}")
    return kind


def trimmed_tokenizer(tok: Tokenizer, kept: Sequence[int], source: str = "tokenizer") -> Tokenizer:
    """``tok`` with only the ``kept`` ids (ascending), renumbered 0..len-1 in the same order, with the same roles."""
    kind = check_trimmable(tok, source)
    index = {old: new for new, old in enumerate(kept)}
    tokens = vocab_tokens(tok)
    spec = json.loads(tok.to_str())
    model = spec["model"]
    if kind == "Unigram":
        model["vocab"] = [v for i, v in enumerate(model["vocab"]) if i in index]
        if model.get("unk_id") is not None:
            model["unk_id"] = index[model["unk_id"]]
    else:
        model["vocab"] = {t: index[i] for t, i in model["vocab"].items() if i in index}
    spec["added_tokens"] = [{**a, "id": index[a["id"]]} for a in spec.get("added_tokens", []) if a["id"] in index]
    _remap_post_processor(spec.get("post_processor"), index)
    if spec.get("padding") and spec["padding"].get("pad_id") is not None:
        spec["padding"]["pad_id"] = index[spec["padding"]["pad_id"]]
    try:
        new = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    except Exception as e:  # tokenizers raises plain Exceptions
        raise ElectraError(f"{source}: the trimmed tokenizer does not load ({e})") from None
    expected = {tokens[old]: new_id for old, new_id in index.items()}
    if new.get_vocab(with_added_tokens=True) != expected:
        raise ElectraError(f"{source}: the trimmed tokenizer's ids are not the kept pieces renumbered in order; "
                           "expected added tokens after the model's vocabulary")
    roles = special_tokens(tok)
    set_special_tokens(new, roles.tokens, source)
    after = special_tokens(new)
    if dict(after.ids) != {r: index[i] for r, i in roles.ids.items()} or \
            after.other_ids != frozenset(index[i] for i in roles.other_ids):
        raise ElectraError(f"{source}: a special token lost its role in the trimmed tokenizer; expected every role "
                           "kept")
    return new


def _remap_post_processor(post: dict[str, Any] | None, index: dict[int, int]) -> None:
    if not post:
        return
    kind = post.get("type")
    if kind == "Sequence":
        for p in post.get("processors", []):
            _remap_post_processor(p, index)
    elif kind == "TemplateProcessing":
        for t in post.get("special_tokens", {}).values():
            t["ids"] = [index[i] for i in t["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("cls", "sep"):
            post[key] = [post[key][0], index[post[key][1]]]


def trimmed_model(model: Electra, kept: Sequence[int], pad_id: int) -> Electra:
    """A copy of ``model`` whose vocabulary is the ``kept`` rows (the word embeddings of both networks, tied or
    not, and the generator's output bias), with ``vocab_size`` and ``pad_token_id`` to match."""
    config = model.config.replace(vocab_size=len(kept), pad_token_id=pad_id)
    rows = torch.as_tensor(list(kept), dtype=torch.long)
    state = {k: v.index_select(0, rows) if k.endswith(VOCAB_TENSORS) else v
             for k, v in model.state_dict().items()}
    new = Electra(config)
    new.load_state_dict(state, strict=True)
    return new


# ---- the command -------------------------------------------------------------------------------------------
def check_out(model: Path, out: Path, overwrite: bool) -> None:
    """``--out`` must not be the input checkpoint; an existing non-empty folder is replaced only with
    ``overwrite`` and only when it is a checkpoint."""
    if out.resolve() == model.resolve():
        raise ElectraError(f"--out {out}: is the --model checkpoint; write the trimmed one to a new folder")
    if out.exists() and not out.is_dir():
        raise ElectraError(f"--out {out}: exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ElectraError(f"--out {out}: not empty (choose a new folder, or --overwrite to replace a checkpoint)")
    try:
        read_checkpoint_meta(out)
    except ElectraError:
        raise ElectraError(f"--out {out}: not empty and not a checkpoint; not replacing it") from None


def trim_vocab(model: str | Path, corpus: Sequence[str | Path], out: str | Path, *, min_count: int = 1,
               overwrite: bool = False, progress: bool = True) -> TrimReport:
    """Write a checkpoint at ``out`` with ``model``'s vocabulary trimmed to the pieces ``corpus`` uses (module
    docstring); everything else (weights, generator, metadata) is carried over."""
    ckpt = resolve_checkpoint(model)
    meta = read_checkpoint_meta(ckpt)
    out = Path(out)
    check_out(ckpt, out, overwrite)
    check_min_count(min_count)
    tok_dir = tokenizer_dir(ckpt)
    if tok_dir is None:
        raise ElectraError(f"{ckpt}: checkpoint has no tokenizer/ folder (its vocabulary is what gets trimmed)")
    tok = load_tokenizer(tok_dir)
    kind = check_trimmable(tok, str(tok_dir))
    roles = special_tokens(tok)
    if roles.unk_id is None:
        raise ElectraError(f"{tok_dir}: the tokenizer names no unk token; trimming needs one (text outside the kept "
                           "vocabulary becomes it): name it as unk_token in special_tokens_map.json")
    ids = len(vocab_tokens(tok))  # also checks the ids are contiguous
    rows = int(meta["model"].get("vocab_size", 0))
    if ids > rows:
        raise ElectraError(f"{ckpt}: the tokenizer has {ids:,} ids but the word embeddings {rows:,} rows; expected "
                           "at most as many")
    counts, text, tokens = count_pieces(tok, corpus, progress=progress)
    where = " ".join(map(str, corpus))
    kept, used, specials, support = choose_ids(tok, counts, min_count, where)
    new_tok = trimmed_tokenizer(tok, kept, str(tok_dir))
    index = {old: new for new, old in enumerate(kept)}
    source = load_checkpoint(ckpt, keep_gdes=True)
    new_model = trimmed_model(source, kept, index[roles.pad_id])  # the config's pad id: the tokenizer's, renamed
    report = TrimReport(str(ckpt), str(out), kind, ids, rows, len(kept), used, specials, support, min_count,
                        text.stats.lines, tokens, source.num_parameters(), new_model.num_parameters(),
                        dict(text.stats.skipped))
    extra = {k: v for k, v in meta.items() if k not in ("format", "version", "has_generator", "model")}
    extra["vocab_trimmed"] = {"from": str(ckpt), "corpus": [str(c) for c in corpus], "min_count": min_count,
                              "ids_before": ids, "rows_before": rows, "kept": len(kept), "used": used,
                              "support": support}
    staging = Path(tempfile.mkdtemp(prefix="electra-tok-"))
    try:
        save_tokenizer(new_tok, staging)
        save_checkpoint(new_model, out, tokenizer_dir=staging, has_generator=meta.get("has_generator", True),
                        extra=extra)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report
