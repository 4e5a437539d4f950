"""Limits of the service and the errors it answers, decided in one place.

Every error is JSON ``{"error": message, "error_type": kind}`` (text-embeddings-inference's shape):

======  =====================  ===============================================================================
status  error_type             when
======  =====================  ===============================================================================
400     malformed_json         the body is not JSON (or not UTF-8)
404     not_found              no such route, or no served model does this task
405     method_not_allowed     e.g. GET on a POST route
413     payload_too_large      the body is over ``max_body_bytes`` (answered with ``Connection: close`` once the rest
                               of the body, up to ``linger_bytes`` / ``linger_seconds``, is read and discarded:
                               :mod:`electra.serve.lingering`)
422     validation             wrong field types or names, too many inputs, an input over the token limit
                               (inputs are refused, never truncated or split), an unknown model, no [MASK]
429     overloaded             the model's queue already holds ``max_queue`` inputs (retry later)
500     backend                inference failed (logged by the server; no traceback goes to the client)
503     unavailable            the server is shutting down
======  =====================  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from electra.errors import ElectraError


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20  # 1 MiB
    max_inputs: int = 64  # inputs per request (``texts`` / ``inputs``)
    max_input_tokens: int | None = None  # per input; None: the model's maximum sequence length
    max_batch_tokens: int = 16384  # padded tokens (inputs x longest) per forward pass
    max_batch_size: int = 64  # inputs per forward pass
    max_wait_ms: float = 5.0  # how long a first input waits for others to share its batch
    max_queue: int = 1024  # inputs waiting per model and task before 429
    linger_bytes: int = 64 << 20  # an answer sent before its request's body arrived: discard up to this much of it
    linger_seconds: float = 5.0  # ... for at most this long, then close (see electra.serve.lingering)

    def check(self) -> Limits:
        for name, value in self.__dict__.items():
            least = 0 if name in ("max_wait_ms", "linger_bytes", "linger_seconds") else 1
            if value is not None and value < least:
                raise ElectraError(f"--{name.replace('_', '-')} {value}: must be >= {least}")
        return self


class ApiError(Exception):
    """An error answered as ``{"error", "error_type"}`` with an HTTP status."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


def malformed(message: str) -> ApiError:
    return ApiError(400, "malformed_json", message)


def invalid(message: str) -> ApiError:
    return ApiError(422, "validation", message)


def too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body is {size} bytes; at most {limit}")


def overloaded(queued: int, adding: int, limit: int) -> ApiError:
    return ApiError(429, "overloaded", f"the model's queue holds at most {limit} inputs: {queued} are waiting "
                                       f"and this request brings {adding}; retry later")


def unavailable() -> ApiError:
    return ApiError(503, "unavailable", "the server is shutting down")


STATUS_TYPES = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                422: "validation", 429: "overloaded", 500: "backend", 503: "unavailable"}
