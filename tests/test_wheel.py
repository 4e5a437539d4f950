"""The package as a user installs it: build the wheel and sdist, install the wheel with the serve and onnx extras
into a fresh venv (constrained by requirements.lock), and from outside the repository run ``electra --version``,
a tiny pre-train -> detect, and ``electra serve`` answering ``/health``, ``/v1/detect`` and the page."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "demo" / "en-wiki-sample.txt"

pytestmark = pytest.mark.slow


def sh(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fresh venv's bin/, a working folder outside the repository)."""
    tmp = tmp_path_factory.mktemp("wheel")
    start = time.perf_counter()
    sh(sys.executable, "-m", "build", "--outdir", tmp / "dist", ROOT, cwd=tmp)
    wheels = sorted((tmp / "dist").glob("electra-*.whl"))
    assert len(wheels) == 1 and len(sorted((tmp / "dist").glob("electra-*.tar.gz"))) == 1
    sh(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    bin_ = tmp / "venv" / "bin"
    sh(bin_ / "python", "-m", "pip", "install", "--quiet", f"{wheels[0]}[serve,onnx]", "-c",
       ROOT / "requirements.lock", cwd=tmp)
    print(f"\nbuilt and installed the wheel in {time.perf_counter() - start:.0f} s")
    work = tmp / "work"
    work.mkdir()
    return bin_, work


def test_pip_check_is_clean_in_the_wheels_venv(installed: tuple[Path, Path]) -> None:
    bin_, work = installed
    print(sh(bin_ / "python", "-m", "pip", "check", cwd=work))


def test_the_installed_command_reports_its_version(installed: tuple[Path, Path]) -> None:
    bin_, work = installed
    out = sh(bin_ / "electra", "--version", cwd=work)
    print(out)
    assert out.startswith("electra ") and "(torch " in out


def test_the_installed_package_pretrains_detects_and_serves(installed: tuple[Path, Path]) -> None:
    bin_, work = installed
    text = work / "text.txt"
    text.write_text("\n".join(SAMPLE.read_text(encoding="utf-8").splitlines()[:400]) + "\n", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    electra = bin_ / "electra"
    sh(electra, "tokenizer", "train", "--input", text, "--out", "tok", "--vocab-size", "800", cwd=work, env=env)
    sh(electra, "prepare", "--tokenizer", "tok", "--input", text, "--out", "data", "--quiet", cwd=work, env=env)
    sh(electra, "pretrain", "--data", "data", "--out", "run", "--preset", "tiny", "--max-steps", "4",
       "--batch-size", "4", "--no-progress", cwd=work, env=env)
    found = json.loads(sh(electra, "detect", "--model", "run", "--json", "the river flows", cwd=work, env=env))
    print("detect:", found)
    assert len(found["tokens"]) == len(found["replaced_prob"]) > 0
    port = free_port()
    server = subprocess.Popen([str(electra), "serve", "--model", "run", "--port", str(port)], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                time.sleep(0.5)
        else:
            pytest.fail("electra serve did not answer /health within 120 s")
        print("/health:", health)
        detected = post(f"{base}/v1/detect", {"text": "the river flows"})
        print("/v1/detect:", detected)
        assert detected["tokens"] and len(detected["tokens"]) == len(detected["replaced_prob"])
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:  # the page's static files came with the wheel
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=60)
