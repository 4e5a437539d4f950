"""`electra export --format onnx`: every head exports, onnxruntime agrees with PyTorch, the folder is complete."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from deploy_fixtures import tiny_models  # noqa: E402
from electra.cli import main  # noqa: E402
from electra.errors import ElectraError  # noqa: E402
from electra.export.onnx import check_batch, export_onnx, read_meta, targets  # noqa: E402
from electra.inference import OnnxRunner  # noqa: E402

KINDS = ["discriminator", "generator", "classification", "regression", "qa", "qa_independent", "tagging"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """kind -> (export folder, Target with the PyTorch reference)."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for kind, path in models.items():
        folders = export_onnx(path, root / kind)
        for folder, target in zip(folders, targets(path)):
            out[target.name or kind] = (folder, target)
    return out


def _padded(vocab: int, batch: int, seq: int, seed: int) -> dict[str, torch.Tensor]:
    b = check_batch(vocab, seq, seed)
    return {k: v[:batch] for k, v in b.items()} if batch <= 3 else {
        k: v.repeat((batch + 2) // 3, 1)[:batch] for k, v in b.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_onnxruntime_outputs_match_pytorch_within_1e_4(exported, kind):
    folder, target = exported[kind]
    runner = OnnxRunner(folder, threads=1)
    batch = _padded(target.graph.encoder.config.vocab_size, 3, 30, seed=7)
    got = runner({k: v.numpy() for k, v in batch.items()})
    with torch.no_grad():
        want = target.reference(batch)
    mask = batch["attention_mask"].numpy().astype(bool)
    for name in runner.outputs:
        ref = want[name].numpy()
        if name.endswith("_index"):
            assert np.array_equal(got[name], ref), name
            continue
        diff = np.abs(got[name] - ref)
        if ref.ndim >= 2 and ref.shape[1] == mask.shape[1] and not name.endswith("top_log_probs"):
            diff = diff[mask]  # padding positions are not outputs anyone reads
        assert diff.max() <= 1e-4, (name, float(diff.max()))
        assert np.abs(ref).max() > 1e-3, name  # the comparison is not between zeros


@pytest.mark.parametrize("shape", [(1, 7), (5, 40)])
def test_graph_takes_any_batch_size_and_sequence_length(exported, shape):
    folder, target = exported["classification"]
    batch = _padded(target.graph.encoder.config.vocab_size, *shape, seed=3)
    got = OnnxRunner(folder, threads=1)({k: v.numpy() for k, v in batch.items()})
    assert got["logits"].shape == (shape[0], 3)


def test_folder_holds_one_onnx_file_the_tokenizer_and_a_description(exported):
    folder, _ = exported["classification"]
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["model.onnx"]
    assert (folder / "vocab.txt").is_file()
    meta = json.loads((folder / "onnx.json").read_text())
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["shape"] == ["batch", "sequence"] for i in meta["inputs"])
    assert meta["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", "labels"]}]
    assert meta["labels"] == ["contradiction", "entailment", "neutral"] and meta["kind"] == "classification"


def test_qa_description_lists_span_and_answerability_outputs(exported):
    meta = read_meta(exported["qa"][0])
    names = [o["name"] for o in meta["outputs"]]
    assert names == ["start_logits", "start_top_log_probs", "start_top_index", "end_top_log_probs",
                     "end_top_index", "answerable_logit"]
    assert meta["min_sequence_length"] == 5  # the joint head's beam: a TopK constant of the graph
    assert meta["beam_size"] == 5 and "fixed at export" in meta["beam_size_note"]


def test_pretrained_checkpoint_exports_discriminator_and_generator(exported):
    assert read_meta(exported["discriminator"][0])["kind"] == "discriminator"
    assert read_meta(exported["generator"][0])["outputs"][0]["shape"] == ["batch", "sequence", "vocab"]


def test_onnxruntime_fusions_apply_to_every_layer(exported):
    folder, target = exported["discriminator"]
    fused = read_meta(folder)["fused_operators"]
    layers = target.graph.encoder.config.num_layers
    assert fused.get("Attention") == layers and fused.get("SkipLayerNormalization", 0) >= layers


@pytest.mark.parametrize("quantize,op", [("int8", "MatMulNBits"), ("int8-tensor", "DynamicQuantizeLinear")])
def test_int8_export_is_quantized_and_agrees_with_fp32(models, tmp_path, quantize, op):
    import onnx

    folder = export_onnx(models["classification"], tmp_path / "int8", quantize=quantize)[0]
    meta = read_meta(folder)
    assert meta["quantization"].startswith("int8") and "int8" in meta["parity"]
    assert op in {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    target = targets(models["classification"])[0]
    batch = _padded(target.graph.encoder.config.vocab_size, 3, 30, seed=9)
    got = OnnxRunner(folder, threads=1)({k: v.numpy() for k, v in batch.items()})["logits"]
    with torch.no_grad():
        want = target.reference(batch)["logits"].numpy()
    assert np.array_equal(got.argmax(-1), want.argmax(-1))
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def test_int8_tensor_makes_block0_ffn_output_per_row_and_keeps_only_the_head_fp32(models, tmp_path):
    import onnx

    folder = export_onnx(models["classification"], tmp_path / "q", quantize="int8-tensor")[0]
    graph = onnx.load(str(folder / "model.onnx")).graph
    weights = {i.name for i in graph.initializer}
    by_name = {n.name: n.op_type for n in graph.node}
    assert by_name["/encoder/layers.0/ffn_out/MatMul_Q8"] == "MatMulNBits"
    fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert all("/head/" in name for name in fp32)  # the head may be a Gemm


def test_cli_exports_a_run_to_onnx(models, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--format", "onnx", "--checkpoint", str(models["tagging"]), "--out", str(tmp_path / "x")])
    assert e.value.code == 0
    assert "model.onnx" in capsys.readouterr().out and (tmp_path / "x" / "model.onnx").is_file()


def test_exporting_a_folder_that_is_no_model_is_a_one_line_error(tmp_path):
    with pytest.raises(ElectraError, match="not a checkpoint"):
        export_onnx(tmp_path, tmp_path / "out")
