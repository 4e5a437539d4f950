"""Start ``electra serve`` in a subprocess on a free loopback port, wait until it is ready, stop it; tiny runs of
the kinds the other fixtures lack (a reranker, a classifier whose labels have names)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from electra.tasks.heads import ClassificationHead, RankingHead
from electra.tasks.runner import TaskModel, load_encoder, run_tokenizer_dir, save_task_model

ROOT = Path(__file__).resolve().parents[1]
SST2_NAMES = {"0": "negative", "1": "positive"}


def _run(ckpt: Path, out: Path, head: torch.nn.Module, spec: dict, seed: int) -> Path:
    """A fine-tuned run folder (``out/best``) of ``ckpt``'s encoder with ``head`` at non-trivial random weights."""
    encoder = load_encoder(ckpt)
    torch.manual_seed(seed)
    for p in head.parameters():  # larger than the 0.02 init, so scores differ clearly between inputs
        torch.nn.init.normal_(p, std=0.5)
    save_task_model(TaskModel(encoder, head, spec), out / "best", run_tokenizer_dir(ckpt))
    return out


def tiny_ranking_run(ckpt: Path, out: Path, task: str = "mutual", max_seq_len: int = 48) -> Path:
    """A reranker run as ``electra finetune --task mutual`` writes it (spec keys of tasks/ranking.py)."""
    cfg = load_encoder(ckpt).config
    spec = {"task": task, "loss": "choice", "metric": "r1", "max_seq_len": max_seq_len, "temperature": 0.1,
            "pretrained": str(ckpt), "lists_per_batch": 1, "random_init": False}
    return _run(ckpt, out, RankingHead(cfg, loss="choice"), spec, 11)


def tiny_sst2_run(ckpt: Path, out: Path, stored_names: bool = True) -> Path:
    """An SST-2 run whose spec names its labels as ``electra finetune`` writes them (``label_names`` in label
    order: "0" negative, "1" positive); ``stored_names=False``: as runs written before names were stored."""
    cfg = load_encoder(ckpt).config
    spec = {"task": "sst2", "labels": ["0", "1"], "regression": False, "max_seq_len": 128}
    if stored_names:
        spec["label_names"] = list(SST2_NAMES.values())
    return _run(ckpt, out, ClassificationHead(cfg, num_labels=2, style="transformers"), spec, 12)


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(models: list[str], log: Path, *options: str, ready_timeout: float = 120) -> Iterator[Server]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("OMP_NUM_THREADS", "1")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "electra", "serve", "--model", *models, "--port", str(port),
                                 "--threads", "1", "--log-level", "warning", *options],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {ready_timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
