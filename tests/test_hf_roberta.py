"""RoBERTa / XLM-R: the body imports into our BERT encoder (positions shifted by pad + 1, one token type), exactly;
export writes (XLM)RobertaModel + rtd_head.safetensors and (XLM)RobertaForMaskedLM, which transformers loads with
nothing missing and which re-import to the same checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from electra.checkpoint import load_checkpoint, read_checkpoint_meta
from electra.errors import ElectraError
from electra.interop.hf import RTD_HEAD_FILE
from electra.interop.hf_models import export_hf
from electra.interop.hf_roberta import import_roberta
from electra.tokenization import train_tokenizer
from hf_models import randomize, transformers

ATOL = 1e-5
CORPUS = Path(__file__).parent / "fixtures" / "corpus"
CLASSES = {"roberta": ("RobertaConfig", "RobertaModel", "RobertaForMaskedLM"),
           "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel", "XLMRobertaForMaskedLM")}
POSITIONS = 40  # ours; theirs are 40 + pad + 1


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A SentencePiece-style Unigram tokenizer in XLM-R's (and RoBERTa's) layout: <s> 0, <pad> 1, </s> 2, <unk> 3."""
    out = tmp_path_factory.mktemp("tok")
    lines = [x for x in (CORPUS / "tiny-en.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
    train_tokenizer(lines, out, vocab_size=160, model="unigram", show_progress=False)
    return out


def vocab_size(tokenizer_dir: Path) -> int:
    from electra.tokenization import load_tokenizer

    return load_tokenizer(tokenizer_dir).get_vocab_size()


def save_roberta(directory: Path, tokenizer_dir: Path, model_type: str = "roberta", kind: str = "mlm",
                 seed: int = 0, **kw):
    """A random (XLM-)RoBERTa (kind "body" or "mlm") saved with save_pretrained, with the tokenizer's files."""
    cfg_cls, body_cls, mlm_cls = (getattr(transformers, n) for n in CLASSES[model_type])
    shape = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                 max_position_embeddings=POSITIONS + 2, type_vocab_size=1, hidden_act="gelu", layer_norm_eps=1e-5,
                 pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(seed)
    model = (body_cls if kind == "body" else mlm_cls)(cfg_cls(vocab_size=vocab_size(tokenizer_dir), **{**shape, **kw}))
    randomize(model, seed)
    model.eval().save_pretrained(directory)
    for f in tokenizer_dir.iterdir():
        shutil.copy2(f, directory / f.name)
    return model


def padded_batch(vocab: int, seed: int = 0, pad: int = 1):
    """<s> + random real tokens (ids >= 4, never the pad id), right-padded with the pad id."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab - 1, (3, 17), generator=g)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    return ids.masked_fill(mask == 0, pad), mask


def body(model):
    return model.roberta if hasattr(model, "roberta") else model


def their_hidden(model, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        return body(model)(input_ids=ids, attention_mask=mask).last_hidden_state


def our_hidden(ckpt: Path, ids, mask, types=None) -> torch.Tensor:
    with torch.no_grad():
        return load_checkpoint(ckpt).eval().discriminator.encoder(ids, mask, types)


def assert_same_real_positions(ours, theirs, mask):
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("model_type", sorted(CLASSES))
@pytest.mark.parametrize("kind", ["body", "mlm"])
def test_imported_body_gives_the_same_hidden_states_at_real_tokens(tmp_path, tokenizer_dir, model_type, kind):
    theirs = save_roberta(tmp_path / "hf", tokenizer_dir, model_type, kind)
    ckpt, report = import_roberta(tmp_path / "hf", tmp_path / "ckpt")
    ids, mask = padded_batch(theirs.config.vocab_size)
    assert_same_real_positions(our_hidden(ckpt, ids, mask), their_hidden(theirs, ids, mask), mask)
    assert report.format().startswith(f"imported {'RoBERTa' if model_type == 'roberta' else 'XLM-RoBERTa'} ")


@pytest.mark.parametrize("model_type", sorted(CLASSES))
def test_truncate_at_full_depth_reproduces_the_masked_lm_logits(tmp_path, tokenizer_dir, model_type):
    theirs = save_roberta(tmp_path / "hf", tokenizer_dir, model_type)
    ckpt, report = import_roberta(tmp_path / "hf", tmp_path / "ckpt", generator_size=1.0, generator_depth=1.0,
                                  generator_init="truncate")
    assert report.mlm_head == "copied" and report.generator_layers_copied == 3 and not report.dropped
    ids, mask = padded_batch(theirs.config.vocab_size)
    with torch.no_grad():
        ours = load_checkpoint(ckpt).generator.eval()(ids, mask)
        want = theirs(input_ids=ids, attention_mask=mask).logits
    assert_same_real_positions(ours, want, mask)


def test_config_drops_the_position_rows_before_the_first_real_position(tmp_path, tokenizer_dir):
    theirs = save_roberta(tmp_path / "hf", tokenizer_dir, "xlm-roberta")
    ckpt, _ = import_roberta(tmp_path / "hf", tmp_path / "ckpt")
    model = load_checkpoint(ckpt)
    d = model.config.discriminator
    assert (d.architecture, d.max_position_embeddings, d.type_vocab_size, d.pad_token_id) == ("xlm-roberta", 40, 1, 1)
    ours = model.discriminator.encoder.embeddings.position_embeddings.weight
    assert torch.equal(ours, theirs.roberta.embeddings.position_embeddings.weight[2:])
    assert read_checkpoint_meta(ckpt)["imported_from"]["xlm-roberta"] == str(tmp_path / "hf")


def test_segment_ids_are_ignored_with_one_token_type(tmp_path, tokenizer_dir):
    theirs = save_roberta(tmp_path / "hf", tokenizer_dir)
    ckpt, _ = import_roberta(tmp_path / "hf", tmp_path / "ckpt")
    ids, mask = padded_batch(theirs.config.vocab_size)
    pair = torch.zeros_like(ids)
    pair[:, 6:] = 1  # a sentence pair's second segment, as tasks pass it
    assert torch.equal(our_hidden(ckpt, ids, mask, pair), our_hidden(ckpt, ids, mask))


def test_pad_token_id_that_differs_from_the_tokenizer_is_a_one_line_error(tmp_path, tokenizer_dir):
    save_roberta(tmp_path / "hf", tokenizer_dir)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**cfg, "pad_token_id": 0}))
    with pytest.raises(ElectraError, match=r"pad_token_id 0 but the tokenizer's pad token '<pad>' is id 1") as e:
        import_roberta(tmp_path / "hf", tmp_path / "ckpt")
    assert "\n" not in str(e.value) and not (tmp_path / "ckpt").exists()


# ---- export --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=sorted(CLASSES))
def exported(request, tmp_path_factory, tokenizer_dir):
    """(their model, our checkpoint, export folder) for a RobertaForMaskedLM imported at full depth."""
    root = tmp_path_factory.mktemp(request.param)
    theirs = save_roberta(root / "hf", tokenizer_dir, request.param)
    ckpt, _ = import_roberta(root / "hf", root / "ckpt", generator_depth=1.0)
    export_hf(ckpt, root / "export")
    return theirs, ckpt, root / "export"


def test_exported_discriminator_loads_in_auto_model_with_nothing_missing(exported):
    theirs, ckpt, folder = exported
    model, info = transformers.AutoModel.from_pretrained(folder / "discriminator", output_loading_info=True)
    assert type(model).__name__ == CLASSES[theirs.config.model_type][1]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = padded_batch(theirs.config.vocab_size, seed=1)
    assert_same_real_positions(their_hidden(model.eval(), ids, mask), their_hidden(theirs, ids, mask), mask)
    assert (folder / "discriminator" / RTD_HEAD_FILE).is_file()


def test_exported_generator_loads_in_auto_model_for_masked_lm_with_the_same_logits(exported):
    theirs, ckpt, folder = exported
    model, info = transformers.AutoModelForMaskedLM.from_pretrained(folder / "generator", output_loading_info=True)
    assert type(model).__name__ == CLASSES[theirs.config.model_type][2]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = padded_batch(theirs.config.vocab_size, seed=2)
    with torch.no_grad():
        got, want = (m.eval()(input_ids=ids, attention_mask=mask).logits for m in (model, theirs))
    assert_same_real_positions(got, want, mask)


def test_reimported_export_gives_the_same_detection_logits(exported, tmp_path):
    theirs, ckpt, folder = exported
    again, report = import_roberta(folder / "discriminator", tmp_path / "again")
    assert report.detection_head == f"from {RTD_HEAD_FILE}"
    ids, mask = padded_batch(theirs.config.vocab_size, seed=3)
    with torch.no_grad():
        before = load_checkpoint(ckpt).eval().discriminator(ids, mask)
        after = load_checkpoint(again).eval().discriminator(ids, mask)
    assert_same_real_positions(after, before, mask)


def test_exported_tokenizer_encodes_pairs_without_segment_ids(exported):
    theirs, _, folder = exported
    tok = transformers.AutoTokenizer.from_pretrained(folder / "discriminator")
    enc = tok("the river", "a bank", return_tensors="pt")
    assert "token_type_ids" not in enc
    model = transformers.AutoModel.from_pretrained(folder / "discriminator").eval()
    with torch.no_grad():
        assert model(**enc).last_hidden_state.shape[1] == enc["input_ids"].shape[1]


def test_narrow_new_generator_is_exported_in_electra_layout(tmp_path, tokenizer_dir):
    save_roberta(tmp_path / "hf", tokenizer_dir, kind="body")
    ckpt, _ = import_roberta(tmp_path / "hf", tmp_path / "ckpt", generator_init="new")
    export_hf(ckpt, tmp_path / "export")
    config = json.loads((tmp_path / "export" / "generator" / "config.json").read_text())
    assert config["architectures"] == ["ElectraForMaskedLM"]  # a projection from the shared embeddings
    gen = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "export" / "generator").eval()
    ids, mask = padded_batch(config["vocab_size"])
    with torch.no_grad():
        want = load_checkpoint(ckpt).generator.eval()(ids, mask)
        got = gen(input_ids=ids, attention_mask=mask).logits
    assert_same_real_positions(got, want, mask)


# ---- the rest of the toolkit on an imported RoBERTa ------------------------------------------------------
@pytest.fixture(scope="module")
def imported(tmp_path_factory, tokenizer_dir) -> Path:
    root = tmp_path_factory.mktemp("imported")
    save_roberta(root / "hf", tokenizer_dir, "xlm-roberta")
    return import_roberta(root / "hf", root / "ckpt")[0]


def test_onnx_export_of_an_imported_roberta_matches_pytorch(imported, tmp_path):
    pytest.importorskip("onnxruntime")
    from electra.export.onnx import export_onnx, read_meta

    folders = export_onnx(imported, tmp_path / "onnx", optimize=False)
    assert [f.name for f in folders] == ["discriminator", "generator"]
    for folder in folders:
        parity = read_meta(folder)["parity"]["export"]
        assert parity["logits_max_abs_diff"] < 1e-4, parity


def test_detect_runs_on_an_imported_roberta(imported, capsys):
    from electra.cli import main

    with pytest.raises(SystemExit) as e:
        main(["detect", "--model", str(imported), "--json", "the river flows north"])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["tokens"]) == len(out["replaced_prob"]) > 0


def finetune_sentence_pairs(model: Path, out: Path, rows: list[tuple[str, str, str]], capsys) -> dict:
    """``electra finetune --task custom`` on two-text rows (a, b, label) for 4 steps; the run's best dev scores."""
    from electra.cli import main

    data = out / "data"
    data.mkdir(parents=True)
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("a\tb\ty\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows))
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--task", "custom", "--text-fields", "a,b", "--label-field", "y", "--model", str(model),
              "--data", str(data), "--out", str(out / "run"), "--max-steps", "4", "--batch-size", "8",
              "--max-seq-len", "32", "--quiet"])
    assert e.value.code == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["best"]


@pytest.mark.slow
def test_finetune_on_sentence_pairs_runs_on_an_imported_roberta(imported, tmp_path, capsys):
    rows = [("a good film", "it was fun", "pos"), ("a bad film", "it was dull", "neg")] * 8
    best = finetune_sentence_pairs(imported, tmp_path, rows, capsys)
    assert 0.0 <= best["acc"] <= 1.0
