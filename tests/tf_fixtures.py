"""Shared data for the electra.tf tests: tiny prepared shards and a tiny checkpoint with a tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from electra.checkpoint import save_checkpoint
from electra.config import ModelConfig
from electra.data.prepare import prepare
from electra.modeling import Electra
from electra.tokenization import train_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"


def prepared_data(root: Path) -> Path:
    """tests/fixtures/corpus/tiny-en.txt with a 600-entry WordPiece vocabulary, as 64-token examples."""
    text = FIXTURES / "corpus" / "tiny-en.txt"
    train_tokenizer([x for x in text.read_text().splitlines() if x.strip()], root / "tok", vocab_size=600,
                    show_progress=False)
    prepare([text], root / "tok", root / "en", max_seq_len=64, seed=0, progress=False)
    return root / "en"


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=256)), path,
                           tokenizer_dir=FIXTURES / "finetune_vocab")
