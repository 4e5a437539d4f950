"""ModelConfig: the paper's Table 6 presets, the derived generator, TOML/JSON files, field errors."""

import json

import pytest

from electra.config import EncoderConfig, ModelConfig, load_mapping
from electra.errors import ElectraError

# Clark et al. 2020, Table 6: (layers, hidden, FFN, heads, embedding) of the discriminator.
TABLE6 = {
    "small": (12, 256, 1024, 4, 128),
    "base": (12, 768, 3072, 12, 768),
    "large": (24, 1024, 4096, 16, 1024),
}
# Generator width multiplier per size (Table 6 / google-research/electra configure_pretraining.py).
GENERATOR_SIZE = {"small": 1 / 4, "base": 1 / 3, "large": 1 / 4}


@pytest.mark.parametrize("name", sorted(TABLE6))
def test_preset_discriminator_has_table6_shape(name):
    d = ModelConfig.preset(name).discriminator
    assert (d.num_layers, d.hidden_size, d.intermediate_size, d.num_heads, d.embedding_size) == TABLE6[name]


@pytest.mark.parametrize("name", ["tiny", "small", "base", "large"])
def test_preset_shares_bert_constants(name):
    d = ModelConfig.preset(name).discriminator
    assert d.vocab_size == 30522
    assert d.type_vocab_size == 2
    assert d.hidden_act == "gelu"
    assert d.hidden_dropout == d.attention_dropout == 0.1
    assert d.layer_norm_eps == 1e-12
    if name != "tiny":
        assert d.max_position_embeddings == 512


@pytest.mark.parametrize("name", sorted(TABLE6))
def test_generator_is_derived_by_width_multiplier(name):
    config = ModelConfig.preset(name)
    d, g = config.discriminator, config.generator
    assert config.generator_size == pytest.approx(GENERATOR_SIZE[name])
    hidden = round(d.hidden_size * GENERATOR_SIZE[name])
    assert g.hidden_size == hidden
    assert g.intermediate_size == 4 * hidden
    assert g.num_heads == max(1, hidden // 64)
    assert g.num_layers == d.num_layers
    assert (g.embedding_size, g.vocab_size, g.max_position_embeddings) == (
        d.embedding_size, d.vocab_size, d.max_position_embeddings)


def test_generator_shapes_of_the_paper_sizes():
    shapes = {n: (ModelConfig.preset(n).generator.hidden_size, ModelConfig.preset(n).generator.num_heads)
              for n in TABLE6}
    assert shapes == {"small": (64, 1), "base": (256, 4), "large": (256, 4)}


def test_generator_depth_multiplier_scales_layers():
    config = ModelConfig.preset("base", generator_depth=0.5)
    assert config.generator.num_layers == 6
    assert config.discriminator.num_layers == 12


def test_generator_heads_and_ffn_can_be_overridden():
    g = ModelConfig.preset("small", generator_num_heads=2, generator_intermediate_size=100).generator
    assert (g.num_heads, g.intermediate_size) == (2, 100)


def test_preset_overrides_apply_to_discriminator():
    config = ModelConfig.preset("small", vocab_size=1000, tie_embeddings=False)
    assert config.discriminator.vocab_size == 1000
    assert config.generator.vocab_size == 1000
    assert config.tie_embeddings is False


def test_unknown_preset_is_an_error():
    with pytest.raises(ElectraError, match="unknown preset 'huge'"):
        ModelConfig.preset("huge")


def _custom_config() -> ModelConfig:
    return ModelConfig.preset("base", vocab_size=777, hidden_act="gelu_new", tie_embeddings=False,
                              generator_depth=0.5, generator_num_heads=2)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_file_round_trip(tmp_path, suffix):
    config = _custom_config()
    path = tmp_path / f"model{suffix}"
    config.save(path)
    loaded = ModelConfig.load(path)
    assert loaded == config
    assert loaded.generator == config.generator
    assert loaded.generator_size == 1 / 3  # exactly, not a rounded decimal


def test_toml_model_table_is_used(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nhidden_size = 128\nnum_heads = 2\ngenerator_size = 0.5\n\n[pretrain]\nlr = 1e-3\n')
    config = ModelConfig.load(path)
    assert config.discriminator.hidden_size == 128
    assert config.generator.hidden_size == 64


def test_nested_discriminator_table_is_accepted():
    config = ModelConfig.from_dict({"discriminator": {"hidden_size": 128, "num_heads": 2}})
    assert config.discriminator.hidden_size == 128


@pytest.mark.parametrize("data", [{"hiden_size": 3}, {"discriminator": {"hiden_size": 3}}])
def test_unknown_field_is_named(data):
    with pytest.raises(ElectraError, match="unknown field.*hiden_size"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_unknown_field_in_file_names_file_and_field(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_text('{"num_layer": 3}' if suffix == ".json" else "num_layer = 3\n")
    with pytest.raises(ElectraError) as e:
        ModelConfig.load(path)
    assert str(path) in str(e.value) and "num_layer" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("field,value", [("hidden_size", "256"), ("num_layers", 2.5), ("tie_embeddings", "no"),
                                         ("generator_size", "x"), ("vocab_size", True)])
def test_wrongly_typed_field_is_named(field, value):
    with pytest.raises(ElectraError, match=f"field '{field}' must be"):
        ModelConfig.from_dict({field: value})


def test_hidden_size_must_divide_by_heads():
    with pytest.raises(ElectraError, match="config: model field hidden_size = 100: expected a multiple of num_heads 3"):
        ModelConfig.from_dict({"hidden_size": 100, "num_heads": 3})


def test_unsupported_activation_is_an_error():
    with pytest.raises(ElectraError, match="hidden_act = 'relu': expected one of 'gelu', 'gelu_new'"):
        EncoderConfig(hidden_act="relu")


def test_malformed_json_reports_file_line_and_column(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{\n  "hidden_size": 256,\n  oops\n}\n')
    with pytest.raises(ElectraError, match=rf"^{path}:3:3: invalid JSON"):
        load_mapping(path)


def test_malformed_toml_names_file(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text("hidden_size = = 3\n")
    with pytest.raises(ElectraError, match=rf"^{path}: invalid TOML"):
        load_mapping(path)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ElectraError, match="config file not found"):
        ModelConfig.load(tmp_path / "nope.toml")


def test_json_list_is_not_a_config(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ElectraError, match="expected a JSON object"):
        ModelConfig.load(path)
