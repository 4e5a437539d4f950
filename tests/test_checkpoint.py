"""Our checkpoint directory: exact round trip, shared embeddings stored once, tokenizer copied, bad input."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from electra.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    tokenizer_dir,
)
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.modeling import Electra


def tiny(tie: bool = True, seed: int = 0) -> Electra:
    torch.manual_seed(seed)
    model = Electra(ModelConfig.preset("tiny", vocab_size=300, tie_embeddings=tie))
    with torch.no_grad():  # biases and LayerNorms away from their initial constants
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_restores_every_tensor_exactly(tmp_path, tie):
    model = tiny(tie)
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == model.config
    before, after = model.state_dict(), loaded.state_dict()
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k


def test_shared_embeddings_are_stored_once_and_shared_again_on_load(tmp_path):
    save_checkpoint(tiny(), tmp_path / "ckpt")
    keys = set(load_file(tmp_path / "ckpt" / WEIGHTS_FILE))
    assert "discriminator.encoder.embeddings.word_embeddings.weight" in keys
    assert not any(k.startswith("generator.encoder.embeddings.") for k in keys)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.generator.encoder.embeddings is loaded.discriminator.encoder.embeddings


def test_untied_embeddings_are_stored_for_both_networks(tmp_path):
    save_checkpoint(tiny(tie=False), tmp_path / "ckpt")
    keys = set(load_file(tmp_path / "ckpt" / WEIGHTS_FILE))
    assert "generator.encoder.embeddings.word_embeddings.weight" in keys


def test_tokenizer_directory_is_copied_along(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (tok / "tokenizer.json").write_text('{"version": "1.0"}')
    save_checkpoint(tiny(), tmp_path / "ckpt", tokenizer_dir=tok)
    copied = tokenizer_dir(tmp_path / "ckpt")
    assert copied == tmp_path / "ckpt" / "tokenizer"
    assert {f.name: f.read_text() for f in copied.iterdir()} == {f.name: f.read_text() for f in tok.iterdir()}


def test_checkpoint_without_tokenizer_has_none(tmp_path):
    save_checkpoint(tiny(), tmp_path / "ckpt")
    assert tokenizer_dir(tmp_path / "ckpt") is None


def test_saving_over_a_checkpoint_replaces_it(tmp_path):
    save_checkpoint(tiny(seed=0), tmp_path / "ckpt")
    second = tiny(seed=1)
    save_checkpoint(second, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(loaded.discriminator.head.out.weight, second.discriminator.head.out.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary directories left behind


def test_checkpoint_without_generator_loads_with_a_fresh_generator(tmp_path):
    model = tiny()
    save_checkpoint(model, tmp_path / "ckpt", has_generator=False)
    assert not any(k.startswith("generator.") for k in load_file(tmp_path / "ckpt" / WEIGHTS_FILE))
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(loaded.discriminator.head.out.weight, model.discriminator.head.out.weight)


def test_extra_metadata_is_kept_in_config_json(tmp_path):
    save_checkpoint(tiny(), tmp_path / "ckpt", extra={"step": 7})
    assert read_checkpoint_meta(tmp_path / "ckpt")["step"] == 7


# ---- bad input: one-line ElectraError naming the file ---------------------------------------------------
@pytest.fixture
def ckpt(tmp_path):
    return save_checkpoint(tiny(), tmp_path / "ckpt")


def _error(path) -> str:
    with pytest.raises(ElectraError) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_path_that_does_not_exist(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope")


def test_file_instead_of_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "not a checkpoint directory" in _error(tmp_path / "file")


def test_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hello")
    assert _error(tmp_path / "d") == f"{tmp_path / 'd'}: not a checkpoint: no {CONFIG_FILE}"


def test_missing_config_json(ckpt):
    (ckpt / CONFIG_FILE).unlink()
    assert f"no {CONFIG_FILE}" in _error(ckpt)


def test_malformed_config_json_reports_file_line_and_column(ckpt):
    text = (ckpt / CONFIG_FILE).read_text()
    (ckpt / CONFIG_FILE).write_text(text.replace('"version": 1,', '"version": 1,,'))
    line = next(i for i, s in enumerate(text.splitlines(), 1) if '"version"' in s)
    message = _error(ckpt)
    assert message.startswith(f"{ckpt / CONFIG_FILE}:{line}:")
    assert "malformed JSON" in message


def test_transformers_config_is_not_our_checkpoint(ckpt):
    (ckpt / CONFIG_FILE).write_text(json.dumps({"model_type": "electra", "hidden_size": 64}))
    assert "import-hf" in _error(ckpt)


def test_unknown_model_field_is_named(ckpt):
    meta = json.loads((ckpt / CONFIG_FILE).read_text())
    meta["model"]["hidden_sise"] = 3
    (ckpt / CONFIG_FILE).write_text(json.dumps(meta))
    message = _error(ckpt)
    assert str(ckpt / CONFIG_FILE) in message and "hidden_sise" in message


def test_missing_weights_file(ckpt):
    (ckpt / WEIGHTS_FILE).unlink()
    assert f"no {WEIGHTS_FILE}" in _error(ckpt)


def test_weights_that_do_not_match_the_config(ckpt):
    meta = json.loads((ckpt / CONFIG_FILE).read_text())
    meta["model"]["intermediate_size"] = 128
    (ckpt / CONFIG_FILE).write_text(json.dumps(meta))
    message = _error(ckpt)
    assert re.search(r"tensor '[\w.]+' has shape \(256,( 64)?\) but the config expects \(128,( 64)?\)", message)
    assert message.startswith(str(ckpt / WEIGHTS_FILE))


def test_weights_with_a_missing_tensor(ckpt):
    tensors = load_file(ckpt / WEIGHTS_FILE)
    del tensors["discriminator.head.out.bias"]
    save_file(tensors, ckpt / WEIGHTS_FILE)
    assert "missing tensor 'discriminator.head.out.bias'" in _error(ckpt)


def test_weights_with_an_unexpected_tensor(ckpt):
    tensors = load_file(ckpt / WEIGHTS_FILE)
    tensors["discriminator.extra"] = torch.zeros(1)
    save_file(tensors, ckpt / WEIGHTS_FILE)
    assert "unexpected tensor 'discriminator.extra'" in _error(ckpt)


def test_corrupt_weights_file(ckpt):
    (ckpt / WEIGHTS_FILE).write_bytes(b"\x00" * 20)
    assert "unreadable weights file" in _error(ckpt)
