"""Shared by the rescoring and ranking tests: the fixture folder and a tiny random checkpoint."""

from pathlib import Path

import torch

from electra.checkpoint import save_checkpoint
from electra.config import ModelConfig
from electra.modeling import Electra

FIX = Path(__file__).parent / "fixtures" / "rescoring"
VOCAB = Path(__file__).parent / "fixtures" / "finetune_vocab"


def tiny_checkpoint(root: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=256)), root / "tiny", tokenizer_dir=VOCAB)
