"""The networks: shared embeddings, the tied generator output layer, the projection, init, the cheap path."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from electra.config import ModelConfig
from electra.kernels import no_padding
from electra.modeling import Block, Electra, Encoder, activation, truncated_normal_

VOCAB = 300


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: these tiny batches are all per-op overhead, which extra threads on a shared,
    loaded machine multiply (12 ms per LayerNorm with 2 threads against 6 other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> Electra:
    torch.manual_seed(0)
    return Electra(ModelConfig.preset("tiny", vocab_size=VOCAB, **overrides)).eval()


def batch(seed=0, b=2, n=16):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1, 10:] = 0
    ids = ids * mask
    types = (torch.arange(n) >= 6).long().expand(b, n) * mask
    return ids, mask, types


def test_tied_networks_share_the_embeddings_module():
    model = tiny()
    d, g = model.discriminator.encoder.embeddings, model.generator.encoder.embeddings
    assert g is d
    for (name, p), (_, q) in zip(d.named_parameters(), g.named_parameters()):
        assert p is q, name


def test_untied_networks_have_their_own_embeddings():
    model = tiny(tie_embeddings=False)
    d, g = model.discriminator.encoder.embeddings, model.generator.encoder.embeddings
    assert g is not d
    assert not {id(p) for p in d.parameters()} & {id(p) for p in g.parameters()}


def test_shared_embeddings_are_counted_once():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    embedding_params = sum(p.numel() for p in tied.discriminator.encoder.embeddings.parameters())
    assert untied.num_parameters() - tied.num_parameters() == embedding_params


def test_generator_output_layer_is_the_word_embedding_matrix():
    model = tiny()
    gen = model.generator
    words = gen.encoder.embeddings.word_embeddings.weight
    vocab_matrices = [p for p in gen.parameters() if p.shape == words.shape]
    assert len(vocab_matrices) == 1 and vocab_matrices[0] is words
    ids, mask, types = batch()
    with torch.no_grad():
        hidden = gen.encoder(ids, mask, types)
        features = gen.head.norm(F.gelu(gen.head.dense(hidden)))
        expected = features @ model.discriminator.encoder.embeddings.word_embeddings.weight.T + gen.head.bias
        torch.testing.assert_close(gen(ids, mask, types), expected)


def test_generator_output_layer_gets_gradient_through_the_embeddings():
    model = tiny()
    ids, mask, types = batch()
    model.generator(ids, mask, types).sum().backward()
    grad = model.discriminator.encoder.embeddings.word_embeddings.weight.grad
    unused = torch.ones(VOCAB, dtype=torch.bool)
    unused[ids.unique()] = False
    assert grad[unused].abs().sum() > 0  # rows of tokens not in the input only get gradient from the output layer


def test_detached_generator_output_sends_no_gradient_to_rows_of_absent_tokens_and_keeps_the_logits():
    model = tiny()
    ids, mask, types = batch()
    before = model.generator(ids, mask, types).detach()
    model.generator.output_grad = False
    logits = model.generator(ids, mask, types)
    logits.sum().backward()
    grad = model.discriminator.encoder.embeddings.word_embeddings.weight.grad
    unused = torch.ones(VOCAB, dtype=torch.bool)
    unused[ids.unique()] = False
    assert torch.equal(logits.detach(), before)
    assert grad[unused].abs().sum() == 0 and grad[~unused].abs().sum() > 0  # the input side still trains


@pytest.mark.parametrize("embedding_size,hidden_size,has_projection", [(64, 64, False), (32, 64, True)])
def test_projection_exists_iff_embedding_size_differs(embedding_size, hidden_size, has_projection):
    model = tiny(embedding_size=embedding_size, hidden_size=hidden_size)
    project = model.discriminator.encoder.project
    assert (project is not None) == has_projection
    if has_projection:
        assert (project.in_features, project.out_features) == (embedding_size, hidden_size)
    assert (model.generator.encoder.project is not None) == (embedding_size != 32)  # generator: hidden 32


def test_small_preset_projects_embeddings_in_both_networks():
    config = ModelConfig.preset("small", vocab_size=VOCAB, num_layers=1)
    model = Electra(config)
    assert model.discriminator.encoder.project.weight.shape == (256, 128)
    assert model.generator.encoder.project.weight.shape == (64, 128)
    assert model.generator.head.dense.weight.shape == (128, 64)


def _weights_and_biases(model):
    weights, biases, norms = [], [], []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            weights.append(m.weight.detach().flatten())
            if getattr(m, "bias", None) is not None:
                biases.append(m.bias.detach())
        elif isinstance(m, nn.LayerNorm):
            norms.append(m)
    return torch.cat(weights), biases, norms


# Standard deviation of a standard normal truncated to [-2, 2].
TRUNCATED_STD = math.sqrt(1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))


@pytest.mark.parametrize("std", [0.02, 0.05])
def test_init_is_truncated_normal_with_zero_biases(std):
    model = tiny(initializer_range=std)
    weights, biases, norms = _weights_and_biases(model)
    assert weights.abs().max() <= 2 * std
    assert weights.mean().abs() < 0.02 * std
    assert weights.std().item() == pytest.approx(std * TRUNCATED_STD, rel=0.02)
    assert all(torch.all(b == 0) for b in biases)
    assert torch.all(model.generator.head.bias == 0)
    assert all(torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in norms)


def test_generator_positions_path_equals_gathered_full_logits():
    model = tiny()
    ids, mask, types = batch()
    positions = torch.tensor([[0, 3, 7, 15], [1, 2, 9, 9]])
    with torch.no_grad():
        full = model.generator(ids, mask, types)
        cheap = model.generator(ids, mask, types, positions=positions)
    assert cheap.shape == (2, 4, VOCAB)
    torch.testing.assert_close(cheap, full.gather(1, positions[..., None].expand(-1, -1, VOCAB)))


def test_discriminator_gives_one_logit_per_token():
    model = tiny()
    ids, mask, types = batch()
    with torch.no_grad():
        assert model.discriminator(ids, mask, types).shape == ids.shape


def test_padding_does_not_change_real_token_outputs():
    model = tiny()
    ids, mask, types = batch()
    with torch.no_grad():
        padded = model.discriminator(ids, mask, types)[1, :10]
        alone = model.discriminator(ids[1:, :10], mask[1:, :10], types[1:, :10])[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)


def test_token_types_change_the_output():
    model = tiny()
    ids, mask, types = batch()
    with torch.no_grad():
        assert not torch.allclose(model.discriminator(ids, mask, types), model.discriminator(ids, mask))


def test_truncated_normal_matches_scipy_truncnorm():
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    w = truncated_normal_(torch.empty(200_000), std=0.02)
    result = stats.kstest((w / 0.02).double().numpy(), stats.truncnorm(-2, 2).cdf)
    assert result.pvalue > 0.01


def test_full_attention_mask_gives_same_hidden_states_as_no_mask():
    torch.manual_seed(0)
    enc = Encoder(ModelConfig.preset("tiny").discriminator).eval()
    ids = torch.randint(5, 100, (2, 16))
    ones = torch.ones_like(ids)
    assert no_padding(ones) and not no_padding(ones.index_fill(1, torch.tensor([15]), 0))
    torch.testing.assert_close(enc(ids, ones), enc(ids, None))
    padded = ones.clone()
    padded[0, 10:] = 0
    assert not torch.allclose(enc(ids, padded)[0, :10], enc(ids, None)[0, :10])


@pytest.mark.parametrize("padded", [False, True])
def test_cls_only_equals_first_row_of_full_output(padded):
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=100)
    encoder = Electra(cfg).discriminator.encoder.eval()
    ids = torch.randint(5, 100, (3, 12))
    am = torch.ones_like(ids)
    if padded:
        am[0, 7:] = 0
        am[2, 3:] = 0
    full = encoder(ids, am)
    first = encoder(ids, am, cls_only=True)
    assert first.shape == (3, 1, cfg.discriminator.hidden_size)
    assert torch.allclose(first, full[:, :1], atol=1e-6)


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_fp32_training_block_recomputing_gelu_has_the_plain_gradients(act):
    """The fp32 training path keeps only the FFN's pre-activation; outputs and gradients equal the plain
    ffn_out(gelu(ffn_in(x))) computed by autograd."""
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=100, hidden_act=act).discriminator
    block = Block(cfg)
    h = torch.randn(2, 5, cfg.intermediate_size, requires_grad=True)
    g = torch.randn(2, 5, cfg.hidden_size)
    block.feed_forward_out(h).backward(g)
    ours = [h.grad.clone(), block.ffn_out.weight.grad.clone(), block.ffn_out.bias.grad.clone()]
    h.grad = None
    block.zero_grad()
    block.ffn_out(activation(act, h)).backward(g)
    for a, b in zip(ours, [h.grad, block.ffn_out.weight.grad, block.ffn_out.bias.grad]):
        assert torch.allclose(a, b, atol=1e-6)
