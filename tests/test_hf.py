"""Interop with Hugging Face ``transformers`` ELECTRA: import agrees with it, export restores it exactly."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from electra.checkpoint import WEIGHTS_FILE, load_checkpoint, read_checkpoint_meta, save_checkpoint, tokenizer_dir
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.interop.hf import electra_from_hf, import_hf
from electra.interop.hf_models import export_hf
from electra.modeling import Electra
from hf_models import make_pair, random_batch, save_pair, transformers

ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: these tiny batches are all per-op overhead, which extra threads on a shared,
    loaded machine multiply (12 ms per LayerNorm with 2 threads against 6 other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
CASES = {  # name: (shape preset, vocab size, generator shares the discriminator's embedding tables)
    "tiny-shared": ("tiny", 300, True),
    "small-shared": ("small", 500, True),  # Table 6 Small shapes, reduced vocabulary
    "tiny-separate": ("tiny", 300, False),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    """A random transformers pair, imported into our checkpoint and exported back."""
    preset, vocab, share = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    disc, gen = make_pair(preset, vocab, share)
    disc_dir, gen_dir = save_pair(disc, gen, root)
    import_hf(disc_dir, root / "ours", gen_dir)
    export_hf(root / "ours", root / "exported")
    return SimpleNamespace(disc=disc, gen=gen, disc_dir=disc_dir, gen_dir=gen_dir, vocab=vocab, share=share,
                           ours=load_checkpoint(root / "ours").eval(), ckpt=root / "ours",
                           exported=root / "exported")


def _hf_logits(model, ids, mask, types):
    return model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits


def _assert_same_tensors(exported, original):
    before, after = load_file(original / "model.safetensors"), load_file(exported / "model.safetensors")
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k


def _close(ours, theirs):
    assert theirs.abs().max() > 0.1  # the comparison is not trivially satisfied by near-zero outputs
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_import_ties_embeddings_iff_the_pair_shares_them(pair):
    assert pair.ours.config.tie_embeddings is pair.share
    shared = pair.ours.generator.encoder.embeddings is pair.ours.discriminator.encoder.embeddings
    assert shared is pair.share


def test_imported_config_reproduces_both_shapes(pair):
    for ours, theirs in ((pair.ours.config.discriminator, pair.disc.config),
                         (pair.ours.config.generator, pair.gen.config)):
        assert (ours.vocab_size, ours.embedding_size, ours.hidden_size, ours.num_layers, ours.num_heads,
                ours.intermediate_size, ours.max_position_embeddings) == (
            theirs.vocab_size, theirs.embedding_size, theirs.hidden_size, theirs.num_hidden_layers,
            theirs.num_attention_heads, theirs.intermediate_size, theirs.max_position_embeddings)
    assert pair.ours.generator.encoder.project is not None  # generator embedding size != its hidden size


def test_imported_discriminator_logits_match_transformers(pair):
    ids, mask, types = random_batch(pair.vocab)
    with torch.no_grad():
        theirs = pair.disc(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        _close(pair.ours.discriminator(ids, mask, types), theirs)


def test_imported_generator_logits_match_transformers(pair):
    ids, mask, types = random_batch(pair.vocab, seed=1)
    with torch.no_grad():
        theirs = pair.gen(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        _close(pair.ours.generator(ids, mask, types), theirs)


def test_shared_embeddings_are_stored_once_after_import(pair):
    keys = set(load_file(pair.ckpt / WEIGHTS_FILE))
    assert any(k.startswith("discriminator.encoder.embeddings.") for k in keys)
    assert any(k.startswith("generator.encoder.embeddings.") for k in keys) is not pair.share


@pytest.mark.parametrize("kind,original", [("discriminator", "disc_dir"), ("generator", "gen_dir")])
def test_export_restores_the_original_tensors_exactly(pair, kind, original):
    _assert_same_tensors(pair.exported / kind, getattr(pair, original))


@pytest.mark.parametrize("kind,cls", [("discriminator", "ElectraForPreTraining"), ("generator", "ElectraForMaskedLM")])
def test_exported_directory_loads_without_missing_or_unexpected_keys(pair, kind, cls):
    model, info = getattr(transformers, cls).from_pretrained(pair.exported / kind, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert not info["error_msgs"]
    if kind == "generator":  # the output layer is tied to (not loaded separately from) the word embeddings
        assert model.generator_lm_head.weight is model.electra.embeddings.word_embeddings.weight
        torch.testing.assert_close(model.generator_lm_head.weight, pair.gen.generator_lm_head.weight, atol=0, rtol=0)


def test_exported_models_agree_with_ours(pair):
    ids, mask, types = random_batch(pair.vocab, seed=2)
    disc = transformers.ElectraForPreTraining.from_pretrained(pair.exported / "discriminator").eval()
    gen = transformers.ElectraForMaskedLM.from_pretrained(pair.exported / "generator").eval()
    with torch.no_grad():
        d = disc(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        g = gen(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        assert torch.equal(d, pair.disc(input_ids=ids, attention_mask=mask, token_type_ids=types).logits)
        assert torch.equal(g, pair.gen(input_ids=ids, attention_mask=mask, token_type_ids=types).logits)
        _close(pair.ours.discriminator(ids, mask, types), d)
        _close(pair.ours.generator(ids, mask, types), g)


@pytest.mark.parametrize("kind,original", [("discriminator", "disc_dir"), ("generator", "gen_dir")])
def test_exported_config_keeps_the_original_shape(pair, kind, original):
    before = json.loads((getattr(pair, original) / "config.json").read_text())
    after = json.loads((pair.exported / kind / "config.json").read_text())
    for field in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps"):
        assert after[field] == before[field], field


# ---- one network, our own models, tokenizer files ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_dirs")
    torch.manual_seed(0)
    disc, gen = make_pair("tiny", 300, share_embeddings=True)
    disc_dir, gen_dir = save_pair(disc, gen, root)
    return SimpleNamespace(disc=disc, gen=gen, disc_dir=disc_dir, gen_dir=gen_dir)


def test_discriminator_alone_imports_and_exports_without_generator(tiny_dirs, tmp_path):
    import_hf(tiny_dirs.disc_dir, tmp_path / "ours")
    assert read_checkpoint_meta(tmp_path / "ours")["has_generator"] is False
    assert not any(k.startswith("generator.") for k in load_file(tmp_path / "ours" / WEIGHTS_FILE))
    export_hf(tmp_path / "ours", tmp_path / "exported")
    assert not (tmp_path / "exported" / "generator").exists()
    _assert_same_tensors(tmp_path / "exported" / "discriminator", tiny_dirs.disc_dir)


def test_import_copies_tokenizer_files_along(tiny_dirs, tmp_path):
    disc_dir = tmp_path / "disc"
    shutil.copytree(tiny_dirs.disc_dir, disc_dir)
    (disc_dir / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
    import_hf(disc_dir, tmp_path / "ours", tiny_dirs.gen_dir)
    assert (tokenizer_dir(tmp_path / "ours") / "vocab.txt").read_text() == (disc_dir / "vocab.txt").read_text()
    export_hf(tmp_path / "ours", tmp_path / "exported")
    for kind in ("discriminator", "generator"):
        assert (tmp_path / "exported" / kind / "vocab.txt").read_text().endswith("hello\n")


@pytest.mark.parametrize("tie", [True, False])
def test_our_own_model_exports_to_transformers(tmp_path, tie):
    torch.manual_seed(0)
    model = Electra(ModelConfig.preset("tiny", vocab_size=300, tie_embeddings=tie, hidden_act="gelu")).eval()
    with torch.no_grad():  # make LayerNorms and biases non-trivial, keeping the structure
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_checkpoint(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "exported")
    disc = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "exported" / "discriminator").eval()
    gen = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "exported" / "generator").eval()
    ids, mask, types = random_batch(300)
    with torch.no_grad():
        _close(model.discriminator(ids, mask, types), _hf_logits(disc, ids, mask, types))
        _close(model.generator(ids, mask, types), _hf_logits(gen, ids, mask, types))


# ---- bad input ----------------------------------------------------------------------------------------
def _one_line_error(fn, *args, match):
    with pytest.raises(ElectraError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_import_of_missing_path_is_an_error(tmp_path):
    _one_line_error(import_hf, tmp_path / "nope", tmp_path / "out", match="not a directory")
    assert not (tmp_path / "out").exists()


def test_import_of_a_directory_without_config_is_an_error(tmp_path):
    (tmp_path / "d").mkdir()
    _one_line_error(import_hf, tmp_path / "d", tmp_path / "out", match="no config.json")


def test_import_of_malformed_config_reports_file_line_and_column(tiny_dirs, tmp_path):
    shutil.copytree(tiny_dirs.disc_dir, tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text('{\n  "hidden_size": 64,\n  "vocab_size": ,\n}\n')
    _one_line_error(import_hf, tmp_path / "d", tmp_path / "out",
                    match=rf"^{tmp_path / 'd' / 'config.json'}:3:17: malformed JSON")


def test_import_of_weights_that_do_not_fit_the_config_is_an_error(tiny_dirs, tmp_path):
    shutil.copytree(tiny_dirs.disc_dir, tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    cfg["intermediate_size"] = 512
    (tmp_path / "d" / "config.json").write_text(json.dumps(cfg))
    _one_line_error(import_hf, tmp_path / "d", tmp_path / "out", match=r"has shape \(256, 64\), config expects")


def test_import_of_a_directory_without_weights_is_an_error(tiny_dirs, tmp_path):
    (tmp_path / "d").mkdir()
    shutil.copy(tiny_dirs.disc_dir / "config.json", tmp_path / "d")
    _one_line_error(import_hf, tmp_path / "d", tmp_path / "out", match="no model.safetensors")


def test_import_of_corrupt_weights_is_an_error(tiny_dirs, tmp_path):
    shutil.copytree(tiny_dirs.disc_dir, tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").write_bytes(b"not a safetensors file")
    _one_line_error(import_hf, tmp_path / "d", tmp_path / "out", match="unreadable weights")


def test_import_of_a_generator_as_discriminator_names_the_missing_tensor(tiny_dirs, tmp_path):
    _one_line_error(import_hf, tiny_dirs.gen_dir, tmp_path / "out",
                    match="missing tensor 'discriminator_predictions.dense.weight'")


def test_import_of_another_model_type_is_an_error(tiny_dirs, tmp_path):
    shutil.copytree(tiny_dirs.disc_dir, tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    (tmp_path / "d" / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    _one_line_error(import_hf, tmp_path / "d", tmp_path / "out", match="model_type is 'bert'")


def test_import_of_a_pair_with_different_embedding_sizes_is_an_error(tiny_dirs, tmp_path):
    shutil.copytree(tiny_dirs.gen_dir, tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    (tmp_path / "g" / "config.json").write_text(json.dumps({**cfg, "embedding_size": 32}))
    weights = load_file(tmp_path / "g" / "model.safetensors")
    save_file({k: v[..., :32].contiguous() if v.shape[-1] == 64 and "embeddings." in k else v
               for k, v in weights.items()}, tmp_path / "g" / "model.safetensors")
    _one_line_error(electra_from_hf, tiny_dirs.disc_dir, tmp_path / "g", match="embedding_size 32 differs")


# ---- the full Small shape, vocabulary included ----------------------------------------------------------
def test_small_preset_with_full_vocabulary_round_trips(tmp_path):
    torch.manual_seed(0)
    disc, gen = make_pair("small", 30522, share_embeddings=True)
    disc_dir, gen_dir = save_pair(disc, gen, tmp_path)
    import_hf(disc_dir, tmp_path / "ours", gen_dir)
    ours = load_checkpoint(tmp_path / "ours").eval()
    assert ours.config == ModelConfig.preset("small", hidden_act="gelu")
    ids, mask, types = random_batch(30522)
    with torch.no_grad():
        _close(ours.discriminator(ids, mask, types), _hf_logits(disc, ids, mask, types))
        _close(ours.generator(ids, mask, types), _hf_logits(gen, ids, mask, types))
    export_hf(tmp_path / "ours", tmp_path / "exported")
    for kind, original in (("discriminator", disc_dir), ("generator", gen_dir)):
        _assert_same_tensors(tmp_path / "exported" / kind, original)
