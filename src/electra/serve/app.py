"""The routes of ``electra serve``, with their request types declared once.

=====================  ======================================================================================
``GET /``              the web page (``static/index.html``)
``GET /health``        200 while the process serves
``GET /ready``         200 when every model is loaded and warmed up, 503 while shutting down
``GET /info``          models (name, kind, tasks, labels, label_names, backend, precision, token limit, the
                       tokenizer's mask token) and limits
``GET /metrics``       Prometheus text format
``POST /v1/detect``    ``{"text"}`` or ``{"texts": [...]}`` -> what ``electra detect --json`` prints
``POST /v1/fill``      ``{"text" | "texts", "top_k"}`` -> fill-mask candidates ``sequence, score, token, token_str``
                       (masks written ``[MASK]``, or as the model's own mask token, e.g. ``<mask>``)
``POST /v1/correct``   ``{"text" | "texts"}`` + options -> ``{text, edits: [{start, end, original, replacement,
                       p_replaced}]}`` (pre-trained models with a generator; see :class:`CorrectRequest`)
``POST /v1/rescore``   ``{"candidates": [...]}`` or ``{"lists": [[...], ...]}``, ``"method"`` rtd | pll | pll-word
                       -> ``{scores, ranking}`` per list (zero-shot sentence scores; ranking: indices, best first)
``POST /v1/classify``  ``{"text" | "texts"}`` (a pair as ``[a, b]``) -> ``[{label, score}, ...]`` best first (a
                       label by its name where the run names it, e.g. SST-2's ``positive``)
``POST /v1/answer``    ``{"question", "context"}`` or ``{"inputs": [{...}, ...]}`` -> ``answer, score, start, end``
``POST /v1/tag``       ``{"text" | "texts"}`` -> ``[{entity_group, score, word, start, end}, ...]``
``POST /v1/rank``      ``{"context", "candidates": [...]}`` or ``{"inputs": [{...}, ...]}`` -> ``{scores, ranking}``
                       (a fine-tuned reranker's score per candidate, in input order; ranking: indices, best first)
=====================  ======================================================================================

Every POST takes an optional ``"model"`` (a served model's name; default: the first that does the task).
``"text"`` gives one result, ``"texts"``/``"inputs"`` a list of results in order. Errors: see
:mod:`electra.serve.limits`; a response sent before the request's body has arrived: :mod:`electra.serve.lingering`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from electra.errors import ElectraError
from electra.generation.pair import roles
from electra.inference import LoadedModel
from electra.pipelines import CORRECT_OPTIONS, Pipeline, corrector_defaults, pipelines_for
from electra.serve.batching import Batcher
from electra.serve.limits import STATUS_TYPES, ApiError, Limits, invalid, malformed, too_large, unavailable
from electra.serve.lingering import LingeringBody
from electra.serve.metrics import Metrics

log = logging.getLogger("electra.serve")
PAGE = Path(__file__).parent / "static" / "index.html"
# "[MASK]" is our marker for any tokenizer (electra.generation.fill.mask_markers writes the model's own token)
WARM_UP = {"detect": "hello world", "fill": "hello [MASK]", "correct": "hello world",
           "rescore": ["hello world", "world hello"], "classify": "hello world",
           "tag": "hello world", "answer": {"question": "what?", "context": "hello world"},
           "rank": {"context": "hello", "candidates": ["hello world", "world hello"]}}
CORRECT_DEFAULTS = corrector_defaults()


# ---- request types ---------------------------------------------------------------------------------------
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())
    model: str | None = None

    def options(self) -> dict[str, Any]:
        """What ``Pipeline.prepare`` takes besides the input."""
        return {}


class TextRequest(_Request):
    text: str | None = None
    texts: list[str] | None = None


class FillRequest(TextRequest):
    top_k: int = Field(5, ge=1, le=50)

    def options(self) -> dict[str, Any]:
        return {"top_k": self.top_k}


class CorrectRequest(TextRequest):
    """Detect-and-correct options; each defaults to :class:`electra.generation.Corrector`'s own default."""

    threshold: float = Field(CORRECT_DEFAULTS["threshold"], ge=0, le=1)
    min_generator_prob: float = Field(CORRECT_DEFAULTS["min_generator_prob"], ge=0, le=1)
    max_new_p: float = Field(CORRECT_DEFAULTS["max_new_p"], ge=0, le=1)
    top_k: int = Field(CORRECT_DEFAULTS["top_k"], ge=1, le=50)
    rounds: int = Field(CORRECT_DEFAULTS["rounds"], ge=1, le=5)
    keep_names: bool = CORRECT_DEFAULTS["keep_names"]

    def options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CORRECT_OPTIONS}


class ClassifyRequest(_Request):
    text: str | list[str] | None = None  # a sentence pair as [a, b]
    texts: list[str | list[str]] | None = None


class QAInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    question: str
    context: str


class AnswerRequest(_Request):
    question: str | None = None
    context: str | None = None
    inputs: list[QAInput] | None = None


class RescoreRequest(_Request):
    candidates: list[str] | None = None  # one list
    lists: list[list[str]] | None = None
    method: Literal["rtd", "pll", "pll-word"] = "rtd"

    def options(self) -> dict[str, Any]:
        return {"method": self.method}


class RankInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    context: str | None = None  # absent or "": the candidates alone (as asr-nbest runs are trained)
    candidates: list[str]


class RankRequest(_Request):
    context: str | None = None
    candidates: list[str] | None = None  # one input
    inputs: list[RankInput] | None = None


def _rank_inputs(req: RankRequest) -> tuple[list[Any], bool]:
    single = req.candidates is not None or req.context is not None
    if single == (req.inputs is not None) or single and req.candidates is None:
        raise invalid("give \"candidates\" (and an optional \"context\") for one input, or \"inputs\": "
                      "[{\"context\", \"candidates\"}, ...]")
    if single:
        return [{"context": req.context, "candidates": req.candidates}], True
    return [i.model_dump() for i in req.inputs], False


def _list_size(task: str, value: Any) -> int:
    """How many candidates an input of a list task (rescore, rank) holds; 0 for other tasks."""
    return len(value) if task == "rescore" else len(value["candidates"]) if task == "rank" else 0


def _candidate_lists(req: RescoreRequest) -> tuple[list[Any], bool]:
    if (req.candidates is None) == (req.lists is None):
        raise invalid("give exactly one of \"candidates\" (one list) and \"lists\" (a list of lists)")
    return ([req.candidates], True) if req.candidates is not None else (list(req.lists), False)


def _texts(req: TextRequest | ClassifyRequest) -> tuple[list[Any], bool]:
    if (req.text is None) == (req.texts is None):
        raise invalid("give exactly one of \"text\" (one input) and \"texts\" (a list of inputs)")
    return ([req.text], True) if req.text is not None else (list(req.texts), False)


def _qa_inputs(req: AnswerRequest) -> tuple[list[Any], bool]:
    single = req.question is not None or req.context is not None
    if single == (req.inputs is not None) or single and (req.question is None or req.context is None):
        raise invalid("give \"question\" and \"context\" (one input) or \"inputs\": [{\"question\", \"context\"}]")
    if single:
        return [{"question": req.question, "context": req.context}], True
    return [i.model_dump() for i in req.inputs], False


ROUTES: dict[str, tuple[type[_Request], Callable[[Any], tuple[list[Any], bool]]]] = {
    "detect": (TextRequest, _texts), "fill": (FillRequest, _texts), "correct": (CorrectRequest, _texts),
    "rescore": (RescoreRequest, _candidate_lists), "classify": (ClassifyRequest, _texts),
    "answer": (AnswerRequest, _qa_inputs), "tag": (TextRequest, _texts), "rank": (RankRequest, _rank_inputs)}
# the pre-trained pair's routes, then one per task family (electra.tasks.registry: Family.pipeline, .endpoint)
ENDPOINTS = ("/", "/health", "/ready", "/info", "/metrics", *(f"/v1/{task}" for task in ROUTES))


# ---- the app -------------------------------------------------------------------------------------------
class Service:
    """The served models, their batchers and the shared inference thread."""

    def __init__(self, models: dict[str, LoadedModel], limits: Limits, metrics: Metrics):
        self.models, self.limits, self.metrics = models, limits, metrics
        self.mask_tokens = {name: roles(m.tokenizer).mask for name, m in models.items()}
        self.pipelines: dict[tuple[str, str], Pipeline] = {}
        for name, m in models.items():
            for task, p in pipelines_for(m, limits.max_input_tokens).items():
                self.pipelines[(name, task)] = p
        self.batchers: dict[tuple[str, str], Batcher] = {}
        self.executor: ThreadPoolExecutor | None = None
        self.ready = False
        self.stopping = False

    async def start(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="electra-inference")
        loop = asyncio.get_running_loop()
        for key, p in self.pipelines.items():
            await loop.run_in_executor(self.executor, p, [WARM_UP[key[1]]])
            self.batchers[key] = Batcher(key[0], p, self.executor, self.limits, self.metrics)
            self.batchers[key].start()
        self.ready = True

    async def stop(self) -> None:
        self.stopping, self.ready = True, False
        for b in self.batchers.values():
            await b.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def pick(self, task: str, name: str | None) -> tuple[str, Batcher]:
        if self.stopping:
            raise unavailable()
        if name is not None:
            if (name, task) not in self.batchers:
                doing = [n for (n, t) in self.batchers if t == task]
                raise invalid(f"model {name!r} does not serve {task}; models that do: {doing or 'none'}")
            return name, self.batchers[(name, task)]
        for (n, t), b in self.batchers.items():
            if t == task:
                return n, b
        raise ApiError(404, "not_found", f"no served model does {task}")

    def info(self) -> dict[str, Any]:
        models = []
        for name, m in self.models.items():
            tasks = [t for (n, t) in self.pipelines if n == name]
            limit = next(p.max_tokens for (n, _), p in self.pipelines.items() if n == name)
            names = dict(zip(m.labels, m.label_names))
            models.append({"name": name, "kind": m.kind, "tasks": tasks, "labels": m.label_names,
                           "label_names": {k: v for k, v in names.items() if k != v}, "task": m.spec.get("task"),
                           "backend": m.backend, "precision": m.precision, "max_input_tokens": limit,
                           "mask_token": self.mask_tokens[name], "source": m.source})
        return {"models": models, "limits": dict(self.limits.__dict__)}


async def read_json(request: Request, limit: int) -> Any:
    """The body parsed as JSON, refused past ``limit`` bytes (by Content-Length, or while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise malformed(f"body is not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise malformed(f"body is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise malformed("body is nested too deeply") from None


def validation_message(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(x) for x in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}" + (f" ({len(e.errors())} errors)" if len(e.errors()) > 1 else "")


class MetricsMiddleware:
    """Counts requests by endpoint and status and times them (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = [500]
        start = time.perf_counter()

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def create_app(models: dict[str, LoadedModel], limits: Limits | None = None) -> FastAPI:
    """The FastAPI app serving ``models`` (name -> loaded model)."""
    limits = (limits or Limits()).check()
    metrics = Metrics()
    service = Service(models, limits, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        log.info("ready: %s", ", ".join(f"{n}/{t}" for n, t in service.batchers))
        yield
        await service.stop()  # uvicorn has let in-flight requests finish before this

    app = FastAPI(title="electra", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    page = PAGE.read_text(encoding="utf-8")

    def error(e: ApiError) -> JSONResponse:
        metrics.errors.labels(e.error_type).inc()
        headers = {"Retry-After": "1"} if e.status in (429, 503) else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return error(e)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = STATUS_TYPES.get(e.status_code, "not_found" if e.status_code < 500 else "backend")
        detail = e.detail if isinstance(e.detail, str) else "error"
        return error(ApiError(e.status_code, kind, f"{request.method} {request.url.path}: {detail}"))

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(ApiError(500, "backend", "internal error; the server log has the details"))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if not service.ready:
            raise unavailable() if service.stopping else ApiError(503, "unavailable", "warming up")
        return JSONResponse({"status": "ready"})

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return service.info()

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    async def handle(request: Request, task: str) -> JSONResponse:
        data = await read_json(request, limits.max_body_bytes)
        request_type, inputs_of = ROUTES[task]
        if not isinstance(data, dict):
            raise invalid("the body must be a JSON object")
        try:
            req = request_type.model_validate(data)
        except ValidationError as e:
            raise invalid(validation_message(e)) from None
        values, single = inputs_of(req)
        if not values:
            raise invalid("no inputs: the list is empty")
        if len(values) > limits.max_inputs:
            raise invalid(f"{len(values)} inputs; at most {limits.max_inputs} per request")
        if (most := max(_list_size(task, v) for v in values)) > limits.max_inputs:
            raise invalid(f"a list of {most} candidates; at most {limits.max_inputs} per list")
        _, batcher = service.pick(task, req.model)
        options = req.options()
        items = []
        for i, v in enumerate(values):
            try:
                items.append(batcher.pipeline.prepare(v, **options))
            except ElectraError as e:
                raise invalid(str(e) if single else f"input {i}: {e}") from None
        results = await batcher.submit(items)
        return JSONResponse(results[0] if single else results)

    def route(task: str) -> Callable:
        async def endpoint(request: Request) -> JSONResponse:
            return await handle(request, task)

        return endpoint

    for task in ROUTES:
        app.add_api_route(f"/v1/{task}", route(task), methods=["POST"], name=task)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(LingeringBody, max_bytes=limits.linger_bytes, max_seconds=limits.linger_seconds)  # outermost
    return app
