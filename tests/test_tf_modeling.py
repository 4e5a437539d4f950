"""electra.tf: Keras 3 networks give the PyTorch (and transformers) logits on the same checkpoint; checkpoints
travel both ways, also after training steps on either side."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from electra.tf import MISSING, available

if not available():
    pytest.skip(MISSING, allow_module_level=True)

from electra.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from electra.config import ModelConfig  # noqa: E402
from electra.errors import ElectraError  # noqa: E402
from electra.modeling import Electra as TorchElectra  # noqa: E402
from electra.tasks.heads import ClassificationHead  # noqa: E402
from electra.tasks.runner import TaskModel  # noqa: E402
from electra.tf import weights  # noqa: E402
from electra.tf.modeling import Electra, build, ops  # noqa: E402

TOL = 1e-4
to_np = ops.convert_to_numpy  # any backend's tensor (or a Keras variable) as a numpy array
# tiny: embedding = hidden (64) with a narrower generator (32, so it projects); small-ish: embedding 64 < hidden 128.
CONFIGS = {
    "tiny": ModelConfig.preset("tiny", vocab_size=120),
    "tiny-untied": ModelConfig.preset("tiny", vocab_size=120, tie_embeddings=False),
    "small-ish": ModelConfig.preset("small", vocab_size=300, embedding_size=64, hidden_size=128, num_layers=3,
                                    num_heads=4, intermediate_size=512, max_position_embeddings=64),
}


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Distinct random values in every parameter (biases and LayerNorms too), so a wrong mapping shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith("norm.weight") else 0.05 * noise)
    return model.eval()


def batch(vocab: int, seed: int = 0, rows: int = 3, seq: int = 16) -> dict[str, np.ndarray]:
    """Random tokens, [CLS] first; row 1 and 2 padded; a second segment in each row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (rows, seq))
    ids[:, 0] = 2
    mask = np.ones_like(ids)
    mask[1, seq // 2:] = 0
    mask[2, 3:] = 0
    types = np.zeros_like(ids)
    types[:, seq // 3:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def torch_logits(model: TorchElectra, b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    t = [torch.from_numpy(b[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]
    model.eval()  # no dropout
    with torch.no_grad():
        return model.discriminator(*t).numpy(), model.generator(*t).numpy()


def keras_logits(model: Electra, b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    out = model(b)
    return to_np(out["discriminator_logits"]), to_np(out["generator_logits"])


def max_diff_on_real(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(a - b)[mask.astype(bool)].max())


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request):
    torch.manual_seed(0)
    model = randomize(TorchElectra(CONFIGS[request.param]), 1)
    return model, weights.from_torch(model)


def test_discriminator_logits_match_pytorch(pair):
    tm, km = pair
    b = batch(tm.config.discriminator.vocab_size)
    assert max_diff_on_real(keras_logits(km, b)[0], torch_logits(tm, b)[0], b["attention_mask"]) < TOL


def test_generator_logits_match_pytorch(pair):
    tm, km = pair
    b = batch(tm.config.discriminator.vocab_size)
    assert max_diff_on_real(keras_logits(km, b)[1], torch_logits(tm, b)[1], b["attention_mask"]) < TOL


def test_generator_logits_at_positions_match_the_full_pass(pair):
    tm, km = pair
    b = batch(tm.config.discriminator.vocab_size)
    positions = np.array([[1, 5], [2, 0], [1, 2]])
    at = to_np(km.generator(b["input_ids"], b["attention_mask"], b["token_type_ids"], positions=positions))
    full = torch_logits(tm, b)[1]
    assert np.abs(at - np.take_along_axis(full, positions[..., None], axis=1)).max() < TOL


def test_variables_cover_every_checkpoint_tensor_once(pair):
    tm, km = pair
    keys = set(tm.state_dict()) - {k for k in tm.state_dict() if tm.config.tie_embeddings
                                   and k.startswith("generator.encoder.embeddings.")}
    assert set(km.torch_weights()) == keys
    assert sum(int(np.prod(v.shape)) for v in km.trainable_variables) == tm.num_parameters()


def test_tied_generator_shares_the_embedding_variables():
    km = build(Electra(CONFIGS["tiny"]))
    assert km.generator.encoder.embeddings is km.discriminator.encoder.embeddings
    untied = build(Electra(CONFIGS["tiny-untied"]))
    assert untied.generator.encoder.embeddings is not untied.discriminator.encoder.embeddings


@pytest.mark.parametrize("style", ["electra", "transformers"])
def test_classifier_logits_match_pytorch_task_model(style):
    torch.manual_seed(0)
    cfg = CONFIGS["small-ish"].discriminator
    encoder = TorchElectra(CONFIGS["small-ish"]).discriminator.encoder
    task = randomize(TaskModel(encoder, ClassificationHead(cfg, num_labels=3, style=style)), 2)
    km = weights.classifier_from_torch(task)
    b = batch(cfg.vocab_size)
    with torch.no_grad():
        want = task({k: torch.from_numpy(v) for k, v in b.items()})["logits"].numpy()
    assert np.abs(to_np(km(b)) - want).max() < TOL


def test_checkpoint_saved_from_keras_loads_in_pytorch_with_no_missing_key(pair, tmp_path):
    tm, km = pair
    path = weights.save_checkpoint(km, tmp_path / "ckpt")
    back = load_checkpoint(path)  # strict: a missing or unexpected tensor is an error
    for k, v in tm.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_checkpoint_loads_into_keras(pair, tmp_path):
    tm, _ = pair
    path = save_checkpoint(tm, tmp_path / "ckpt")
    km = weights.load_checkpoint(path)
    b = batch(tm.config.discriminator.vocab_size, seed=3)
    assert max_diff_on_real(keras_logits(km, b)[0], torch_logits(tm, b)[0], b["attention_mask"]) < TOL


def _train_keras_steps(km: Electra, steps: int = 3) -> None:
    from electra.pretraining import SpecialIds
    from electra.tf.pretraining import ReplacedTokenDetection
    from electra.tf.training import make_optimizer

    obj = ReplacedTokenDetection(km, SpecialIds(pad=0, cls=2, sep=3, mask=4), 16, seed=0)
    obj.compile(optimizer=make_optimizer(1e-2, 10, 0))
    b = batch(km.config.discriminator.vocab_size, seed=5, rows=4)
    obj.fit(b, epochs=steps, batch_size=4, verbose=0)


@pytest.mark.slow
def test_keras_trained_checkpoint_gives_the_same_logits_in_pytorch(tmp_path):
    torch.manual_seed(0)
    km = weights.from_torch(TorchElectra(CONFIGS["tiny"]))
    before = to_np(km.discriminator.head.out.kernel).copy()
    _train_keras_steps(km)
    assert np.abs(to_np(km.discriminator.head.out.kernel) - before).max() > 1e-4  # it did train
    tm = load_checkpoint(weights.save_checkpoint(km, tmp_path / "ckpt"))
    b = batch(120, seed=7)
    for ours, theirs in zip(keras_logits(km, b), torch_logits(tm, b)):
        assert max_diff_on_real(ours, theirs, b["attention_mask"]) < TOL


def test_pytorch_trained_checkpoint_gives_the_same_logits_in_keras(tmp_path):
    from electra.pretraining import ReplacedTokenDetection, SpecialIds

    torch.manual_seed(0)
    tm = TorchElectra(CONFIGS["tiny"])
    obj = ReplacedTokenDetection(tm, SpecialIds(pad=0, cls=2, sep=3, mask=4), 16)
    opt = torch.optim.AdamW(tm.parameters(), lr=1e-2)
    b = {k: torch.from_numpy(v) for k, v in batch(120, seed=5, rows=4).items()}
    rng = torch.Generator().manual_seed(0)
    for _ in range(3):
        loss, _ = obj(b["input_ids"], b["attention_mask"], b["token_type_ids"], rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tm.eval()
    km = weights.load_checkpoint(save_checkpoint(tm, tmp_path / "ckpt"))
    test = batch(120, seed=7)
    for ours, theirs in zip(keras_logits(km, test), torch_logits(tm, test)):
        assert max_diff_on_real(ours, theirs, test["attention_mask"]) < TOL


@pytest.mark.parametrize("share", [True, False])
def test_hugging_face_pair_gives_transformers_logits_in_keras(share, tmp_path):
    from hf_models import make_pair, save_pair

    disc, gen = make_pair("tiny", 150, share)
    km, has_generator = weights.load_hf(*save_pair(disc, gen, tmp_path))
    assert has_generator and km.config.tie_embeddings == share
    b = batch(150, seed=2)
    t = {k: torch.from_numpy(v) for k, v in b.items()}
    with torch.no_grad():
        want_d = disc(**t).logits.numpy()
        want_g = gen(**t).logits.numpy()
    got_d, got_g = keras_logits(km, b)
    assert max_diff_on_real(got_d, want_d, b["attention_mask"]) < TOL
    assert max_diff_on_real(got_g, want_g, b["attention_mask"]) < TOL


def test_our_hf_export_loads_into_keras_and_agrees(tmp_path):
    from electra.interop.hf_models import export_hf

    torch.manual_seed(0)
    tm = randomize(TorchElectra(CONFIGS["small-ish"]), 3)
    out = export_hf(save_checkpoint(tm, tmp_path / "ckpt"), tmp_path / "hf")
    km, _ = weights.load_hf(out / "discriminator", out / "generator")
    b = batch(300, seed=4)
    for ours, theirs in zip(keras_logits(km, b), torch_logits(tm, b)):
        assert max_diff_on_real(ours, theirs, b["attention_mask"]) < TOL


def test_tensor_of_the_wrong_shape_is_a_one_line_error():
    km = build(Electra(CONFIGS["tiny"]))
    sd = weights.state_dict(km)
    sd["discriminator.head.dense.weight"] = torch.zeros(3, 3)
    with pytest.raises(ElectraError, match=r"'discriminator\.head\.dense\.weight' has shape \(3, 3\)"):
        weights.assign(km, sd, "x")


def test_missing_tensor_is_a_one_line_error():
    km = build(Electra(CONFIGS["tiny"]))
    sd = weights.state_dict(km)
    del sd["discriminator.head.out.bias"]
    with pytest.raises(ElectraError, match=r"missing tensor 'discriminator\.head\.out\.bias'"):
        weights.assign(km, sd, "x")


def test_unexpected_tensor_is_a_one_line_error():
    km = build(Electra(CONFIGS["tiny"]))
    sd = {**weights.state_dict(km), "discriminator.pooler.weight": torch.zeros(2)}
    with pytest.raises(ElectraError, match=r"'discriminator\.pooler\.weight' does not fit"):
        weights.assign(km, sd, "x")
