"""`--quantize int8-tensor --calibration FILE`: SmoothQuant-style smoothing before per-tensor int8."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from deploy_fixtures import tiny_models  # noqa: E402
from electra.cli import main  # noqa: E402
from electra.errors import ElectraError  # noqa: E402
from electra.export.onnx import (  # noqa: E402
    TENSOR_FP32_NODES,
    _fuse,
    _pre_process,
    _torch_export,
    check_batch,
    export_onnx,
    read_meta,
    targets,
)
from electra.export.session import ort_session  # noqa: E402
from electra.export.smoothing import calibration_batches, smooth_graph  # noqa: E402

TEXTS = ["the film is a delight", "a dull , lifeless movie", "it rains in the north", "one\ttwo words"] * 5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    f = tmp_path_factory.mktemp("calib") / "calib.txt"
    f.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return f


@pytest.fixture(scope="module")
def pre(models, tmp_path_factory):
    work = tmp_path_factory.mktemp("graphs")
    target = targets(models["classification"])[0]
    _torch_export(target, work / "raw.onnx", 17)
    _fuse(work / "raw.onnx", work / "fused.onnx", target)
    _pre_process(work / "fused.onnx", work / "pre.onnx")
    return work / "pre.onnx", target


def _batch(target):
    return {k: v.numpy() for k, v in check_batch(target.graph.encoder.config.vocab_size, 24, 3).items()}


def test_smoothing_leaves_the_fp32_graph_equal(pre, calibration):
    path, target = pre
    batches = calibration_batches(target.tokenizer, calibration, 32)
    names = smooth_graph(path, path.with_name("smoothed.onnx"), batches, skip=TENSOR_FP32_NODES)
    layers = target.graph.encoder.config.num_layers
    assert {f"/encoder/layers.{i}/ffn_in/MatMul" for i in range(layers)} <= set(names)
    assert "Attention_0" in names  # query/key/value of block 0, fed by the embeddings' LayerNorm
    b = _batch(target)
    want = ort_session(path).run(["logits"], b)[0]
    got = ort_session(path.with_name("smoothed.onnx")).run(["logits"], b)[0]
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_smoothing_adds_one_mul_per_smoothed_node(pre, calibration):
    import onnx

    path, target = pre
    names = smooth_graph(path, path.with_name("s2.onnx"), calibration_batches(target.tokenizer, calibration, 32))
    muls = [n for n in onnx.load(str(path.with_name("s2.onnx"))).graph.node if n.name.endswith("/smooth")]
    assert sorted(m.name[: -len("/smooth")] for m in muls) == sorted(names)


def test_int8_tensor_export_with_calibration_is_smoothed_and_agrees(models, calibration, tmp_path):
    import onnx

    folder = export_onnx(models["classification"], tmp_path / "q", quantize="int8-tensor",
                         calibration=calibration)[0]
    meta = read_meta(folder)
    assert "SmoothQuant" in meta["quantization"] and meta["smoothed_nodes"]
    assert meta["parity"]["int8"]["argmax_agreement"] == 1.0
    ops = {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops


def test_calibration_pairs_are_split_at_the_tab(pre, calibration):
    _, target = pre
    batches = calibration_batches(target.tokenizer, calibration, 32)
    assert sum(len(b["input_ids"]) for b in batches) == len(TEXTS)
    assert batches[0]["token_type_ids"][3].max() == 1 and batches[0]["token_type_ids"][0].max() == 0


@pytest.mark.parametrize("content,message", [(None, "no such file"), ("\n \n", "no text"),
                                              (b"\xff\xfe bad", "not UTF-8")])
def test_bad_calibration_file_is_a_one_line_error(pre, tmp_path, content, message):
    _, target = pre
    f = tmp_path / "c.txt"
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    with pytest.raises(ElectraError, match=message):
        calibration_batches(target.tokenizer, f, 32)


def test_calibration_needs_int8_tensor(models, calibration, tmp_path):
    with pytest.raises(ElectraError, match="int8-tensor only"):
        export_onnx(models["classification"], tmp_path / "x", quantize="int8", calibration=calibration)


def test_cli_takes_calibration(models, calibration, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--format", "onnx", "--checkpoint", str(models["classification"]), "--out",
              str(tmp_path / "x"), "--quantize", "int8-tensor", "--calibration", str(calibration)])
    assert e.value.code == 0
    assert "SmoothQuant" in capsys.readouterr().out
