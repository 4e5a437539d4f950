"""A Unigram tokenizer (special ids not BERT's 0-4: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, ``<mask>`` the
last id) through every command: prepare -> pretrain -> detect -> finetune -> export (hf, onnx) -> serve."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from electra.checkpoint import load_checkpoint, resolve_checkpoint
from electra.cli import main
from electra.tokenization import load_tokenizer, special_tokens

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
ZH = "数学是利用符号语言研究数量的一门学科"


def run(*argv) -> None:
    """``electra ARGV`` in this process; exit code 0 expected."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 0, argv


def cli(capsys, *argv) -> str:
    """``electra ARGV`` in this process: its stdout."""
    run(*argv)
    return capsys.readouterr().out


def sst2_like(folder: Path) -> Path:
    """A tiny SST-2 folder (train.tsv, dev.tsv) of English and Chinese sentences."""
    rng = random.Random(0)
    folder.mkdir()
    for split, n in (("train", 16), ("dev", 8)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            pos = rng.random() < 0.5
            rows.append(f"the {'green' if pos else 'old'} river {'很好' if pos else '不好'}\t{int(pos)}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """tokenizer train --model unigram -> prepare -> pretrain (3 steps) -> finetune sst2 (3 steps)."""
    root = tmp_path_factory.mktemp("unigram-e2e")
    paths = {"tok": root / "tok", "data": root / "data", "run": root / "run", "ft": root / "ft"}
    run("tokenizer", "train", "--model", "unigram", "--input", FIXTURES, "--out", paths["tok"], "--vocab-size", "800")
    run("prepare", "--tokenizer", paths["tok"], "--input", FIXTURES, "--out", paths["data"],
        "--max-seq-len", "64", "--quiet")
    run("pretrain", "--data", paths["data"], "--out", paths["run"], "--preset", "tiny", "--batch-size", "4",
        "--warmup-steps", "2", "--max-steps", "3", "--precision", "fp32", "--device", "cpu", "--no-progress")
    run("finetune", "--task", "sst2", "--model", paths["run"], "--data", sst2_like(root / "sst2"), "--out",
        paths["ft"], "--max-steps", "3", "--batch-size", "4", "--device", "cpu", "--seed", "0", "--quiet")
    return paths


def roles(path: Path) -> dict[str, int]:
    return dict(special_tokens(load_tokenizer(path)).ids)


def test_prepared_data_and_checkpoints_keep_the_unigram_roles(chain):
    expected = roles(chain["tok"])
    assert expected == {"cls": 0, "pad": 1, "sep": 2, "unk": 3, "mask": 799}
    assert json.loads((chain["data"] / "meta.json").read_text())["special_ids"] == expected
    assert roles(resolve_checkpoint(chain["run"]) / "tokenizer") == expected
    assert roles(chain["ft"] / "best" / "tokenizer") == expected


def test_detect_scores_every_real_token_and_no_special_one(chain, capsys):
    got = json.loads(cli(capsys, "detect", "--model", chain["run"], "--json", f"the river {ZH}"))
    tok = load_tokenizer(chain["tok"])
    expected = tok.encode(f"the river {ZH}", add_special_tokens=False).tokens
    assert got["tokens"] == expected and len(got["replaced_prob"]) == len(expected)
    assert not set(got["tokens"]) & set(special_tokens(tok).tokens.values())


def test_finetuned_run_classifies_chinese_and_pairs(chain):
    from electra.inference import load_model
    from electra.pipelines import pipelines_for

    classify = pipelines_for(load_model(chain["ft"]))["classify"]
    got = classify([ZH, ["the green river", "很好"]])
    assert len(got) == 2 and all(abs(sum(x["score"] for x in r) - 1) < 1e-5 for r in got)


def test_export_hf_loads_in_transformers_and_gives_our_logits(chain, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cli(capsys, "export", "--checkpoint", chain["run"], "--format", "hf", "--out", tmp_path / "hf")
    hf_dir = tmp_path / "hf" / "discriminator"
    hf, info = transformers.ElectraForPreTraining.from_pretrained(str(hf_dir), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    auto = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    st = special_tokens(load_tokenizer(chain["tok"]))
    assert (auto.pad_token_id, auto.mask_token_id, hf.config.pad_token_id) == (st.pad_id, st.mask_id, st.pad_id)
    batch = auto([ZH, "the river"], ["很好", f"a {st.mask} here"], padding=True, return_tensors="pt")
    assert batch["input_ids"][1, -1].item() == st.pad_id and batch["token_type_ids"].max().item() == 1
    ours = load_checkpoint(resolve_checkpoint(chain["run"])).eval()
    with torch.no_grad():
        expected = ours.discriminator(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        got = hf.eval()(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)


def test_export_onnx_classifies_like_torch(chain, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from electra.inference import load_model
    from electra.pipelines import pipelines_for

    cli(capsys, "export", "--checkpoint", chain["ft"], "--format", "onnx", "--out", tmp_path / "onnx")
    assert roles(tmp_path / "onnx") == roles(chain["tok"])
    inputs = [ZH, ["the green river", "很好"], "the old river"]
    onnx = pipelines_for(load_model(tmp_path / "onnx", backend="onnx"))["classify"](inputs)
    torch_ = pipelines_for(load_model(chain["ft"]))["classify"](inputs)
    for a, b in zip(onnx, torch_):
        assert [x["label"] for x in a] == [x["label"] for x in b]
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-4)


def test_serve_detects_fills_and_classifies_with_the_unigram_tokenizer(chain, tmp_path):
    pytest.importorskip("httpx")
    from electra.inference import load_model
    from electra.pipelines import pipelines_for
    from serve_fixtures import running_server

    local = {**pipelines_for(load_model(chain["run"])), **pipelines_for(load_model(chain["ft"]))}
    mask = special_tokens(load_tokenizer(chain["tok"])).mask
    fill_text = f"the river {mask} through 数学"
    with running_server([f"pre={chain['run']}", f"sst={chain['ft']}"], tmp_path / "serve.log") as s, \
            s.client() as c:
        detect = c.post("/v1/detect", json={"text": ZH, "model": "pre"})
        fill = c.post("/v1/fill", json={"text": fill_text, "top_k": 3, "model": "pre"})
        classify = c.post("/v1/classify", json={"text": ["the green river", "很好"], "model": "sst"})
    assert detect.status_code == 200 and detect.json() == local["detect"]([ZH])[0]
    assert fill.status_code == 200, fill.text
    assert fill.json() == local["fill"].run([local["fill"].prepare(fill_text, 3)])[0]
    assert classify.status_code == 200 and classify.json() == local["classify"]([["the green river", "很好"]])[0]


def test_keras_detects_and_fills_like_torch_with_the_unigram_tokenizer(chain, capsys):
    pytest.importorskip("keras", reason="the tf extra (requirements-tf.lock) is not installed")
    mask = special_tokens(load_tokenizer(chain["tok"])).mask
    for framework in ("torch", "tf"):
        got = json.loads(cli(capsys, "detect", "--model", chain["run"], "--framework", framework, "--json", ZH))
        if framework == "torch":
            ref = got
    assert got["tokens"] == ref["tokens"] and got["offsets"] == ref["offsets"]
    assert got["replaced_prob"] == pytest.approx(ref["replaced_prob"], abs=1e-3)
    fills = [cli(capsys, "fill", "--model", chain["run"], "--framework", fw, f"the {text} river")
             for fw in ("torch", "tf") for text in ("[MASK]", mask)]
    assert len(set(fills)) == 1, fills
