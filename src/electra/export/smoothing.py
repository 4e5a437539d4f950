"""Activation smoothing before per-tensor int8 (SmoothQuant, Xiao et al. 2023), for ``--quantize int8-tensor
--calibration FILE``.

Per-tensor dynamic int8 gives every channel of a MatMul's input one scale, so the few channels of a LayerNorm
output that are 10x larger than the rest (BERT's outlier dimensions; here max 28 against a median of 2) cost the
others most of their resolution. Smoothing divides input channel ``k`` by ``s_k`` and multiplies row ``k`` of the
weight by it (the product is unchanged in exact arithmetic), with ``s_k = max|X_k|^alpha / max|W_k,:|^(1-alpha)``
from calibration text, so that activation and weight share the range.

Only the MatMul/Attention nodes fed by a LayerNormalization (query/key/value and the FFN input) are smoothed.
Their input is also the residual, so the division is an explicit ``Mul`` in front of the node (one per node:
13 in a 6-layer classifier, whose last block has separate key and value MatMuls because it computes the ``[CLS]``
query only) rather than folded into the LayerNorm.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from electra.errors import ElectraError
from electra.export.session import feeds, ort_session
from electra.tokenization import load_tokenizer, pad_batch, special_tokens

ALPHA = 0.5  # SmoothQuant's default migration strength
CALIBRATION_LINES = 1000  # at most this many lines of --calibration are read
BATCH = 32
LAYER_NORMS = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization")


def calibration_batches(tokenizer_dir: str | Path, path: str | Path, max_len: int,
                        limit: int = CALIBRATION_LINES) -> list[dict[str, np.ndarray]]:
    """Padded input batches of the first ``limit`` non-empty lines of ``path`` (one text per line; a TAB
    separates the two texts of a pair)."""

    p = Path(path)
    if not p.is_file():
        raise ElectraError(f"--calibration {p}: no such file")
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()][:limit]
    except UnicodeDecodeError as e:
        raise ElectraError(f"--calibration {p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not lines:
        raise ElectraError(f"--calibration {p}: no text (expected one input per line)")
    tok = load_tokenizer(tokenizer_dir)
    tok.enable_truncation(max_len)
    encs = [tok.encode(*ln.split("\t")[:2]) for ln in lines]
    pad = special_tokens(tok).pad_id
    return [pad_batch([e.ids for e in encs[i:i + BATCH]], [e.type_ids for e in encs[i:i + BATCH]], pad)
            for i in range(0, len(encs), BATCH)]


def smoothable(model: Any, skip: tuple[str, ...] = ()) -> list[Any]:
    """MatMul/Attention nodes with a constant 2-D weight used by no other node, fed by a LayerNorm."""
    inits = {i.name: i for i in model.graph.initializer}
    uses = Counter(x for n in model.graph.node for x in n.input)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return [n for n in model.graph.node
            if n.op_type in ("MatMul", "Attention") and len(n.input) > 1 and n.input[1] in inits
            and len(inits[n.input[1]].dims) == 2 and uses[n.input[1]] == 1
            and producer.get(n.input[0]) in LAYER_NORMS and not any(p in n.name for p in skip)]


def input_absmax(path: Path, tensors: list[str], batches: list[dict[str, np.ndarray]], threads: int = 2
                 ) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each of ``tensors`` (last axis) over ``batches`` (padding rows included: the
    run-time quantizer sees them too)."""
    import onnx
    from onnx import helper


    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors if t not in have)
    probe = path.with_name(path.stem + "-probe.onnx")
    onnx.save(model, str(probe))
    session = ort_session(probe, threads)
    amax: dict[str, np.ndarray] = {}
    for b in batches:
        for t, v in zip(tensors, session.run(tensors, feeds(session, b))):
            a = np.abs(v.reshape(-1, v.shape[-1])).max(0)
            amax[t] = np.maximum(amax[t], a) if t in amax else a
    probe.unlink()
    return amax


def smooth_graph(src: Path, dst: Path, batches: list[dict[str, np.ndarray]], alpha: float = ALPHA,
                 skip: tuple[str, ...] = ()) -> list[str]:
    """Write ``src`` with every :func:`smoothable` node smoothed to ``dst``; returns the nodes' names."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    nodes = smoothable(model, skip)
    amax = input_absmax(src, sorted({n.input[0] for n in nodes}), batches)
    inits = {i.name: i for i in model.graph.initializer}
    before: dict[str, Any] = {}
    for n in nodes:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        x = np.maximum(amax[n.input[0]], 1e-5)
        s = (x ** alpha / np.maximum(np.abs(w).max(1), 1e-5) ** (1 - alpha)).astype(np.float32)
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(w * s[:, None], n.input[1]))
        scale, smoothed = f"{n.name}/smooth_inverse", f"{n.name}/smoothed_input"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), scale))
        before[n.name] = helper.make_node("Mul", [n.input[0], scale], [smoothed], name=f"{n.name}/smooth")
        n.input[0] = smoothed
    order = []
    for n in model.graph.node:
        if n.name in before:
            order.append(before[n.name])
        order.append(n)
    del model.graph.node[:]
    model.graph.node.extend(order)
    onnx.save(model, str(dst))
    return [n.name for n in nodes]
