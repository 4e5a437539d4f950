"""Load the models and run the app under uvicorn (``electra serve``).

uvicorn's graceful shutdown: on SIGINT/SIGTERM it stops accepting connections, lets the requests in flight
finish (at most ``graceful_seconds``), then the app's lifespan ends, which lets the batchers finish their
queues before the process exits.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from electra.errors import ElectraError


def prefer_passive_omp() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set: idle OpenMP threads sleep instead of spinning, so torch's pool
    leaves the event loop (and onnxruntime's pool) its CPU between batches. Only effective before torch is
    imported, which is why this module imports torch lazily."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_model_specs(specs: list[str]) -> list[tuple[str, str]]:
    """``[NAME=]PATH`` -> (name, path); a name defaults to the folder's name (its parent's for ``best/``)."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            p = Path(spec.rstrip("/"))
            name, path = (p.parent.name if p.name == "best" else p.name) or "model", spec
        if not name or not path:
            raise ElectraError(f"--model {spec!r}: expected [NAME=]PATH")
        if any(n == name for n, _ in out):
            raise ElectraError(f"--model {spec!r}: the name {name!r} is taken; give NAME=PATH")
        out.append((name, path))
    return out


def serve(model_specs: list[str], host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
          precision: str = "fp32", limits: object | None = None, threads: int | None = None,
          graceful_seconds: float = 30.0, log_level: str = "info") -> None:
    """Load every ``[NAME=]PATH`` and serve them until interrupted."""
    prefer_passive_omp()
    import torch
    import uvicorn

    from electra.inference import load_model
    from electra.serve.app import create_app

    if threads:
        torch.set_num_threads(threads)
    specs = parse_model_specs(model_specs)
    models = {}
    for name, path in specs:
        models[name] = load_model(path, backend, precision, threads)
        print(f"electra serve: {name} = {path} ({models[name].kind}, {backend} {precision})", file=sys.stderr)
    app = create_app(models, limits)
    print(f"electra serve: http://{host}:{port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=graceful_seconds, lifespan="on")
