"""Random ``transformers`` ELECTRA discriminator/generator pairs saved as checkpoint directories (test helper)."""

from __future__ import annotations

from pathlib import Path

import torch

transformers = __import__("pytest").importorskip("transformers")
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

# (discriminator, generator) shapes: embedding size, hidden size, layers, heads, FFN, positions.
SHAPES = {
    # embedding = hidden in the discriminator; the generator (hidden 32) projects from 64.
    "tiny": (dict(embedding_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=256, max_position_embeddings=128),
             dict(hidden_size=32, num_attention_heads=1, intermediate_size=128)),
    # Table 6 Small: embedding 128 < hidden 256; generator hidden 64 (1/4), as google's released small pair.
    "small": (dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                   intermediate_size=1024, max_position_embeddings=512),
              dict(hidden_size=64, num_attention_heads=1, intermediate_size=256)),
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter (biases and LayerNorms included) distinct random values, so a wrong mapping shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.05 * noise)


def make_pair(preset: str, vocab_size: int, share_embeddings: bool, seed: int = 0):
    """A random (ElectraForPreTraining, ElectraForMaskedLM) pair in eval mode."""
    disc_shape, gen_shape = SHAPES[preset]
    common = dict(vocab_size=vocab_size, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12)
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(**common, **disc_shape))
    gen_cfg = {**disc_shape, **gen_shape}
    gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(**common, **gen_cfg))
    randomize(disc, seed)
    randomize(gen, seed + 1)
    if share_embeddings:  # as google's released pairs: one set of embedding tables
        gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
    assert gen.generator_lm_head.weight is gen.electra.embeddings.word_embeddings.weight
    return disc.eval(), gen.eval()


def save_pair(disc, gen, root: Path) -> tuple[Path, Path]:
    disc.save_pretrained(root / "hf_disc")
    gen.save_pretrained(root / "hf_gen")
    assert (root / "hf_disc" / "model.safetensors").is_file()
    return root / "hf_disc", root / "hf_gen"


def random_batch(vocab_size: int, seed: int = 0, b: int = 2, n: int = 16):
    """Ids with padding in the second row, two segments, token types zero on padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1, 11:] = 0
    ids = ids * mask
    types = ((torch.arange(n) >= 7).long().expand(b, n) * mask).contiguous()
    return ids, mask, types
