"""`import-hf --model DIR`: config.json's model_type picks the importer (electra, bert, roberta, xlm-roberta,
deberta-v2); anything else, and --generator where it means nothing, are one-line errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from electra.checkpoint import load_checkpoint
from electra.errors import ElectraError
from electra.interop import hf_deberta
from electra.interop.hf_models import import_model
from hf_models import make_pair, save_pair, transformers
from test_hf_bert import save_bert
from test_hf_roberta import save_roberta, tokenizer_dir  # noqa: F401  (a fixture)


def one_line_error(match: str, *args, **kw) -> str:
    with pytest.raises(ElectraError, match=match) as e:
        import_model(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_an_electra_directory_is_the_discriminator_with_its_generator(tmp_path):
    from electra.interop.hf import import_hf

    torch.manual_seed(0)
    disc_dir, gen_dir = save_pair(*make_pair("tiny", 300, True), tmp_path)
    path, report = import_model(disc_dir, tmp_path / "ckpt", generator_dir=gen_dir)
    import_hf(disc_dir, tmp_path / "direct", gen_dir)
    same_weights(load_checkpoint(path), load_checkpoint(tmp_path / "direct"))
    assert report == f"imported ELECTRA discriminator {disc_dir} + generator {gen_dir}"


def test_a_bert_directory_goes_to_import_bert(tmp_path):
    save_bert(transformers.BertForMaskedLM, tmp_path / "bert")
    path, report = import_model(tmp_path / "bert", tmp_path / "ckpt", generator_init="new", seed=3)
    assert report.startswith("imported BERT ") and "generator 3 x 12 (new" in report
    assert load_checkpoint(path).config.discriminator.architecture == "bert"


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta"])
def test_roberta_directories_go_to_import_roberta(tmp_path, tokenizer_dir, model_type):  # noqa: F811
    save_roberta(tmp_path / "hf", tokenizer_dir, model_type)
    path, report = import_model(tmp_path / "hf", tmp_path / "ckpt", generator_depth=1.0)
    model = load_checkpoint(path)
    assert model.config.discriminator.architecture == model_type and model.config.generator.num_layers == 3
    assert "MLM head copied" in report


def test_a_deberta_v2_directory_goes_to_import_deberta_with_every_option(tmp_path, monkeypatch):
    calls = []

    def import_deberta(model_dir, out, **kw):
        calls.append((model_dir, out, kw))
        return SimpleNamespace(path=out, format=lambda: "imported DeBERTa-v2")  # hf_deberta's report

    monkeypatch.setattr(hf_deberta, "import_deberta", import_deberta)
    (tmp_path / "deb").mkdir()
    (tmp_path / "deb" / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
    path, report = import_model(tmp_path / "deb", tmp_path / "ckpt", generator_dir=tmp_path / "gen",
                                generator_size=1.0, seed=7)
    assert (path, report) == (tmp_path / "ckpt", "imported DeBERTa-v2")
    assert calls == [(tmp_path / "deb", tmp_path / "ckpt", dict(
        generator_dir=tmp_path / "gen", generator_init="truncate", generator_size=1.0, generator_depth=None, seed=7))]


def test_an_unknown_model_type_is_named_with_the_supported_ones(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    msg = one_line_error("model_type 'gpt2' is not supported", tmp_path / "m", tmp_path / "ckpt")
    assert "electra, bert, roberta, xlm-roberta, deberta-v2" in msg


def test_a_directory_without_config_json_is_a_one_line_error(tmp_path):
    (tmp_path / "m").mkdir()
    one_line_error("no config.json", tmp_path / "m", tmp_path / "ckpt")


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_generator_dir_is_refused_where_the_generator_comes_from_the_body(tmp_path, tokenizer_dir,  # noqa: F811
                                                                          model_type):
    if model_type == "bert":
        save_bert(transformers.BertModel, tmp_path / "m")
    else:
        save_roberta(tmp_path / "m", tokenizer_dir, kind="body")
    one_line_error(f"--generator .*not supported for model_type '{model_type}'", tmp_path / "m", tmp_path / "ckpt",
                   generator_dir=tmp_path / "gen")
    assert not (tmp_path / "ckpt").exists()


def test_generator_shape_options_are_refused_for_an_electra(tmp_path):
    torch.manual_seed(0)
    disc_dir, _ = save_pair(*make_pair("tiny", 300, True), tmp_path)
    one_line_error("not for an ELECTRA checkpoint", disc_dir, tmp_path / "ckpt", generator_init="new")


def test_cli_model_flag_imports_and_prints_the_report(tmp_path, tokenizer_dir, capsys):  # noqa: F811
    from electra.cli import main

    save_roberta(tmp_path / "hf", tokenizer_dir)
    with pytest.raises(SystemExit) as e:
        main(["import-hf", "--model", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt"), "--generator-init", "new"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("imported RoBERTa ") and "wrote checkpoint" in out


def test_cli_model_flag_with_an_unknown_type_exits_2_in_one_line(tmp_path, capsys):
    from electra.cli import main

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(SystemExit) as e:
        main(["import-hf", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0 and "'t5' is not supported" in err


def test_cli_export_names_the_classes_it_wrote(tmp_path, tokenizer_dir, capsys):  # noqa: F811
    from electra.cli import main
    from electra.interop.hf_roberta import import_roberta

    save_roberta(tmp_path / "hf", tokenizer_dir)
    ckpt, _ = import_roberta(tmp_path / "hf", tmp_path / "ckpt")
    with pytest.raises(SystemExit) as e:
        main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "export")])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "(RobertaModel)" in out and "(RobertaForMaskedLM)" in out


def test_a_deberta_v2_import_exports_back_to_deberta_classes_with_the_detection_head_beside(tmp_path):
    from electra.interop.hf import RTD_HEAD_FILE
    from electra.interop.hf_models import export_hf
    from test_deberta import hf_model, save_hf_dir

    save_hf_dir(hf_model("DebertaV2ForMaskedLM", "v3"), tmp_path / "hf")
    path, report = import_model(tmp_path / "hf", tmp_path / "ckpt", generator_depth=1.0)
    assert load_checkpoint(path).config.discriminator.architecture == "deberta-v2" and "DeBERTa-v2" in report
    export_hf(path, tmp_path / "export")
    for kind, auto, cls in (("discriminator", "AutoModel", "DebertaV2Model"),
                            ("generator", "AutoModelForMaskedLM", "DebertaV2ForMaskedLM")):
        model, info = getattr(transformers, auto).from_pretrained(tmp_path / "export" / kind,
                                                                  output_loading_info=True)
        assert type(model).__name__ == cls and not info["missing_keys"] and not info["unexpected_keys"]
    assert (tmp_path / "export" / "discriminator" / RTD_HEAD_FILE).is_file()
