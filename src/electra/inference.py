"""The CPU inference path of ``detect``, ``fill``, ``predict`` and ``serve``: one interface over two backends.

A :class:`Runner` maps a padded batch of int64 arrays (``input_ids``, ``attention_mask``, ``token_type_ids``)
to named outputs. Backends and precisions (``--backend``, ``--precision``):

=====  =========  ====================================================================================
torch  fp32       our modules as trained (SDPA, no mask for unpadded batches, a last layer computing only
                  the ``[CLS]`` row for classifiers)
torch  bf16       Linear and Embedding weights cast to bf16 once, LayerNorm and the head in fp32; only
                  where :func:`electra.training.precision.cpu_has_fast_bf16` (emulated bf16 is ~100x slower)
torch  int8       the encoder's Linear layers as :class:`RowInt8Linear`: int8 weights per output channel,
                  activations quantized per row (token) at run time, so no result depends on its batch mates;
                  the first block's FFN output in fp32, as the ONNX int8 export (:mod:`electra.export.onnx`)
onnx   fp32       onnxruntime on the fused graph of :mod:`electra.export.onnx`
onnx   int8       the same graph, int8 with activations quantized per row (``MatMulNBits``; the head in fp32);
                  a folder exported with ``--quantize int8-tensor`` (per tensor: faster, batch-dependent) runs too
=====  =========  ====================================================================================

:func:`load_model` reads a pre-trained checkpoint or run folder (a ``discriminator`` and, unless the checkpoint
has none, a ``generator`` runner), a fine-tuned task run (a ``task`` runner), or a folder written by ``electra
export --format onnx``. With ``--backend onnx`` a checkpoint or run is exported on the fly (into a temporary
folder, removed once the session has loaded it). :func:`as_task_model` makes a task runner look like a
:class:`TaskModel`, so the task code (QA decoding, tagging, classification scores) runs unchanged on any backend.

Threads: every runner uses ``torch.get_num_threads()`` threads; onnxruntime's pool is created without
spinning (``session.intra_op.allow_spinning=0``), so one busy-waiting pool never starves the other on a small
machine (two spinning pools on 2 cores were measured 10-25x slower; ``OMP_WAIT_POLICY=PASSIVE`` does the same
for torch's OpenMP pool and must be set before the process starts).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from electra.checkpoint import (
    check_tokenizer_fits,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
    tokenizer_dir,
)
from electra.config import EncoderConfig
from electra.errors import ElectraError
from electra.export.onnx import MODEL_FILE, export_onnx, read_meta
from electra.export.session import feeds as session_feeds
from electra.export.session import ort_session
from electra.tasks.classification import label_names
from electra.tasks.registry import family_of_head
from electra.tasks.runner import BEST_DIR, TASK_FILE, load_task_model, read_task_meta, run_tokenizer_dir
from electra.tokenization import load_tokenizer, special_tokens
from electra.training.precision import EMULATED_BF16_MESSAGE, cpu_has_fast_bf16

BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "bf16", "int8")
Arrays = dict[str, np.ndarray]


# ---- runners -------------------------------------------------------------------------------------------
class Runner:
    """A network: padded int64 inputs -> named numpy outputs. ``min_sequence``: pad shorter inputs to it (with
    ``pad_id``, the tokenizer's pad token, set when the model is loaded)."""

    outputs: tuple[str, ...] = ()
    min_sequence: int = 1
    pad_id: int = 0
    backend: str = ""
    precision: str = ""

    def __call__(self, batch: Arrays) -> Arrays:  # pragma: no cover - interface
        raise NotImplementedError


class TorchRunner(Runner):
    """``fn(batch of tensors) -> dict of tensors`` under ``torch.inference_mode``; outputs as fp32 numpy."""

    backend = "torch"

    def __init__(self, fn: Callable[[dict[str, Tensor]], dict[str, Tensor]], precision: str,
                 outputs: tuple[str, ...]):
        self.fn, self.precision, self.outputs = fn, precision, outputs

    def __call__(self, batch: Arrays) -> Arrays:
        with torch.inference_mode():
            out = self.fn({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()})
        return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in out.items()}


class OnnxRunner(Runner):
    """An onnxruntime session on one exported ``model.onnx`` (see :mod:`electra.export.onnx`)."""

    backend = "onnx"

    def __init__(self, folder: str | Path, threads: int | None = None):
        self.meta = read_meta(folder)
        self.session = ort_session(Path(folder) / MODEL_FILE, threads or torch.get_num_threads())
        self.outputs = tuple(o["name"] for o in self.meta["outputs"])
        self.min_sequence = int(self.meta.get("min_sequence_length", 1))
        self.precision = "int8" if self.meta.get("quantization") else "fp32"

    def __call__(self, batch: Arrays) -> Arrays:
        batch = pad_to(batch, self.min_sequence, self.pad_id)
        feeds = {k: np.ascontiguousarray(batch[k], dtype=np.int64) for k in
                 ("input_ids", "attention_mask", "token_type_ids")}
        return dict(zip(self.outputs, self.session.run(list(self.outputs), session_feeds(self.session, feeds))))


def pad_to(batch: Arrays, length: int, pad_id: int = 0) -> Arrays:
    """Right-pad every input to at least ``length`` positions: ``input_ids`` with ``pad_id``, the others with 0
    (the attention mask marks the padding as not real)."""
    seq = batch["input_ids"].shape[1]
    if seq >= length:
        return batch
    return {k: np.pad(v, ((0, 0), (0, length - seq)), constant_values=pad_id if k == "input_ids" else 0)
            for k, v in batch.items()}


# ---- torch precisions ----------------------------------------------------------------------------------
def check_precision(backend: str, precision: str) -> None:
    if backend not in BACKENDS:
        raise ElectraError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ElectraError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and backend == "onnx":
        raise ElectraError("--precision bf16: only with --backend torch (onnxruntime's CPU kernels have no bf16)")
    if precision == "bf16" and not cpu_has_fast_bf16():
        raise ElectraError(f"--precision bf16: {EMULATED_BF16_MESSAGE}; use fp32 or int8")


def cast_encoder(encoder: nn.Module, precision: str) -> nn.Module:
    """A copy of ``encoder`` for inference: bf16 Linear/Embedding weights (LayerNorm fp32) or int8 Linears."""
    if precision == "fp32":
        return encoder
    enc = copy.deepcopy(encoder).eval()
    if precision == "bf16":
        for module in enc.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.to(torch.bfloat16)
        return enc
    for name, module in list(enc.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and full not in INT8_FP32_LINEARS:
                setattr(module, child_name, RowInt8Linear(child))
    return enc


INT8_FP32_LINEARS = ("layers.0.ffn_out",)  # as FP32_NODES of the ONNX int8 export (electra.export.onnx)


class RowInt8Linear(nn.Module):
    """``nn.Linear`` in int8 with the activations quantized per row at run time: weights int8 symmetric per
    output channel; each row (token) of the input scaled by its own max |x| to int8, multiplied exactly in int32
    (``torch._int_mm``, oneDNN/VNNI), rescaled to fp32. A row's result depends on that row alone, never on its
    batch mates or the padding (``torch.ao`` dynamic quantization scales the whole batch by one number)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(1).clamp_min(1e-12) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(1, keepdim=True).clamp_min_(1e-12).div_(127)
        q = rows.div(scale).round_().to(torch.int8)
        y = torch._int_mm(q, self.weight_t).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*x.shape[:-1], self.out_features)


def _encode_fn(encoder: nn.Module, precision: str, cls_only: bool = False) -> Callable[[dict[str, Tensor]], Tensor]:
    """hidden states in fp32; int8 never takes the CLS-only path (it slices the fused QKV weight)."""
    enc = cast_encoder(encoder, precision)
    only = cls_only and precision != "int8"

    def run(b: dict[str, Tensor]) -> Tensor:
        hidden = enc(b["input_ids"], b.get("attention_mask"), b.get("token_type_ids"), cls_only=only)
        return hidden[:, :1].float() if cls_only and not only else hidden.float()

    return run


def torch_pretrained_runners(model: nn.Module, precision: str) -> dict[str, Runner]:
    """Discriminator and generator runners of an :class:`electra.modeling.Electra`, and ``embedder``: the
    discriminator's last hidden states (``hidden``), which :mod:`electra.scoring`'s ``similarity`` pools."""
    model = model.eval()
    disc, gen = model.discriminator, model.generator
    d_enc, g_enc = _encode_fn(disc.encoder, precision), _encode_fn(gen.encoder, precision)
    word = gen.encoder.embeddings.word_embeddings.weight

    def detect(b: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"logits": disc.head(d_enc(b))}

    def fill(b: dict[str, Tensor]) -> dict[str, Tensor]:
        hidden = g_enc(b)
        if "positions" in b:  # the cheap path: the vocabulary projection at the asked positions only
            hidden = hidden.gather(1, b["positions"][..., None].expand(-1, -1, hidden.shape[-1]))
        return {"logits": gen.head(hidden, word)}

    return {"discriminator": TorchRunner(detect, precision, ("logits",)),
            "generator": TorchRunner(fill, precision, ("logits",)),
            "embedder": TorchRunner(lambda b: {"hidden": d_enc(b)}, precision, ("hidden",))}


def torch_task_runner(model: nn.Module, precision: str) -> Runner:
    """A fine-tuned :class:`TaskModel`'s runner: encoder at ``precision``, head in fp32."""
    model = model.eval()
    enc = _encode_fn(model.encoder, precision, model.head.reads_cls_only)

    def run(b: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v for k, v in model.head(enc(b), b).items() if k != "loss"}

    return TorchRunner(run, precision, ("logits",))


# ---- loading -------------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """What a served or predicting model is: its runners, tokenizer and task description."""

    kind: str  # "pretrained", or a task family of electra.tasks.registry: "classification", "qa", "tagging", ...
    runners: dict[str, Runner]  # "discriminator" (+ "generator" if the checkpoint has one), or "task"
    tokenizer: Any
    spec: dict[str, Any] = field(default_factory=dict)  # the task run's spec (labels, window, ...)
    head: dict[str, Any] = field(default_factory=dict)  # head class and args
    config: Any = None  # EncoderConfig of the (task or discriminator) encoder
    source: str = ""
    backend: str = "torch"
    precision: str = "fp32"

    @property
    def labels(self) -> list[str]:
        return list(self.spec.get("labels") or [])

    @property
    def label_names(self) -> list[str]:
        """The labels as people read them, in label order (SST-2's "0", "1": negative, positive): a
        classification run's ``label_names``, or its task's table for runs written before names were stored
        (:func:`electra.tasks.classification.label_names`); other kinds: the labels."""
        return label_names(self.spec) if self.kind == "classification" else self.labels

    @property
    def max_sequence(self) -> int:
        return int(self.config.max_position_embeddings)


def _kind_of_head(head_class: str, source: str | Path) -> str:
    """A fine-tuned run's family (:mod:`electra.tasks.registry`), from its head class."""
    try:
        return family_of_head(head_class).name
    except ElectraError as e:
        raise ElectraError(f"{source}: {e}") from None


def load_model(path: str | Path, backend: str = "torch", precision: str = "fp32",
               threads: int | None = None) -> LoadedModel:
    """A checkpoint/run folder, a fine-tuned run, or an ONNX export folder, ready to run on ``backend``."""
    check_precision(backend, precision)
    path = Path(path)
    if (path / "onnx.json").is_file() or (path / "discriminator" / "onnx.json").is_file():
        if backend != "onnx":
            raise ElectraError(f"{path}: an ONNX export; run it with --backend onnx")
        return _load_onnx_folder(path, precision, threads)
    if backend == "onnx":

        tmp = Path(tempfile.mkdtemp(prefix="electra-onnx-"))
        try:
            export_onnx(path, tmp, quantize="int8" if precision == "int8" else None)
            loaded = _load_onnx_folder(tmp, precision, threads)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        loaded.source = str(path)
        return loaded
    return _load_torch(path, precision)


def _load_torch(path: Path, precision: str) -> LoadedModel:
    if (path / TASK_FILE).is_file() or (path / BEST_DIR / TASK_FILE).is_file():

        model = load_task_model(path)
        meta = read_task_meta(path)
        tok = run_tokenizer_dir(path)
        if tok is None:
            raise ElectraError(f"{path}: run has no tokenizer/ folder")
        kind = _kind_of_head(type(model.head).__name__, path)
        return _with_tokenizer(LoadedModel(kind, {"task": torch_task_runner(model, precision)}, None, model.spec,
                                           meta["head"], model.encoder.config, str(path), "torch", precision), tok)

    ckpt = resolve_checkpoint(path)
    tok = tokenizer_dir(ckpt)
    if tok is None:
        raise ElectraError(f"{ckpt}: checkpoint has no tokenizer/ folder")
    model = load_checkpoint(ckpt)
    runners = torch_pretrained_runners(model, precision)
    if not read_checkpoint_meta(ckpt).get("has_generator", True):  # its generator would be random weights
        del runners["generator"]  # as an ONNX export of such a checkpoint, which has no generator either
    return _with_tokenizer(LoadedModel("pretrained", runners, None, {}, {}, model.config.discriminator, str(path),
                                       "torch", precision), tok)


def _load_onnx_folder(path: Path, precision: str, threads: int | None) -> LoadedModel:
    folders = {"task": path} if (path / "onnx.json").is_file() else {
        n: path / n for n in ("discriminator", "generator") if (path / n / "onnx.json").is_file()}
    runners = {n: OnnxRunner(f, threads) for n, f in folders.items()}
    got = {r.precision for r in runners.values()}
    if got != {precision}:
        raise ElectraError(f"{path}: exported as {'/'.join(sorted(got))}, not --precision {precision} "
                           f"(export again{' with --quantize int8' if precision == 'int8' else ''})")
    first = next(iter(runners.values())).meta
    kind = first["kind"] if "task" in runners else "pretrained"
    loaded = LoadedModel(kind, runners, None, first.get("spec", {}), first.get("head", {}),
                         EncoderConfig(**first["model"]), str(path), "onnx", precision)
    return _with_tokenizer(loaded, next(iter(folders.values())))


def _with_tokenizer(loaded: LoadedModel, tokenizer: Path) -> LoadedModel:
    """``loaded`` with the tokenizer of folder ``tokenizer``, checked against the model's vocabulary, its pad id
    given to the runners."""
    tok = load_tokenizer(tokenizer)
    check_tokenizer_fits(tok, loaded.config.vocab_size, tokenizer, loaded.source)
    pad = special_tokens(tok).pad_id
    for runner in loaded.runners.values():
        runner.pad_id = pad
    loaded.tokenizer = tok
    return loaded


# ---- a runner as a task model ----------------------------------------------------------------------------
class RunnerTaskModel(nn.Module):
    """A task runner with the face of a :class:`electra.tasks.runner.TaskModel` (``forward(batch)`` ->
    tensors, ``spec``, ``encoder.config``, ``head``), for the task code's decoding and scoring."""

    def __init__(self, loaded: LoadedModel):
        super().__init__()
        self.runner = loaded.runners["task"]
        self.spec = loaded.spec
        self.encoder = _ConfigHolder(loaded.config)
        self.head = SimpleNamespace(**loaded.head.get("args", {}))  # joint, answerable, num_labels, ...

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        arrays = {k: batch[k].numpy() for k in ("input_ids", "attention_mask") if k in batch}
        tt = batch.get("token_type_ids")
        arrays["token_type_ids"] = tt.numpy() if tt is not None else np.zeros_like(arrays["input_ids"])
        return {k: torch.from_numpy(v) for k, v in self.runner(arrays).items()}


class _ConfigHolder(nn.Module):
    def __init__(self, config: Any):
        super().__init__()
        self.config = config


def as_task_model(loaded: LoadedModel) -> RunnerTaskModel:
    if "task" not in loaded.runners:
        raise ElectraError(f"{loaded.source}: a pre-trained checkpoint, not a fine-tuned task run")
    return RunnerTaskModel(loaded)


def load_task_runner(run: str | Path, backend: str, precision: str, kind: str) -> tuple[RunnerTaskModel, Any]:
    """A fine-tuned run of ``kind`` (classification, qa, tagging, ranking) as a task model on ``backend``, and its
    tokenizer."""
    loaded = load_model(run, backend, precision)
    if loaded.kind != kind:
        raise ElectraError(f"{run}: not a {kind} run (it is {loaded.kind})")
    return as_task_model(loaded), loaded.tokenizer
