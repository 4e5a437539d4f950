"""Load test: N concurrent clients against `electra serve` and against a naive server, side by side in one run.

Both servers run as subprocesses on 127.0.0.1 (loopback only: this script refuses any other address) and serve
the same fine-tuned classification run (``--model``, trained with ``--head transformers``):

  ours    ``electra serve --model RUN --backend B --precision P``: dynamic batching by tokens across requests
  naive   FastAPI with a plain ``def`` endpoint calling a ``transformers`` text-classification pipeline on the
          same weights: one forward pass per request, one at a time (transformers is not thread-safe), as most
          first servers are written

Each of ``--clients`` (default 100) asyncio clients (one keep-alive connection each, a minimal HTTP/1.1
client so the load generator stays cheap) posts one SST-2 dev sentence at a time to
``/v1/classify`` for ``--seconds`` per server; the servers take turns (``--turns`` each, alternating, so a noisy
machine slows both alike). Requests are bounded by time and count (``--max-requests``). Reported per server:
requests/s, p50/p95/p99 latency, errors (non-200 answers and failed connections); then the throughput ratio and
the p99 ratio. Final line: JSON.

  python benchmarks/serve_load.py --model runs/sst2-small --backend onnx --precision int8 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness

SST2_DEV = harness.DATA / "glue" / "SST-2" / "dev.tsv"
HOST = "127.0.0.1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="fine-tuned classification run (--head transformers)")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0, help="load time per server (split over --turns)")
    ap.add_argument("--turns", type=int, default=2, help="alternating turns per server")
    ap.add_argument("--max-requests", type=int, default=1_000_000, help="per turn, a bound besides time")
    ap.add_argument("--threads", type=int, default=2, help="inference threads of each server")
    ap.add_argument("--tsv", type=Path, default=SST2_DEV, help="sentences to send (column 0)")
    ap.add_argument("--serve-option", action="append", default=[], help="extra `electra serve` option (repeat)")
    ap.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


# ---- the naive server ---------------------------------------------------------------------------------------
def naive_server(run: str, port: int, threads: int) -> None:
    """FastAPI + a transformers pipeline, one forward pass per request (``def`` endpoint: FastAPI's threadpool,
    one request in the pipeline at a time)."""
    import torch
    import transformers
    import uvicorn
    from fastapi import Body, FastAPI

    from electra.tasks.runner import load_task_model, run_tokenizer_dir
    from inference_throughput import to_reference

    torch.set_num_threads(threads)
    ours = load_task_model(run)
    model = to_reference(ours)
    model.config.id2label = dict(enumerate(ours.spec.get("labels") or ["0", "1"]))
    from electra.tokenization import load_tokenizer

    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=load_tokenizer(run_tokenizer_dir(run)),
                                               unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                               cls_token="[CLS]", mask_token="[MASK]")
    pipe = transformers.pipeline("text-classification", model=model, tokenizer=tok, device="cpu", top_k=None)
    # transformers is not thread-safe: its first call registers output classes (two threads at once raised
    # "already registered as pytree node") and the fast tokenizer's truncation setting is shared state. So one
    # warm-up call at start-up and one lock around the pipeline, as a correct naive server must have.
    pipe("warm up", truncation=True, max_length=128)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/classify")
    def classify(payload: dict = Body(...)) -> list:  # noqa: B008 - FastAPI's way of declaring a body
        with lock:
            return pipe(payload["text"], truncation=True, max_length=128)

    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


# ---- running servers ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, log: Path, ready: str = "/health") -> subprocess.Popen:
    """Start a server subprocess and wait until ``ready`` answers 200 (``electra serve``: ``/ready`` once every
    model is loaded and warmed up)."""
    import httpx

    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "PYTHONPATH": os.pathsep.join([str(harness.ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=harness.ROOT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {cmd[:4]} exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}{ready}", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server {cmd[:4]} did not start:\n{log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- the load --------------------------------------------------------------------------------------------------
class Connection:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams: a load generator must cost the machine much
    less than the server it measures (``httpx`` spends milliseconds of CPU per request, which on a 2-core
    machine made the clients, not the servers, the bottleneck)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed by the server")
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        data = await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1]), data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def load(url: str, texts: list[str], clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` loops posting one text each until ``seconds`` pass or ``max_requests`` were sent."""
    if not url.startswith(f"http://{HOST}:"):
        raise SystemExit(f"{url}: this load test only targets {HOST}")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = time.perf_counter() + seconds
    bodies = [json.dumps({"text": t}).encode() for t in texts]

    async def one_client(k: int) -> None:
        nonlocal sent
        conn, i = Connection(port), k
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            body = bodies[i % len(bodies)]
            i += clients
            t = time.perf_counter()
            try:
                status, data = await asyncio.wait_for(conn.post("/v1/classify", body), 120)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                await conn.close()
                continue
            if status != 200:
                errors.append(f"HTTP {status}: {data[:200].decode(errors='replace')}")
                continue
            latencies.append(time.perf_counter() - t)
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    return {"latencies": latencies, "errors": errors, "elapsed": time.perf_counter() - start}


def summary(turns: list[dict]) -> dict:
    lat = [x for t in turns for x in t["latencies"]]
    errors = [e for t in turns for e in t["errors"]]
    elapsed = sum(t["elapsed"] for t in turns)
    return {"requests": len(lat), "errors": len(errors), "first_errors": errors[:3],
            "requests_per_s": len(lat) / elapsed if elapsed else 0.0, "p50_ms": 1e3 * harness.percentile(lat, 0.5),
            "p95_ms": 1e3 * harness.percentile(lat, 0.95), "p99_ms": 1e3 * harness.percentile(lat, 0.99),
            "per_turn_requests_per_s": [len(t["latencies"]) / t["elapsed"] for t in turns]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.naive_server:
        naive_server(args.model, args.port, args.threads)
        return
    texts = [r[0] for r in harness.read_tsv(args.tsv)[1:]]
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    ours_port, naive_port = free_port(), free_port()
    ours_cmd = [sys.executable, "-m", "electra", "serve", "--model", f"m={args.model}", "--port", str(ours_port),
                "--backend", args.backend, "--precision", args.precision, "--threads", str(args.threads),
                "--log-level", "warning", *args.serve_option]
    naive_cmd = [sys.executable, str(Path(__file__).resolve()), "--naive-server", "--model", args.model, "--port",
                 str(naive_port), "--threads", str(args.threads)]
    servers = {"ours": (ours_cmd, ours_port), "naive": (naive_cmd, naive_port)}
    procs = {}
    try:
        for name, (cmd, port) in servers.items():
            procs[name] = start(cmd, port, logs / f"serve_load-{name}.log")
        results: dict[str, list[dict]] = {n: [] for n in servers}
        per_turn = args.seconds / args.turns
        for turn in range(args.turns):
            for name, (_, port) in servers.items():
                res = asyncio.run(load(f"http://{HOST}:{port}", texts, args.clients, per_turn, args.max_requests))
                results[name].append(res)
                print(f"turn {turn + 1}/{args.turns} {name}: {len(res['latencies'])} requests, "
                      f"{len(res['errors'])} errors", file=sys.stderr)
    finally:
        for p in procs.values():
            stop(p)
    report = {"clients": args.clients, "seconds_per_server": args.seconds, "turns": args.turns,
              "backend": args.backend, "precision": args.precision, "threads": args.threads,
              "model": args.model, "servers": {n: summary(r) for n, r in results.items()}}
    s = report["servers"]
    report["throughput_ratio"] = s["ours"]["requests_per_s"] / max(s["naive"]["requests_per_s"], 1e-9)
    report["throughput_ratio_paired"] = harness.paired(s["ours"]["per_turn_requests_per_s"],
                                                       s["naive"]["per_turn_requests_per_s"])
    report["p99_ratio"] = s["ours"]["p99_ms"] / s["naive"]["p99_ms"]
    print("\n" + harness.table(
        [("server", "<8"), ("requests", ">10"), ("req/s", ">9.1f"), ("p50 ms", ">9.0f"), ("p95 ms", ">9.0f"),
         ("p99 ms", ">9.0f"), ("errors", ">8")],
        [(n, r["requests"], r["requests_per_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["errors"])
         for n, r in s.items()]))
    print(f"ours / naive: throughput {report['throughput_ratio']:.2f}x (per turn, median "
          f"{report['throughput_ratio_paired']:.2f}x), p99 {report['p99_ratio']:.2f}x")
    harness.emit(report)


if __name__ == "__main__":
    main()
