"""onnxruntime sessions on exported graphs: the thread and spinning settings in one place.

onnxruntime is an optional dependency (the ``onnx`` extra), imported when a session is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from electra.errors import ElectraError


def ort_session(path: str | Path, threads: int = 1) -> Any:
    """A CPU ``InferenceSession`` on ``path``: ``threads`` intra-op threads that sleep instead of spinning when
    idle (two spinning pools on a small CPU slow each other many times over), one inter-op thread, every graph
    optimization."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ElectraError("--backend onnx needs onnxruntime (pip install onnxruntime)") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def feeds(session: Any, arrays: dict[str, Any]) -> dict[str, Any]:
    """``arrays`` cut to the inputs the graph has: an input the network never reads (``token_type_ids`` of a model
    with no token types, DeBERTa-v3) is dropped from the graph by the exporter."""
    return {i.name: arrays[i.name] for i in session.get_inputs()}
