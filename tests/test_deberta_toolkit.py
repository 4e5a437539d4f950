"""The rest of the toolkit on an imported DeBERTa-v3-shaped checkpoint (random weights: no real one is on disk
offline): continued RTD with GDES that resumes and exports, detect, fine-tuning, ONNX export of the fine-tuned run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from electra.checkpoint import load_checkpoint, resolve_checkpoint
from electra.cli import main
from electra.config import PretrainConfig
from electra.data.prepare import prepare
from electra.interop.hf_deberta import import_deberta
from electra.training.pretrainer import pretrain
from test_deberta import VOCAB, hf_model, save_hf_dir
from test_hf_roberta import finetune_sentence_pairs


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deberta")
    hf = save_hf_dir(hf_model("DebertaV2ForMaskedLM", "v3"), root / "hf")
    return import_deberta(hf, root / "ckpt").path


@pytest.fixture(scope="module")
def data_dir(imported, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text")
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(f"w{i}" for i in torch.randint(0, VOCAB - 5, (int(n),), generator=g).tolist())
             for n in torch.randint(8, 30, (300,), generator=g)]
    (root / "text.txt").write_text("\n\n".join("\n".join(lines[i:i + 5]) for i in range(0, 300, 5)) + "\n")
    out = root / "data"
    prepare([root / "text.txt"], imported / "tokenizer", out, max_seq_len=32, seed=0, progress=False)
    return out


def config(data_dir: Path, imported: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(data=str(data_dir), out=str(out), init_from=str(imported), max_steps=4, batch_size=4,
                warmup_steps=1, log_every=1, save_every=2, precision="fp32", device="cpu")
    return PretrainConfig.for_preset("continue", **{**base, **kw})


def test_continued_rtd_with_gdes_from_an_imported_deberta_resumes_exactly_and_exports(data_dir, imported, tmp_path):
    gdes = {"embedding_sharing": "gdes"}
    full = pretrain(config(data_dir, imported, tmp_path / "full"), model_overrides=gdes, progress=False)
    part = pretrain(config(data_dir, imported, tmp_path / "part", stop_step=2), model_overrides=gdes, progress=False)
    pretrain(config(data_dir, imported, part), model_overrides=gdes, resume=True, progress=False)
    rows = [r.split(",")[1:3] for r in (part / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == [r.split(",")[1:3] for r in (full / "metrics.csv").read_text().splitlines()[1:]]
    kept = load_checkpoint(resolve_checkpoint(full), keep_gdes=True)
    assert kept.config.embedding_sharing == "gdes" and kept.config.discriminator.architecture == "deberta-v2"
    with pytest.raises(SystemExit) as e:
        main(["export", "--checkpoint", str(full), "--format", "hf", "--out", str(tmp_path / "hf")])
    assert e.value.code == 0
    disc = load_file(str(tmp_path / "hf" / "discriminator" / "model.safetensors"))
    table = next(v for k, v in disc.items() if k.endswith("embeddings.word_embeddings.weight"))
    emb = kept.discriminator.encoder.embeddings.word_embeddings
    assert torch.equal(table, emb.weight.detach())  # E_G + E_delta


def test_detect_runs_on_an_imported_deberta(imported, capsys):
    with pytest.raises(SystemExit) as e:
        main(["detect", "--model", str(imported), "--json", "w1 w2 w3 w4 w5"])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["tokens"]) == len(out["replaced_prob"]) == 5


@pytest.mark.slow
def test_finetune_and_onnx_export_of_an_imported_deberta(imported, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    rows = [("w1 w2 w3", "w4 w5", "pos"), ("w6 w7 w8", "w9 w10", "neg")] * 8
    best = finetune_sentence_pairs(imported, tmp_path, rows, capsys)
    assert 0.0 <= best["acc"] <= 1.0
    from electra.export.onnx import export_onnx, read_meta

    folder = export_onnx(tmp_path / "run", tmp_path / "onnx")[0]
    parity = read_meta(folder)["parity"]["export"]
    assert parity["logits_max_abs_diff"] < 1e-4, parity


@pytest.fixture(scope="module")
def imported_unigram(tmp_path_factory) -> tuple[Path, object]:
    """A DeBERTa-v3-shaped checkpoint whose tokenizer is a SentencePiece Unigram model we train (``<pad>`` at 1,
    ``<mask>`` the last id), as DeBERTa-v3 ships a SentencePiece vocabulary."""
    from electra.tokenization import train_tokenizer

    root = tmp_path_factory.mktemp("deberta-unigram")
    lines = [x for x in (Path(__file__).parent / "fixtures" / "corpus" / "tiny-en.txt").read_text().splitlines()
             if x.strip()]
    tok = train_tokenizer(lines, root / "tok", vocab_size=300, model="unigram", show_progress=False)
    hf = hf_model("DebertaV2ForMaskedLM", "v3", vocab_size=tok.get_vocab_size(), pad_token_id=1)
    hf.save_pretrained(root / "hf")
    for f in (root / "tok").iterdir():
        (root / "hf" / f.name).write_bytes(f.read_bytes())
    return import_deberta(root / "hf", root / "ckpt", generator_depth=1.0).path, tok


def test_an_imported_deberta_with_a_unigram_tokenizer_reads_its_roles_and_fills_its_mask(imported_unigram, capsys):
    from electra.tokenization import load_tokenizer, special_tokens

    ckpt, tok = imported_unigram
    roles = special_tokens(load_tokenizer(ckpt / "tokenizer"))
    assert (roles.pad_id, roles.mask_id) == (1, tok.get_vocab_size() - 1)
    assert load_checkpoint(ckpt).config.discriminator.pad_token_id == 1
    with pytest.raises(SystemExit) as e:
        main(["fill", "--model", str(ckpt), "--json", "the river <mask> into the sea"])
    assert e.value.code == 0
    (candidates,) = json.loads(capsys.readouterr().out)  # one masked position, its top candidates
    assert len(candidates) == 5 and all(0 < p <= 1 for _, p in candidates)


def test_an_imported_deberta_with_a_unigram_tokenizer_detects_with_character_offsets(imported_unigram, capsys):
    ckpt, _ = imported_unigram
    text = "the river flows into the sea"
    with pytest.raises(SystemExit) as e:
        main(["detect", "--model", str(ckpt), "--json", text])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert "".join(text[a:b] for a, b in out["offsets"]).replace(" ", "") == text.replace(" ", "")
