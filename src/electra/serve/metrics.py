"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("electra_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram("electra_request_duration_seconds", "request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("electra_errors", "error answers by error_type", ["error_type"], registry=r)
        self.batch_size = Histogram("electra_batch_size", "inputs per forward pass", ["model", "task"],
                                    buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("electra_batch_tokens", "padded tokens per forward pass", ["model", "task"],
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.inference = Histogram("electra_inference_duration_seconds", "time of one batched forward pass",
                                   ["model", "task"], buckets=LATENCY_BUCKETS, registry=r)
        self.queued = Gauge("electra_queue_inputs", "inputs waiting for a batch", ["model", "task"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
