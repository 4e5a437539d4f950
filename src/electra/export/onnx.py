"""ONNX export of our networks and fine-tuned task models: export, fuse, quantize, each step checked.

onnxruntime's own recipe (``onnxruntime/transformers/optimizer.py``, ``quantization/``):

1. ``torch.onnx.export(..., dynamo=False)``: the TorchScript exporter, because onnxruntime's BERT fusions match
   the graphs it writes. :class:`OnnxGraph` runs our weights through a forward laid out the way those fusions
   expect (``transformers``' BERT layout): separate query/key/value projections (ours are fused into one),
   attention written out (``softmax(q k^T / sqrt(d) + mask) v``, not ``scaled_dot_product_attention``) and the
   additive ``(1 - mask) * -10000`` padding mask. Same math as :mod:`electra.modeling`.
2. ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` fuses attention, GELU, LayerNorm
   and skip connections into onnxruntime's contrib operators (skipped, with the reason in ``onnx.json``, where
   onnxruntime is absent or nothing fuses).
3. ``--quantize int8``: every MatMul with a constant weight (but :data:`FP32_NODES`: the task head, and the
   first block's FFN output projection, whose input, the GELU of the first block, carries the largest activation
   outliers of BERT-family encoders) becomes onnxruntime's ``MatMulNBits`` with 8-bit weights and
   ``accuracy_level=4``: activations quantized to int8 at run time per row (token) and block of
   :data:`ROW_BLOCK` channels. The fusion step then writes ``MultiHeadAttention`` (query/key/value MatMuls
   outside the attention node, so they are quantized too) instead of ``Attention``. A sequence's outputs do not
   depend on its batch mates or on padding, which matters under a server's dynamic batching.
   ``--quantize int8-tensor``: onnxruntime's usual recipe, ``quant_pre_process`` then ``quantize_dynamic``
   (per-channel weights, one activation scale per tensor, i.e. per batch: ``DynamicQuantizeMatMul`` and
   ``QAttention``), the same nodes left fp32: faster (``MatMulNBits``' int8 kernels are slower than the
   per-tensor ``DynamicQuantizeMatMul``), less accurate, and a result depends on the batch. Measured on SST-2 dev
   with a fine-tuned 6 x 384 model (MiniLM, batches of 32; docs/results.md, Deployment), argmax agreement with fp32:
   per row 99.89%, per tensor 98.62%, onnxruntime's defaults (every MatMul, per tensor) 95.64%; batch 32 time
   379 / 259 / 281 ms.

After every step the outputs are compared with our PyTorch model's on a padded check batch; the differences
go into ``onnx.json`` and a fp32 graph off by more than :data:`FP32_TOLERANCE` is an error. Inputs are
``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, dynamic ``batch`` and ``sequence`` axes).

A pre-trained checkpoint exports ``OUT/discriminator`` (replaced-token logits) and ``OUT/generator`` (MLM
logits over the vocabulary); a fine-tuned run exports ``OUT`` itself. Each folder holds ``model.onnx``,
``onnx.json`` (inputs, outputs, labels, task spec, parity) and the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from electra.checkpoint import load_checkpoint, read_checkpoint_meta, resolve_checkpoint, tokenizer_dir
from electra.errors import ElectraError
from electra.export.session import feeds, ort_session
from electra.export.smoothing import ALPHA, calibration_batches, smooth_graph
from electra.modeling import Block, Encoder, activation
from electra.tasks.runner import BEST_DIR, TASK_FILE, load_task_model, read_task_meta, run_tokenizer_dir

FORMAT = "electra-onnx"
MODEL_FILE = "model.onnx"
META_FILE = "onnx.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FP32_TOLERANCE = 1e-3  # export refuses a fp32 graph further than this from PyTorch (tests ask for 1e-4)
DEFAULT_OPSET = 17
FP32_NODES = ("/head/", "/encoder/layers.0/ffn_out/")  # ONNX node-name parts that int8 quantization leaves fp32
TENSOR_FP32_NODES = FP32_NODES  # the same for --quantize int8-tensor (per tensor)
# int8-tensor: these of the TENSOR_FP32_NODES become per-row int8 (MatMulNBits). One scale per tensor is too coarse
# for block 0's FFN output (its GELU-fed input has the largest outliers); one scale per row and block of ROW_BLOCK
# channels keeps the predictions, at about half the node's fp32 cost
TENSOR_ROW_NODES = ("/encoder/layers.0/ffn_out/",)
QUANTIZATIONS = ("int8", "int8-tensor")
ROW_BLOCK = 128  # int8: activation and weight quantization blocks of this many input channels (MatMulNBits)


# ---- the graph ---------------------------------------------------------------------------------------
class _Attention(nn.Module):
    """One block's self-attention with query, key and value as three projections (our fused one, split)."""

    def __init__(self, block: Block):
        super().__init__()
        att = block.attention
        self.num_heads = att.num_heads
        h = att.out.in_features
        self.query, self.key, self.value = (nn.Linear(h, h) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.query, self.key, self.value)):
                lin.weight.copy_(att.qkv.weight[i * h:(i + 1) * h])
                lin.bias.copy_(att.qkv.bias[i * h:(i + 1) * h])
        self.out = att.out

    def _heads(self, x: Tensor) -> Tensor:
        shape = x.size()[:-1] + (self.num_heads, x.size(-1) // self.num_heads)
        return x.view(shape).permute(0, 2, 1, 3)

    def forward(self, x: Tensor, additive_mask: Tensor, queries: Tensor | None = None) -> Tensor:
        q = self._heads(self.query(x if queries is None else queries))
        k, v = self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1))
        probs = F.softmax(scores + additive_mask, dim=-1)
        y = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return self.out(y.view(y.size()[:-2] + (y.size(-2) * y.size(-1),)))


class _Block(nn.Module):
    def __init__(self, block: Block):
        super().__init__()
        self.act = block.act
        self.attention = _Attention(block)
        self.attention_norm, self.ffn_in, self.ffn_out, self.ffn_norm = (
            block.attention_norm, block.ffn_in, block.ffn_out, block.ffn_norm)

    def forward(self, x: Tensor, additive_mask: Tensor, cls_only: bool = False) -> Tensor:
        queries = x[:, :1] if cls_only else None
        attended = self.attention(x, additive_mask, queries)
        x = self.attention_norm(attended + (x if queries is None else queries))
        return self.ffn_norm(self.ffn_out(activation(self.act, self.ffn_in(x))) + x)


class OnnxEncoder(nn.Module):
    """:class:`electra.modeling.Encoder` for export: the same weights and math in the BERT graph layout."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.config = encoder.config
        self.embeddings = encoder.embeddings
        self.project = encoder.project
        self.layers = nn.ModuleList(_Block(b) for b in encoder.layers)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                cls_only: bool = False) -> Tensor:
        emb = self.embeddings
        positions = torch.arange(input_ids.size(1), dtype=torch.long, device=input_ids.device).unsqueeze(0)
        if emb.token_type_embeddings.num_embeddings == 1:  # one token type (RoBERTa): segment ids unused
            token_type_ids = torch.zeros_like(token_type_ids)
        x = emb.word_embeddings(input_ids) + emb.position_embeddings(positions) + emb.token_type_embeddings(
            token_type_ids)
        x = emb.norm(x)
        if self.project is not None:
            x = self.project(x)
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, additive_mask, cls_only and i == last)
        return x[:, :1] if cls_only and not self.layers else x


class OnnxGraph(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> the named outputs of one network and its head."""

    def __init__(self, kind: str, encoder: Encoder, head: nn.Module, outputs: tuple[str, ...],
                 word_embeddings: nn.Embedding | None = None, cls_only: bool = False):
        super().__init__()
        self.kind, self.outputs, self.cls_only = kind, outputs, cls_only
        self.encoder = OnnxEncoder(encoder) if isinstance(encoder, Encoder) else encoder  # deberta: as it is
        self.head = head
        self.word_embeddings = word_embeddings

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, ...]:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, self.cls_only)
        if self.kind == "discriminator":
            return (self.head(hidden),)
        if self.kind == "generator":
            return (self.head(hidden, self.word_embeddings.weight),)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if self.kind == "ranking":  # each input one (context, candidate) pair: a list of one, scored alone
            batch["candidate_mask"] = torch.ones_like(input_ids[:, :1])
        out = self.head(hidden, batch)
        return tuple(out[name] for name in self.outputs)


def _dims(name: str, kind: str, task: str | None) -> list[str | int]:
    if name in ("start_top_log_probs", "start_top_index"):
        return ["batch", "beam"]
    if name in ("end_top_log_probs", "end_top_index"):
        return ["batch", "beam", "beam"]
    if name == "answerable_logit" or kind == "classification" and task == "regression":
        return ["batch"]
    if kind == "ranking":
        return ["batch", 1]  # one score per (context, candidate) pair
    if kind == "classification":
        return ["batch", "labels"]
    if kind in ("discriminator",) or name in ("start_logits", "end_logits"):
        return ["batch", "sequence"]
    return ["batch", "sequence", "vocab" if kind == "generator" else "labels"]


# ---- what to export ------------------------------------------------------------------------------------
@dataclass
class Target:
    """One network to export: its graph, the reference PyTorch model and what ``onnx.json`` says about it."""

    name: str  # folder under OUT ("" for a task model)
    graph: OnnxGraph
    reference: Any  # callable(batch dict of tensors) -> dict name -> tensor (our model, eval mode)
    tokenizer: Path | None
    meta: dict[str, Any] = field(default_factory=dict)
    min_sequence: int = 1  # shortest input the graph takes (QA: its beam size, a TopK constant)


def targets(source: str | Path) -> list[Target]:
    """What exporting ``source`` means: a pre-trained checkpoint or run folder (discriminator + generator),
    or a fine-tuned task run (classification/regression, QA, tagging)."""
    src = Path(source)
    if (src / TASK_FILE).is_file() or (src / BEST_DIR / TASK_FILE).is_file():
        return [_task_target(src)]
    return _pretrained_targets(src)


def _pretrained_targets(src: Path) -> list[Target]:
    ckpt = resolve_checkpoint(src)
    meta = read_checkpoint_meta(ckpt)
    model = load_checkpoint(ckpt).eval()
    tok = tokenizer_dir(ckpt)
    disc, gen = model.discriminator, model.generator
    out = [Target("discriminator", OnnxGraph("discriminator", disc.encoder, disc.head, ("logits",)),
                  lambda b: {"logits": disc(b["input_ids"], b["attention_mask"], b["token_type_ids"])}, tok,
                  {"kind": "discriminator", "outputs_mean": {"logits": "replaced-token logit (> 0: replaced)"}})]
    if meta.get("has_generator", True):
        word = gen.encoder.embeddings.word_embeddings
        out.append(Target("generator", OnnxGraph("generator", gen.encoder, gen.head, ("logits",), word),
                          lambda b: {"logits": gen(b["input_ids"], b["attention_mask"], b["token_type_ids"])},
                          tok, {"kind": "generator", "outputs_mean": {"logits": "MLM logits over the vocabulary"}}))
    for t in out:
        t.meta["source"] = str(ckpt)
    return out


def _task_target(src: Path) -> Target:
    model = load_task_model(src).eval()
    spec = model.spec
    task = spec.get("task")
    kind = model.head.kind
    names = model.head.output_names()
    labels = (spec.get("labels") or []) if kind in ("classification", "tagging") else []
    sub = "regression" if kind == "classification" and model.head.num_labels == 1 else kind
    graph = OnnxGraph(kind, model.encoder, model.head, names, cls_only=model.head.reads_cls_only)
    meta = {"kind": kind, "task": task, "task_type": sub, "labels": labels, "spec": spec,
            "head": read_task_meta(src)["head"], "source": str(src)}
    min_seq = model.head.beam_size if kind == "qa" and model.head.joint else 1
    if kind == "qa" and model.head.joint:  # the beam is a TopK constant of the graph, not an input
        meta["beam_size"] = model.head.beam_size
        meta["beam_size_note"] = ("fixed at export (a TopK constant of the graph, the run's beam); inputs "
                                  "shorter than it are padded to it")
    def reference(b: dict[str, Tensor]) -> dict[str, Tensor]:
        if kind == "ranking":
            b = {**b, "candidate_mask": torch.ones_like(b["input_ids"][:, :1])}
        return model(b)

    return Target("", graph, reference, run_tokenizer_dir(src), meta, min_seq)


# ---- export, fuse, quantize ----------------------------------------------------------------------------
def check_batch(vocab_size: int, seq: int = 24, seed: int = 0) -> dict[str, Tensor]:
    """A padded batch of 3 with two segments: what every parity check runs."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (3, seq), generator=g)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[1, seq - 7:] = 0
    mask[2, seq // 2:] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 3:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def _torch_export(target: Target, path: Path, opset: int) -> None:
    cfg = target.graph.encoder.config
    batch = check_batch(cfg.vocab_size, max(24, target.min_sequence + 4))
    dynamic = {n: {0: "batch", 1: "sequence"} for n in INPUTS}
    for name in target.graph.outputs:
        dims = _dims(name, target.meta["kind"], target.meta.get("task_type"))
        dynamic[name] = {i: d for i, d in enumerate(dims) if isinstance(d, str) and d not in ("labels", "vocab",
                                                                                             "beam")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(target.graph.eval(), tuple(batch[n] for n in INPUTS), str(path), dynamo=False,
                          input_names=list(INPUTS), output_names=list(target.graph.outputs),
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True)


def compare(path: Path, target: Target, seq: int = 24) -> dict[str, float]:
    """Max |onnx - torch| per float output and argmax agreement of the main output, on :func:`check_batch`."""
    cfg = target.graph.encoder.config
    batch = check_batch(cfg.vocab_size, max(seq, target.min_sequence + 4), seed=1)
    session = ort_session(path)
    got = session.run(list(target.graph.outputs), feeds(session, {n: batch[n].numpy() for n in INPUTS}))
    with torch.no_grad():
        want = target.reference(batch)
    res: dict[str, float] = {}
    for name, value in zip(target.graph.outputs, got):
        if name.endswith("_index"):
            res[f"{name}_agreement"] = float(np.mean(value == want[name].numpy()))
            continue
        ref = want[name].float().numpy()
        keep = _valid(name, batch, ref.shape)
        res[f"{name}_max_abs_diff"] = float(np.abs(value - ref)[keep].max()) if keep.any() else 0.0
    kind = target.meta["kind"]
    if kind in ("generator", "tagging", "classification") and target.meta.get("task_type") != "regression":
        agree = got[0].argmax(-1) == want["logits"].float().numpy().argmax(-1)
        if agree.ndim == 2:  # per token: real positions only
            agree = agree[batch["attention_mask"].numpy().astype(bool)]
        res["argmax_agreement"] = float(agree.mean())
    return res


def _valid(name: str, batch: dict[str, Tensor], shape: tuple[int, ...]) -> np.ndarray:
    """Which entries of an output to compare: real (not padding) positions of per-token outputs."""
    if len(shape) >= 2 and shape[1] == batch["attention_mask"].shape[1] and not name.endswith("top_log_probs"):
        mask = batch["attention_mask"].numpy().astype(bool)
        return np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - 2)), shape)
    return np.ones(shape, dtype=bool)


def _worst(diffs: dict[str, float]) -> float:
    return max((v for k, v in diffs.items() if k.endswith("_max_abs_diff")), default=0.0)


def _fuse(raw: Path, out: Path, target: Target, multi_head: bool = False) -> dict[str, Any]:
    """onnxruntime's BERT fusions; returns the fused operator counts (``{}`` where nothing fused).
    ``multi_head``: ``MultiHeadAttention`` with the query/key/value MatMuls left outside it (so that they can be
    quantized like every other MatMul) instead of ``Attention``, which holds them as one weight input."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = target.graph.encoder.config
    options = FusionOptions("bert")
    options.use_multi_head_attention = multi_head
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimize_model(str(raw), model_type="bert", num_heads=cfg.num_heads, hidden_size=cfg.hidden_size,
                               optimization_options=options, opt_level=0, use_gpu=False)
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    model.save_model_to_file(str(out))
    return stats


def _pre_process(fused: Path, pre: Path) -> None:
    """onnxruntime's ``quant_pre_process`` (shape inference) before :func:`_quantize_tensor`."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fused), str(pre), skip_optimization=True)


def _quantize_tensor(pre: Path, out: Path, fp32_nodes: tuple[str, ...] = TENSOR_FP32_NODES) -> list[str]:
    """Dynamic per-tensor int8 of MatMul/Attention weights of a pre-processed graph; MatMul/Attention nodes
    whose name contains one of ``fp32_nodes`` stay fp32. Returns the names left fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(pre)).graph
    keep_fp32 = [n.name for n in graph.node
                 if n.op_type in ("MatMul", "Attention") and any(p in n.name for p in fp32_nodes)]
    quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                     per_channel=True, nodes_to_exclude=keep_fp32, extra_options={"MatMulConstBOnly": True})
    return keep_fp32


def _quantize(fused: Path, out: Path, work: Path, calibration: list[dict[str, np.ndarray]] | None = None
              ) -> list[str]:
    """``quant_pre_process``, activation smoothing when there is ``calibration`` data
    (:mod:`electra.export.smoothing`), then dynamic int8 of MatMul/Attention weights, :data:`TENSOR_FP32_NODES`
    left out of it and, of those, :data:`TENSOR_ROW_NODES` made per-row int8. Returns the smoothed nodes' names."""
    pre = work / "pre.onnx"
    _pre_process(fused, pre)
    smoothed: list[str] = []
    if calibration:
        smoothed = smooth_graph(pre, work / "smoothed.onnx", calibration, skip=TENSOR_FP32_NODES)
        pre = work / "smoothed.onnx"
    tensor = work / "tensor.onnx"
    _quantize_tensor(pre, tensor, TENSOR_FP32_NODES)
    _quantize_rows(tensor, out, only=TENSOR_ROW_NODES)
    return smoothed


def _quantize_rows(fused: Path, out: Path, block_size: int = ROW_BLOCK, only: tuple[str, ...] | None = None
                   ) -> list[str]:
    """Per-row int8: every MatMul with a constant 2-D weight (but :data:`FP32_NODES`; or, with ``only``, just those
    whose name contains one of its patterns) becomes onnxruntime's
    ``MatMulNBits`` with 8-bit weights (symmetric, per ``block_size`` input channels of each output column) and
    ``accuracy_level=4``: the activations are quantized to int8 at run time per row and block of
    ``block_size`` channels (MLAS' int8 kernels), so each sequence's result is independent of its batch mates and
    padding. The weights are quantized by onnxruntime's own kernel (``quantize_matmul_8bits``, what its
    ``MatMulNBitsQuantizer`` calls). Returns the names of the nodes quantized."""
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    model = onnx.load(str(fused))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    nodes, done = [], []
    for node in graph.node:
        init = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        chosen = any(p in node.name for p in only) if only is not None else not any(p in node.name for p in FP32_NODES)
        if init is None or len(init.dims) != 2 or not chosen:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(init).astype(np.float32)
        k, n = w.shape
        blocks = -(-k // block_size)
        if blocks * block_size != k:
            w = np.pad(w, ((0, blocks * block_size - k), (0, 0)))
        packed = np.zeros((n, blocks, block_size), dtype=np.uint8)
        scales = np.zeros((n, blocks), dtype=np.float32)
        quantize_matmul_8bits(packed, np.ascontiguousarray(w), scales, np.zeros((n, blocks), dtype=np.uint8),
                              block_size, n, k, True)
        name = node.input[1]
        graph.initializer.extend([numpy_helper.from_array(packed, name + "_Q8"),
                                  numpy_helper.from_array(scales, name + "_scales")])
        nodes.append(helper.make_node("MatMulNBits", [node.input[0], name + "_Q8", name + "_scales"],
                                      list(node.output), name=node.name + "_Q8", domain="com.microsoft", K=k, N=n,
                                      bits=8, block_size=block_size, accuracy_level=4))
        done.append(node.name)
    used = {i for nd in nodes for i in nd.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out))
    return done


def export_network(target: Target, out: Path, *, quantize: str | None = None, opset: int = DEFAULT_OPSET,
                   optimize: bool = True, calibration: str | Path | None = None) -> dict[str, Any]:
    """Export one network into ``out`` (model.onnx, onnx.json, tokenizer files); returns ``onnx.json``.
    ``calibration``: a text file (one input per line) for smoothing before ``int8-tensor``."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ElectraError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if calibration is not None and quantize != "int8-tensor":
        raise ElectraError("--calibration applies to --quantize int8-tensor only")
    batches = None
    if calibration is not None:
        if target.tokenizer is None:
            raise ElectraError(f"--calibration: {target.meta.get('source', 'the model')} has no tokenizer folder to "
                               "read the calibration text with (export a run or checkpoint saved with its tokenizer)")
        batches = calibration_batches(target.tokenizer, calibration,
                                      min((target.meta.get("spec") or {}).get("max_seq_len") or 128,
                                          target.graph.encoder.config.max_position_embeddings))
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ElectraError("ONNX export needs onnx and onnxruntime (pip install onnx onnxruntime)") from None
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"format": FORMAT, "version": 1, **target.meta, "opset": opset,
                            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]}
                                       for n in INPUTS],
                            "outputs": [{"name": n, "dtype": "int64" if n.endswith("_index") else "float32",
                                         "shape": _dims(n, target.meta["kind"], target.meta.get("task_type"))}
                                        for n in target.graph.outputs],
                            "min_sequence_length": target.min_sequence,
                            "max_sequence_length": target.graph.encoder.config.max_position_embeddings,
                            "model": dataclasses.asdict(target.graph.encoder.config)}
    with tempfile.TemporaryDirectory(prefix="electra-onnx-") as tmp:
        work = Path(tmp)
        current = work / "raw.onnx"
        _torch_export(target, current, opset)
        parity = {"export": compare(current, target)}
        if _worst(parity["export"]) > FP32_TOLERANCE:
            raise ElectraError(f"{out}: exported graph differs from PyTorch by {_worst(parity['export']):.2e} "
                               f"(tolerance {FP32_TOLERANCE})")
        meta["fused_operators"] = {}
        if optimize:
            fused = work / "fused.onnx"
            meta["fused_operators"] = _fuse(current, fused, target, multi_head=quantize == "int8")
            parity["fused"] = compare(fused, target)
            if _worst(parity["fused"]) > FP32_TOLERANCE:
                meta["optimizer"] = f"not used: fused graph off by {_worst(parity['fused']):.2e}"
            else:
                current = fused
                meta["optimizer"] = "onnxruntime.transformers bert fusions"
        meta["quantization"] = None
        if quantize is not None:
            quant = work / "int8.onnx"
            if quantize == "int8":
                _quantize_rows(current, quant)
                meta["quantization"] = (f"int8 per row: MatMulNBits, 8-bit weights and run-time int8 activations "
                                        f"per row and block of {ROW_BLOCK} channels (fp32: {', '.join(FP32_NODES)})")
            else:
                smoothed = _quantize(current, quant, work, batches)
                fp32 = [p for p in TENSOR_FP32_NODES if p not in TENSOR_ROW_NODES]
                meta["quantization"] = ("int8 per tensor: dynamic quantization, per-channel weights (MatMul, "
                                        f"Attention; per row: {', '.join(TENSOR_ROW_NODES)}; fp32: {', '.join(fp32)})")
                if batches:
                    meta["quantization"] += (f"; SmoothQuant alpha {ALPHA} on {len(smoothed)} LayerNorm-fed nodes, "
                                             f"calibrated on {sum(len(b['input_ids']) for b in batches)} lines of "
                                             f"{Path(calibration).name}")
                    meta["smoothed_nodes"] = smoothed
            parity["int8"] = compare(quant, target)
            current = quant
        meta["parity"] = parity
        shutil.copyfile(current, out / MODEL_FILE)
    if target.tokenizer is not None:
        for f in Path(target.tokenizer).iterdir():
            if f.is_file():
                shutil.copyfile(f, out / f.name)
    (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta


def export_onnx(source: str | Path, out: str | Path, *, quantize: str | None = None, opset: int = DEFAULT_OPSET,
                optimize: bool = True, calibration: str | Path | None = None) -> list[Path]:
    """Export a checkpoint/run folder (discriminator + generator) or a fine-tuned run; returns the folders."""
    out = Path(out)
    written = []
    for target in targets(source):
        folder = out / target.name if target.name else out
        export_network(target, folder, quantize=quantize, opset=opset, optimize=optimize, calibration=calibration)
        written.append(folder)
    return written


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``onnx.json`` of an exported folder, with one-line errors."""
    file = Path(folder) / META_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ElectraError(f"{folder}: not an ONNX export (no {META_FILE})") from None
    except json.JSONDecodeError as e:
        raise ElectraError(f"{file}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ElectraError(f"{file}: not an electra ONNX description (expected \"format\": \"{FORMAT}\")")
    if not (Path(folder) / MODEL_FILE).is_file():
        raise ElectraError(f"{folder}: no {MODEL_FILE}")
    return meta
