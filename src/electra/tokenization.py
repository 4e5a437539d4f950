"""WordPiece tokenizers (Hugging Face ``tokenizers``) with BERT's normaliser and pre-tokeniser."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from electra.errors import ElectraError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_tokenizer(path: str | Path, lowercase: bool = True) -> Tokenizer:
    """Load ``tokenizer.json`` from a directory (or a file), else build one from a ``vocab.txt``.

    The result adds ``[CLS] A [SEP] (B [SEP])`` and token-type ids when encoding with special tokens.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("tokenizer.json", "vocab.txt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise ElectraError(f"{path}: no tokenizer.json or vocab.txt in this directory")
    if not path.is_file():
        raise ElectraError(f"{path}: tokenizer not found")
    try:
        if path.suffix == ".json":
            return Tokenizer.from_file(str(path))
        return BertWordPieceTokenizer(str(path), lowercase=lowercase)._tokenizer
    except Exception as e:  # tokenizers raises plain Exceptions
        raise ElectraError(f"{path}: not a valid tokenizer file ({e})") from None
