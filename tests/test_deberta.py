"""The DeBERTa-v2/v3 body (architecture deberta-v2): equal to transformers, importable, exportable, trainable."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from electra.checkpoint import load_checkpoint, read_checkpoint_meta
from electra.config import EncoderConfig, ModelConfig
from electra.deberta import DebertaEncoder
from electra.errors import ElectraError
from electra.interop.hf_deberta import (
    deberta_config_from_hf,
    encoder_state_from_hf,
    hf_deberta_config,
    hf_deberta_state,
    import_deberta,
    mlm_head_from_hf,
    rtd_head_state,
)
from electra.modeling import DeltaEmbedding, Electra, Generator
from electra.pretraining import ReplacedTokenDetection, SpecialIds
from electra.training.optim import AdamW
from hf_models import randomize, transformers

ATOL = 1e-5
VOCAB = 120
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# v3: relative attention with log buckets, no absolute positions, shared keys, normalised relative embeddings
V3 = dict(relative_attention=True, position_buckets=8, max_relative_positions=16, position_biased_input=False,
          pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0)
# v2: absolute positions too, own position projections, token types, no buckets (distances clamped at 8)
V2 = dict(relative_attention=True, max_relative_positions=8, position_biased_input=True, pos_att_type="c2p|p2c",
          share_att_key=False, type_vocab_size=2)
STYLES = {"v3": V3, "v2": V2}


def hf_config(style: str = "v3", **kw) -> transformers.DebertaV2Config:
    shape = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64, hidden_act="gelu", layer_norm_eps=1e-7, hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1)
    return transformers.DebertaV2Config(**{**shape, **STYLES[style], **kw})


def hf_model(cls: str, style: str = "v3", seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = getattr(transformers, cls)(hf_config(style, **kw))
    randomize(model, seed)
    return model.eval()


def padded_batch(seq: int = 40, seed: int = 0):
    """Three sequences, two of them padded, two segments: long enough for distances past the buckets."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (3, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[1, seq - 9:] = 0
    mask[2, 11:] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 2:] = 1
    return ids * mask, mask, types * mask


def our_generator(hf) -> Generator:
    """Our Generator holding a DebertaV2ForMaskedLM's weights."""
    cfg = deberta_config_from_hf(hf.config.to_dict(), "test config")
    sd = hf.state_dict()
    gen = Generator(cfg).eval()
    body = {"encoder." + k: v for k, v in encoder_state_from_hf(sd, cfg, "test").items()}
    gen.load_state_dict({**body, **mlm_head_from_hf(sd)[0]})
    return gen


def tiny_config(**kw) -> ModelConfig:
    return ModelConfig.preset("tiny", vocab_size=VOCAB, architecture="deberta-v2",
                              **{**V3, "max_relative_positions": 32, **kw})


def one_line_error(fn, *args, match: str, **kw) -> str:
    with pytest.raises(ElectraError, match=match) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---- the body equals transformers -------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["v3", "v2"])
@pytest.mark.parametrize("embedding_size", [None, 16])
def test_hidden_states_equal_transformers_with_padding_and_token_types(style, embedding_size):
    extra = {} if embedding_size is None else {"embedding_size": embedding_size}
    hf = hf_model("DebertaV2ForMaskedLM", style, **extra)
    ours = our_generator(hf)
    ids, mask, types = padded_batch()
    types = types if hf.config.type_vocab_size else None
    with torch.no_grad():
        want = hf.deberta(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = ours.encoder(ids, mask, types)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("style,legacy,embedding_size", [("v3", True, None), ("v2", True, 48), ("v3", False, None)])
def test_mlm_logits_equal_transformers_for_both_head_layouts(style, legacy, embedding_size):
    extra = {} if embedding_size is None else {"embedding_size": embedding_size}
    hf = hf_model("DebertaV2ForMaskedLM", style, legacy=legacy, **extra)
    ours = our_generator(hf)
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        want = hf(ids, attention_mask=mask).logits
        got = ours(ids, mask)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("style,span", [("v3", dict(position_buckets=64, max_relative_positions=128)),
                                        ("v2", dict(max_relative_positions=100))])
def test_spans_longer_than_the_sequence_read_only_the_rows_in_reach_and_equal_transformers(style, span):
    hf = hf_model("DebertaV2ForMaskedLM", style, max_position_embeddings=128, **span)
    ours = our_generator(hf)
    ids, mask, types = padded_batch()
    types = types if hf.config.type_vocab_size else None
    assert ours.encoder.rows_used(40) == (ours.encoder.span - 39, ours.encoder.span + 40)
    with torch.no_grad():
        want = hf.deberta(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        torch.testing.assert_close(ours.encoder(ids, mask, types), want, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("style,term", [("v2", "c2p"), ("v3", "p2c")])
def test_a_single_relative_term_scales_as_transformers(style, term):
    hf = hf_model("DebertaV2ForMaskedLM", style, pos_att_type=term)
    ours = our_generator(hf)
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask), hf(ids, attention_mask=mask).logits, atol=ATOL, rtol=ATOL)


def test_unpadded_batch_without_a_mask_equals_transformers():
    hf = hf_model("DebertaV2ForMaskedLM", "v3")
    ours = our_generator(hf)
    ids, _, _ = padded_batch(seq=30)
    with torch.no_grad():
        torch.testing.assert_close(ours.encoder(ids), hf.deberta(ids).last_hidden_state, atol=ATOL, rtol=ATOL)


def test_cls_only_is_the_first_row():
    encoder = Electra(tiny_config()).discriminator.encoder.eval()
    ids, mask, types = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(encoder(ids, mask, cls_only=True), encoder(ids, mask)[:, :1])


@pytest.mark.parametrize("overrides", [V3, V2, {**V2, "share_att_key": True, "pos_att_type": "c2p"},
                                       {**V3, "embedding_size": 32}])
def test_num_parameters_counts_the_built_encoder(overrides):
    cfg = EncoderConfig(vocab_size=VOCAB, embedding_size=overrides.get("embedding_size", 64), hidden_size=64,
                        num_layers=2, num_heads=2, intermediate_size=128, max_position_embeddings=64,
                        architecture="deberta-v2", **{k: v for k, v in overrides.items() if k != "embedding_size"})
    assert cfg.num_parameters() == sum(p.numel() for p in DebertaEncoder(cfg).parameters())


def test_bf16_autocast_forward_and_backward_run():
    model = Electra(tiny_config()).train()
    ids, mask, _ = padded_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.discriminator(ids, mask)
    logits.float().sum().backward()
    assert logits.dtype == torch.bfloat16 and model.discriminator.encoder.rel_embeddings.weight.grad is not None


# ---- sharing ----------------------------------------------------------------------------------------------------
def test_es_narrow_generator_reads_the_discriminator_tables_with_its_own_layer_norm():
    model = Electra(tiny_config(position_biased_input=True))
    disc, gen = model.discriminator.encoder.embeddings, model.generator.encoder.embeddings
    assert gen is not disc
    assert gen.word_embeddings is disc.word_embeddings and gen.position_embeddings is disc.position_embeddings
    assert gen.norm.normalized_shape == (32,) and disc.norm.normalized_shape == (64,)
    assert gen.project is not None and disc.project is None


def test_es_at_one_width_shares_the_whole_embeddings_module():
    model = Electra(tiny_config(generator_size=1.0))
    assert model.generator.encoder.embeddings is model.discriminator.encoder.embeddings


def test_gdes_discriminator_tables_are_delta_views_of_the_generator_tables():
    model = Electra(tiny_config(embedding_sharing="gdes", position_biased_input=True))
    emb = model.discriminator.encoder.embeddings
    assert isinstance(emb.word_embeddings, DeltaEmbedding) and isinstance(emb.position_embeddings, DeltaEmbedding)


# ---- pre-training -----------------------------------------------------------------------------------------------
SPECIAL = SpecialIds(pad=0, cls=2, sep=3, mask=4)


def rtd_batch(batch: int = 8, seq: int = 32):
    ids, mask, types = padded_batch(seq=seq)
    ids = ids.repeat(batch // 3 + 1, 1)[:batch]
    mask = mask.repeat(batch // 3 + 1, 1)[:batch]
    ids[:, 0] = SPECIAL.cls
    return ids * mask, mask, torch.zeros_like(ids)


@pytest.mark.parametrize("sharing", ["es", "nes", "gdes"])
def test_a_few_rtd_steps_lower_the_loss(sharing):
    torch.manual_seed(0)
    objective = ReplacedTokenDetection(Electra(tiny_config(embedding_sharing=sharing)), SPECIAL, 32)
    optimizer = AdamW(objective.parameters(), lr=3e-3)
    ids, mask, types = rtd_batch()
    losses = []
    for step in range(8):
        loss, _ = objective(ids, mask, types, torch.Generator().manual_seed(step % 2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_gdes_keeps_the_discriminator_loss_out_of_the_generator_table():
    torch.manual_seed(0)
    model = Electra(tiny_config(embedding_sharing="gdes", position_biased_input=True))
    objective = ReplacedTokenDetection(model, SPECIAL, 32, generator_weight=0.0)
    loss, _ = objective(*rtd_batch(), torch.Generator().manual_seed(0))
    loss.backward()
    gen = model.generator.encoder.embeddings
    for table in (gen.word_embeddings, gen.position_embeddings):
        assert table.weight.grad is None or table.weight.grad.abs().max() == 0
    assert model.discriminator.encoder.embeddings.word_embeddings.delta.grad.abs().max() > 0


# ---- export and import ------------------------------------------------------------------------------------------
def export_network(model: Electra, kind: str, directory: Path) -> Path:
    cfg = model.config.discriminator if kind == "discriminator" else model.config.generator
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(hf_deberta_config(cfg, kind)))
    save_file(hf_deberta_state(getattr(model, kind), kind), str(directory / "model.safetensors"),
              metadata={"format": "pt"})
    return directory


@pytest.mark.parametrize("sharing", ["es", "gdes"])
def test_export_loads_in_transformers_without_missing_keys_and_gives_our_outputs(tmp_path, sharing):
    torch.manual_seed(0)
    model = Electra(tiny_config(embedding_sharing=sharing, position_biased_input=True, type_vocab_size=2)).eval()
    randomize(model, 3)
    ids, mask, types = padded_batch()
    disc_dir = export_network(model, "discriminator", tmp_path / "disc")
    gen_dir = export_network(model, "generator", tmp_path / "gen")
    disc, info = transformers.DebertaV2Model.from_pretrained(disc_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    gen, info = transformers.DebertaV2ForMaskedLM.from_pretrained(gen_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        torch.testing.assert_close(disc.eval()(ids, attention_mask=mask, token_type_ids=types).last_hidden_state,
                                   model.discriminator.encoder(ids, mask, types), atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(gen.eval()(ids, attention_mask=mask, token_type_ids=types).logits,
                                   model.generator(ids, mask, types), atol=ATOL, rtol=ATOL)
    assert set(rtd_head_state(model.discriminator)) == {
        f"discriminator_predictions.{m}.{p}" for m in ("dense", "dense_prediction") for p in ("weight", "bias")}


def save_hf_dir(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in SPECIALS + [f"w{i}" for i in range(VOCAB - 5)]))
    return directory


@pytest.mark.parametrize("style", ["v3", "v2"])
def test_imported_checkpoint_gives_the_transformers_hidden_states_and_mlm_logits(tmp_path, style):
    hf = hf_model("DebertaV2ForMaskedLM", style)
    report = import_deberta(save_hf_dir(hf, tmp_path / "hf"), tmp_path / "ckpt", generator_depth=1.0)
    model = load_checkpoint(report.path).eval()
    ids, mask, types = padded_batch()
    types = types if hf.config.type_vocab_size else None
    with torch.no_grad():
        want = hf.deberta(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        torch.testing.assert_close(model.discriminator.encoder(ids, mask, types), want, atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(model.generator(ids, mask, types), hf(ids, attention_mask=mask,
                                   token_type_ids=types).logits, atol=ATOL, rtol=ATOL)
    assert report.mlm_head == "copied (legacy)" and report.generator_layers_copied == 2
    assert read_checkpoint_meta(report.path)["model"]["architecture"] == "deberta-v2"


def test_import_of_a_base_model_reports_the_dropped_rtd_head_and_truncates_the_generator(tmp_path):
    hf = hf_model("DebertaV2Model", "v3")
    directory = save_hf_dir(hf, tmp_path / "hf")
    weights = {"deberta." + k: v for k, v in hf.state_dict().items()}
    weights.update({"mask_predictions.classifier.weight": torch.zeros(1, 32),
                    "mask_predictions.classifier.bias": torch.zeros(1)})
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    report = import_deberta(directory, tmp_path / "ckpt", generator_depth=0.5)
    model = load_checkpoint(report.path)
    assert report.dropped == {"DeBERTa RTD head (mask_predictions)": 2} and report.mlm_head == "absent"
    assert model.config.generator.num_layers == 1
    torch.testing.assert_close(model.generator.encoder.layers[0].attention.query_proj.weight,
                               hf.encoder.layer[0].attention.self.query_proj.weight)
    assert "DeBERTa-v2" in report.format()


def test_new_generator_is_narrower_and_reads_the_imported_word_table(tmp_path):
    hf = hf_model("DebertaV2Model", "v3")
    report = import_deberta(save_hf_dir(hf, tmp_path / "hf"), tmp_path / "ckpt", generator_init="new")
    model = load_checkpoint(report.path)
    gen, disc = model.generator.encoder.embeddings, model.discriminator.encoder.embeddings
    assert model.config.generator.hidden_size == 8 and report.generator_layers_copied == 0
    assert gen.word_embeddings is disc.word_embeddings
    torch.testing.assert_close(disc.word_embeddings.weight, hf.embeddings.word_embeddings.weight)


def test_generator_directory_becomes_the_generator(tmp_path):
    disc = hf_model("DebertaV2Model", "v3", seed=0)
    gen = hf_model("DebertaV2ForMaskedLM", "v3", seed=1, hidden_size=16, num_attention_heads=2,
                   intermediate_size=64, embedding_size=32)
    report = import_deberta(save_hf_dir(disc, tmp_path / "d"), tmp_path / "ckpt",
                            generator_dir=save_hf_dir(gen, tmp_path / "g"))
    model = load_checkpoint(report.path).eval()
    assert model.config.embedding_sharing == "nes" and model.config.generator.hidden_size == 16
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(model.generator(ids, mask), gen(ids, attention_mask=mask).logits, atol=ATOL,
                                   rtol=ATOL)


# ---- one-line refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change,match", [
    ({"conv_kernel_size": 3}, "conv_kernel_size"),
    ({"attention_head_size": 4}, "attention_head_size"),
    ({"pos_att_type": ["c2p", "p2p"]}, "pos_att_type entry 'p2p'"),
    ({"hidden_act": "relu"}, "hidden_act 'relu'"),
    ({"relative_attention": False, "position_buckets": 8}, "position_buckets 8 without relative_attention"),
    ({"norm_rel_ebd": "layer_norm|other"}, "norm_rel_ebd"),
])
def test_unsupported_options_are_refused_by_name(change, match):
    hf = {**hf_config("v3").to_dict(), **change}
    one_line_error(deberta_config_from_hf, hf, "dir/config.json", match=match)


def test_pos_att_type_is_read_from_a_list_or_a_string():
    for value in (["p2c", "c2p"], "p2c|c2p", "P2C | C2P"):
        assert deberta_config_from_hf({**hf_config("v3").to_dict(), "pos_att_type": value}, "x").pos_att_type == \
            "p2c|c2p"


@pytest.mark.parametrize("fields,match", [
    (dict(relative_attention=True, pos_att_type="c2p"), "relative_attention = True: a deberta-v2 field"),
    (dict(architecture="deberta-v2", pos_att_type="c2p"), "pos_att_type = 'c2p': expected relative_attention"),
    (dict(architecture="deberta-v2", relative_attention=True), "pos_att_type = '': relative_attention needs"),
    (dict(architecture="deberta-v2", relative_attention=True, pos_att_type="c2p", position_buckets=64,
          max_relative_positions=20), "max_relative_positions = 20: log buckets"),
])
def test_contradicting_deberta_fields_are_one_line_errors(fields, match):
    one_line_error(EncoderConfig, match=match, **fields)


def test_spm_model_alone_is_refused_with_the_conversion_to_run(tmp_path):
    directory = save_hf_dir(hf_model("DebertaV2Model", "v3"), tmp_path / "hf")
    (directory / "vocab.txt").unlink()
    (directory / "spm.model").write_bytes(b"")
    one_line_error(import_deberta, directory, tmp_path / "ckpt", match="only spm.model, no tokenizer.json")


def test_other_model_types_are_refused(tmp_path):
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=64))
    one_line_error(import_deberta, save_hf_dir(bert, tmp_path / "bert"), tmp_path / "ckpt",
                   match="model_type 'bert' is not 'deberta-v2'")


# ---- ONNX -------------------------------------------------------------------------------------------------------
class DiscriminatorGraph(torch.nn.Module):
    def __init__(self, model: Electra):
        super().__init__()
        self.discriminator = model.discriminator

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.discriminator(input_ids, attention_mask, token_type_ids)


def test_onnx_export_of_the_discriminator_matches_at_other_shapes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = Electra(tiny_config(type_vocab_size=2, position_buckets=32, max_relative_positions=64)).eval()
    randomize(model, 5)  # span 32: eager runs at 7 and 24 tokens read a window of rows, the graph all of them
    graph = DiscriminatorGraph(model).eval()
    ids, mask, types = padded_batch(seq=24)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and constant-tensor notes
        torch.onnx.export(graph, (ids, mask, types), str(tmp_path / "m.onnx"), dynamo=False, input_names=names,
                          output_names=["logits"], opset_version=17,
                          dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                        "logits": {0: "batch", 1: "sequence"}})
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for seq in (40, 7):
        ids, mask, types = padded_batch(seq=seq, seed=seq)
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                 "token_type_ids": types.numpy()})[0]
        with torch.no_grad():
            want = graph(ids, mask, types)
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sharing", ["es", "nes", "gdes"])
def test_checkpoint_round_trip_keeps_the_outputs(tmp_path, sharing):
    from electra.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = Electra(tiny_config(embedding_sharing=sharing, position_biased_input=True)).eval()
    randomize(model, 4)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt")).eval()
    ids, mask, types = padded_batch()
    with torch.no_grad():
        for kind in ("discriminator", "generator"):
            torch.testing.assert_close(getattr(loaded, kind)(ids, mask), getattr(model, kind)(ids, mask))


# ---- benchmark ---------------------------------------------------------------------------------------------------
def test_pretrain_throughput_deberta_arm_reports_both_ratios(monkeypatch, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import pretrain_throughput

    monkeypatch.setattr(pretrain_throughput, "matmul_ceiling", lambda dtype, *a, **k: 100.0)
    monkeypatch.setattr(pretrain_throughput, "_step_peak_mb", lambda name, args: 1.0)
    pretrain_throughput.main(["--deberta", "--preset", "tiny", "--batch", "2", "--seq", "32", "--steps", "1",
                              "--warmup", "1", "--system-malloc"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("deberta_ours_over_reference", "deberta_over_bert_step_time", "deberta_reference_tokens_per_s",
                "bert_ours_tokens_per_s"):
        assert result[key] > 0, key
    assert result["deberta_flops_per_step"] > result["flops_per_step"]
