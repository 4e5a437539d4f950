"""Chinese end to end with a real multilingual encoder (multilingual-e5-small imported with ``import-hf``), all
through our own CLI: fine-tuning, continued RTD pre-training, held-out detection, correction, LCQMC, CMRC 2018.

    electra import-hf --bert ~/.cache/electra/multilingual-e5-small-q4 --out ckpt/e5      # once
    python benchmarks/chinese.py --model ckpt/e5 [--trimmed ckpt/e5-trimmed] [--work runs/chinese]
        [--only chnsenticorp,pretrain,detection,correction,finetune-continued,lcqmc,cmrc]
        [--train-limit 2000] [--epochs 1] [--lr 5e-5] [--batch 16] [--seq 128] [--bias-correction]
        [--pooling cls|mean] [--pretrain-minutes 20]
        [--eval-batches 16] [--threads 1] [--nice 19]

Steps (each one subprocess call of ``electra ...`` or ``benchmarks/correction.py``, run with ``--threads``
intra-op threads under ``nice -n --nice``; results merged into ``WORK/chinese.json``, so a step can be rerun alone):

1. ``chnsenticorp``: ``electra finetune --task chnsenticorp`` of ``--model`` (and ``--trimmed``) on a fixed random
   ``--train-limit`` training sentences, ``--epochs`` epochs, LR ``--lr``, batch ``--batch``, ``--seq`` tokens, no
   layer-wise LR decay and the dense->gelu->linear head (the throw-away ``transformers`` fine-tune the issue compares
   with: same LR, batch and data size; ``--bias-correction`` adds its Adam bias correction, which our fine-tuning
   leaves off by default as the official ELECTRA code does; ``--pooling mean`` the mean-pooled head it used);
   dev accuracy on all 1,200 dev sentences.
2. ``pretrain``: text slices written to ``WORK/text``: the first half of ``corpus/zh/zhwiki_00.txt`` (up to the last
   document boundary before the middle) + ``xiyouji.txt`` + the first ``--en-lines`` lines of ``corpus/en-sample.txt``
   for training; held out (never trained on): the second half of ``zhwiki_00.txt`` (from the first document boundary
   after the middle: the text ``benchmarks/correction.py --lang zh`` corrupts) and the first 60 documents of
   ``corpus/en/enwiki_04.txt`` (not in ``en-sample.txt``). ``electra prepare`` with the model's tokenizer, then
   ``electra pretrain --init-from MODEL`` (the ``continue`` recipe) for ``--pretrain-minutes`` at batch ``--batch`` x
   ``--seq``. A checkpoint with more embedding rows than tokenizer ids (multilingual-e5: 250,037 rows, 250,002 ids)
   is refused by ``pretrain --init-from``; a copy cut to the tokenizer's ids (the rows no token can reach) is
   trained instead (``WORK/model-fit``).
3. ``detection``: held-out detection (``electra.detection_eval`` as ``benchmarks/warm_start.py``: own generator's
   replacements and replacements from the training shards' unigram distribution; seed 1; ``--eval-batches`` x 32
   examples, each scored once) of the model before (step 0) and after continued RTD, on the Chinese and the English
   held-out text; the generator's accuracy at the masked positions there too. (The RTD run's last training-metrics
   row and its own end-of-run ``detection.json`` are kept by step 2.)
4. ``correction``: ``benchmarks/correction.py --lang zh`` (its defaults: 200 sentences, rate 0.1, thresholds
   0.5-0.95, headline 0.8) of the model before and after continued RTD.
5. ``finetune-continued``: step 1 again from the continued model.
6. ``lcqmc``: ``electra finetune --task lcqmc`` from the continued model trained on ``--train-limit`` pairs of LCQMC
   *dev* (the train split is not shared) and scored on the first ``--lcqmc-test-limit`` pairs of LCQMC *test*.
7. ``cmrc``: ``electra finetune --task cmrc2018`` from the continued model on the CMRC 2018 *trial* set (the only
   split shared), split by article into ``WORK/cmrc-data`` (10% dev, ``split_articles`` seed 0), ``--cmrc-epochs``,
   ``--cmrc-lr``, ``--cmrc-seq``; scored with the official script's EM/F1 by ``electra evaluate``.

``--arm scratch --scratch CKPT`` runs steps 5-7 from our own Chinese pair pre-trained from scratch instead (results
under ``.../scratch`` keys, folders ``WORK/*-scratch*``): the baseline the issue compares the encoder with.

Prints a table and a final JSON line. Wall-clock times are of this machine under its load (with ``--threads 1
--nice 19`` on a shared machine they are not speed figures).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import harness

DATA = harness.DATA
STEPS = ("chnsenticorp", "pretrain", "detection", "correction", "finetune-continued", "lcqmc", "cmrc")


# ---- running commands -------------------------------------------------------------------------------------------
class Runner:
    def __init__(self, threads: int, nice: int, log: Path) -> None:
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                    "RAYON_NUM_THREADS": str(threads)}
        self.prefix = ["nice", "-n", str(nice)] if nice else []
        self.log = log

    def __call__(self, *argv: object, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
        """Run one command (``electra`` from this venv, or a script with this interpreter); (result, seconds)."""
        args = [str(a) for a in argv]
        exe = [str(Path(sys.executable).with_name("electra"))] if args[0] == "electra" else [sys.executable]
        cmd = self.prefix + exe + args[1:] if args[0] == "electra" else self.prefix + exe + args
        print("$", " ".join(cmd), flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=harness.ROOT)
        seconds = time.perf_counter() - t
        with self.log.open("a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}rc={proc.returncode} {seconds:.0f}s\n\n")
        if check and proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(args[:2])} failed (rc {proc.returncode}): {' | '.join(tail)}")
        return proc, seconds


# ---- step 1 / 5 / 6 / 7: fine-tuning ---------------------------------------------------------------------------
def finetune_args(args: argparse.Namespace) -> list[object]:
    return ["--train-limit", args.train_limit, "--epochs", args.epochs, "--lr", args.lr, "--batch-size", args.batch,
            "--max-seq-len", args.seq, "--layerwise-decay", 1, "--head", "transformers", "--device", "cpu",
            "--quiet", *(["--bias-correction"] if args.bias_correction else []),
            *(["--pooling", args.pooling] if args.pooling else [])]


def chnsenticorp(run: Runner, model: Path, out: Path, args: argparse.Namespace) -> dict:
    _, seconds = run("electra", "finetune", "--task", "chnsenticorp", "--model", model,
                     "--data", DATA / "chnsenticorp", "--out", out, *finetune_args(args))
    res = json.loads((out / "results.json").read_text())
    return {"model": str(model), "dev_acc": dev_metric(res, "acc"), "minutes": round(seconds / 60, 1),
            "train_limit": args.train_limit, "epochs": args.epochs, "bias_correction": args.bias_correction,
            "pooling": args.pooling or "cls"}


def dev_metric(results: dict, name: str) -> float:
    """``name`` from a fine-tuning run's results.json (its dev metrics, wherever the task keeps them)."""
    for key in ("dev", "best", "metrics", "final"):
        if isinstance(results.get(key), dict) and name in results[key]:
            return float(results[key][name])
    if name in results:
        return float(results[name])
    found = re.search(rf'"(?:dev[/_])?{name}": ([0-9.]+)', json.dumps(results))
    if found is None:
        raise RuntimeError(f"results.json has no {name}: {json.dumps(results)[:300]}")
    return float(found.group(1))


def lcqmc(run: Runner, model: Path, work: Path, args: argparse.Namespace) -> dict:
    data = work / "lcqmc-data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.txt").write_text((DATA / "lcqmc" / "dev.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (data / "dev.txt").write_text((DATA / "lcqmc" / "test.txt").read_text(encoding="utf-8"), encoding="utf-8")
    out = work / f"lcqmc-{args.arm}"
    _, seconds = run("electra", "finetune", "--task", "lcqmc", "--model", model, "--data", data, "--out", out,
                     *finetune_args(args), "--dev-limit", args.lcqmc_test_limit)
    res = json.loads((out / "results.json").read_text())
    return {"model": str(model), "train": f"{args.train_limit} pairs of LCQMC dev",
            "scored_on": f"first {args.lcqmc_test_limit} pairs of LCQMC test", "acc": dev_metric(res, "acc"),
            "minutes": round(seconds / 60, 1), "bias_correction": args.bias_correction,
            "pooling": args.pooling or "cls"}


def cmrc(run: Runner, model: Path, work: Path, args: argparse.Namespace, tag: str = "") -> dict:
    """CMRC 2018 trial set split by article (10% dev, ``split_articles`` seed 0) into WORK/cmrc-data; with
    ``--bias-correction`` Adam bias correction in the fine-tuning (output WORK/cmrc-ARM``tag``)."""
    from electra.tasks.qa import split_articles

    data = work / "cmrc-data"
    data.mkdir(parents=True, exist_ok=True)
    trial = json.loads((DATA / "cmrc2018" / "cmrc2018_trial.json").read_text(encoding="utf-8"))
    train, dev = split_articles(trial, 0.1, 0)
    for name, part in (("train.json", train), ("dev.json", dev)):
        (data / name).write_text(json.dumps(part, ensure_ascii=False), encoding="utf-8")
    out = work / f"cmrc-{args.arm}{tag}"
    _, seconds = run("electra", "finetune", "--task", "cmrc2018", "--model", model, "--data", data / "train.json",
                     "--dev-file", data / "dev.json", "--out", out, "--epochs", args.cmrc_epochs, "--lr", args.cmrc_lr,
                     "--batch-size", args.batch, "--max-seq-len", args.cmrc_seq, "--device", "cpu", "--quiet",
                     *(["--bias-correction"] if args.bias_correction else []))
    proc, _ = run("electra", "evaluate", "--model", out, "--data", data / "dev.json", "--json")
    official = harness.last_json(proc.stdout)
    return {"model": str(model), "data": f"CMRC 2018 trial: {questions(train)} questions to train, {questions(dev)} "
            "(10% of the articles) scored", "em": official.get("EM"), "f1": official.get("F1"),
            "bias_correction": args.bias_correction, "official": official, "minutes": round(seconds / 60, 1)}


def questions(squad: dict) -> int:
    return sum(len(p["qas"]) for a in squad["data"] for p in a["paragraphs"])


# ---- step 2: continued RTD ---------------------------------------------------------------------------------------
def write_slices(text: Path, en_lines: int) -> dict[str, list[Path]]:
    """Training and held-out text (see the module docstring)."""
    text.mkdir(parents=True, exist_ok=True)
    zh = (DATA / "corpus" / "zh" / "zhwiki_00.txt").read_text(encoding="utf-8")
    half = len(zh) // 2  # correction.py --lang zh corrupts sentences of zh[half:]
    files = {"zhwiki-train.txt": zh[:zh.rfind("\n\n", 0, half)].strip() + "\n",
             "zhwiki-held.txt": zh[zh.find("\n\n", half):].strip() + "\n",
             "xiyouji.txt": (DATA / "corpus" / "zh" / "xiyouji.txt").read_text(encoding="utf-8"),
             "en-train.txt": "".join((DATA / "corpus" / "en-sample.txt").read_text(encoding="utf-8")
                                     .splitlines(keepends=True)[:en_lines])}
    en_docs = (DATA / "corpus" / "en" / "enwiki_04.txt").read_text(encoding="utf-8").split("\n\n")[:60]
    files["en-held.txt"] = "\n\n".join(en_docs).strip() + "\n"
    for name, body in files.items():
        if not (text / name).is_file() or (text / name).read_text(encoding="utf-8") != body:
            (text / name).write_text(body, encoding="utf-8")
    return {"train": [text / "zhwiki-train.txt", text / "xiyouji.txt", text / "en-train.txt"],
            "zh-held": [text / "zhwiki-held.txt"], "en-held": [text / "en-held.txt"]}


def fit_vocabulary(model: Path, out: Path) -> Path:
    """``model``, or a copy of it whose embedding rows are cut to its tokenizer's ids when it has more (see the
    module docstring); the copy is made once."""
    from electra.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
    from electra.config import ModelConfig
    from electra.modeling import Electra
    from electra.tokenization import load_tokenizer

    meta = read_checkpoint_meta(model)
    ids = load_tokenizer(model / "tokenizer").get_vocab_size()
    rows = meta["model"]["vocab_size"]
    if rows <= ids:
        return model
    if (out / "config.json").is_file():
        return out
    net = load_checkpoint(model)
    cut = Electra(ModelConfig.from_dict({**meta["model"], "vocab_size": ids}))
    cut.load_state_dict({k: v[:ids] if v.dim() and v.shape[0] == rows else v for k, v in net.state_dict().items()})
    extra = {k: v for k, v in meta.items() if k not in ("format", "version", "has_generator", "model")}
    save_checkpoint(cut, out, tokenizer_dir=model / "tokenizer", extra={**extra, "vocab_cut": [rows, ids]})
    print(f"{model}: {rows:,} embedding rows cut to the tokenizer's {ids:,} ids -> {out}")
    return out


def prepared(run: Runner, tokenizer: Path, inputs: list[Path], out: Path, seq: int) -> Path:
    if not (out / "meta.json").is_file():
        run("electra", "prepare", "--tokenizer", tokenizer, "--input", *inputs, "--out", out, "--max-seq-len", seq,
            "--workers", 0, "--quiet", "--overwrite")
    return out


def pretrain(run: Runner, model: Path, work: Path, args: argparse.Namespace) -> dict:
    slices = write_slices(work / "text", args.en_lines)
    start = fit_vocabulary(model, work / "model-fit")
    tok = start / "tokenizer"
    train = prepared(run, tok, slices["train"], work / "data-train", args.seq)
    held = prepared(run, tok, slices["zh-held"], work / "data-zh-held", args.seq)
    prepared(run, tok, slices["en-held"], work / "data-en-held", args.seq)
    out = work / "rtd"
    _, seconds = run("electra", "pretrain", "--init-from", start, "--data", train, "--held-out", held, "--out", out,
                     "--batch-size", args.batch, "--max-minutes", args.pretrain_minutes, "--log-every", 10,
                     "--device", "cpu", "--no-progress", "--overwrite")
    from electra.checkpoint import resolve_checkpoint

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return {"start": str(start), "run": str(out), "minutes": round(seconds / 60, 1),
            "steps": int(resolve_checkpoint(out).name.split("-")[-1]), "last_metrics": rows[-1] if rows else {},
            "detection_json": json.loads((out / "detection.json").read_text())}


# ---- step 3: held-out detection ---------------------------------------------------------------------------------
def detection(checkpoints: dict[str, Path], work: Path, batches: int, threads: int) -> dict:
    """Own-generator and unigram-replacement detection on the Chinese and English held-out shards."""
    import torch

    from electra.checkpoint import load_checkpoint
    from electra.data.pretraining_data import PretrainingData

    torch.set_num_threads(threads)
    train = work / "data-train"
    out: dict[str, dict] = {}
    for lang in ("zh", "en"):
        held = PretrainingData(work / f"data-{lang}-held", seed=0)
        unigram = harness.unigram_for(train, held, *held.other_special_ids)  # unk and any other special id
        n = min(batches, max(1, held.num_examples() // 32))  # each example scored once
        for name, ckpt in checkpoints.items():
            t = time.perf_counter()
            own, uni = harness.detection(load_checkpoint(ckpt), held, unigram, n)
            out[f"{name}/{lang}"] = {"checkpoint": str(ckpt), "tokens": own.tokens, "auc_own": own.auc,
                                     "auc_unigram": uni.auc, "recall_own": own.recall,
                                     "precision_own": own.precision, "generator_acc": own.mlm_accuracy,
                                     "seconds": round(time.perf_counter() - t)}
            print(f"{name:10} {lang}: {own.format()}\n{'':14}unigram: AUC {uni.auc:.3f}", flush=True)
    return out


# ---- step 4: correction -----------------------------------------------------------------------------------------
def correction(run: Runner, checkpoints: dict[str, Path], work: Path) -> dict:
    out = work / "correction-zh.json"
    models = [a for name, ckpt in checkpoints.items() for a in ("--model", f"{name}={ckpt}")]
    proc, seconds = run("benchmarks/correction.py", *models, "--lang", "zh", "--out", out)
    print(proc.stdout)
    return {"json": str(out), "minutes": round(seconds / 60, 1), "result": harness.last_json(proc.stdout)}


# ---- main -------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="multilingual-e5-small imported with import-hf --bert")
    ap.add_argument("--trimmed", type=Path, help="the same checkpoint after `electra trim-vocab` (step 1 only)")
    ap.add_argument("--work", type=Path, default=harness.ROOT / "runs" / "chinese")
    ap.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--bias-correction", action="store_true",
                    help="fine-tunes with Adam bias correction (as transformers' AdamW; ours defaults to none)")
    ap.add_argument("--pooling", choices=["cls", "mean"],
                    help="classification fine-tunes: what the head reads (default: finetune's, the first token)")
    ap.add_argument("--pretrain-minutes", type=float, default=20)
    ap.add_argument("--en-lines", type=int, default=2000, help="lines of corpus/en-sample.txt in the RTD data")
    ap.add_argument("--eval-batches", type=int, default=16, help="held-out batches of 32 examples")
    ap.add_argument("--lcqmc-test-limit", type=int, default=1000)
    ap.add_argument("--cmrc-epochs", type=float, default=1)
    ap.add_argument("--cmrc-lr", type=float, default=1e-4)
    ap.add_argument("--cmrc-seq", type=int, default=256)
    ap.add_argument("--arm", choices=["continued", "scratch"], default="continued",
                    help="finetune-continued, lcqmc, cmrc: fine-tune the continued model (default) or --scratch")
    ap.add_argument("--scratch", type=Path, help="--arm scratch: our own Chinese pair pre-trained from scratch")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of every command")
    ap.add_argument("--nice", type=int, default=19, help="nice level of every command (0: off)")
    args = ap.parse_args()
    steps = [s for s in args.only.split(",") if s]
    if unknown := sorted(set(steps) - set(STEPS)):
        raise SystemExit(f"chinese.py: --only {','.join(unknown)}: expected steps of {', '.join(STEPS)}")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    harness.set_threads(args.threads)
    run = Runner(args.threads, args.nice, work / "commands.log")
    results_file = work / "chinese.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}

    def save(key: str, value: object) -> None:  # merged into the file as it is now (steps may run side by side)
        results.update(json.loads(results_file.read_text()) if results_file.is_file() else {})
        for step in steps:  # a rerun replaces the step's earlier failure
            results.pop(f"error/{step}", None)
        results[key] = value
        results_file.write_text(json.dumps(results, indent=2) + "\n")

    def continued() -> Path:
        from electra.checkpoint import resolve_checkpoint
        return resolve_checkpoint(work / "rtd")

    def tuned_model() -> Path:  # what finetune-continued, lcqmc and cmrc fine-tune (--arm)
        if args.arm == "scratch":
            if args.scratch is None:
                raise SystemExit("chinese.py: --arm scratch needs --scratch CKPT")
            return args.scratch
        return continued()

    arm = "" if args.arm == "continued" else f"/{args.arm}"

    def start_model() -> Path:
        return fit_vocabulary(args.model, work / "model-fit")

    tag = ("+bias-correction" if args.bias_correction else "") + (f"+{args.pooling}" if args.pooling else "")
    for step in steps:
        try:
            if step == "chnsenticorp":
                arms = {"import": args.model, **({"trimmed": args.trimmed} if args.trimmed else {})}
                for name, model in arms.items():
                    save(f"chnsenticorp/{name}{tag}", chnsenticorp(run, model, work / f"chn-{name}{tag}", args))
            elif step == "pretrain":
                save("pretrain", pretrain(run, args.model, work, args))
            elif step == "detection":
                save("detection", detection({"step 0": start_model(), "continued": continued()}, work,
                                            args.eval_batches, args.threads))
            elif step == "correction":
                save("correction", correction(run, {"import": start_model(), "continued": continued()}, work))
            elif step == "finetune-continued":
                save(f"chnsenticorp/{args.arm}{tag}", chnsenticorp(run, tuned_model(), work / f"chn-{args.arm}{tag}",
                                                                    args))
            elif step == "lcqmc":
                save(f"lcqmc{arm}", lcqmc(run, tuned_model(), work, args))
            elif step == "cmrc":
                cmrc_tag = "+bias-correction" if args.bias_correction else ""
                save(f"cmrc{arm}{cmrc_tag}", cmrc(run, tuned_model(), work, args, cmrc_tag))
        except (RuntimeError, FileNotFoundError, KeyError) as e:  # one failing step does not stop the others
            print(f"{step}: {e}", flush=True)
            save(f"error/{step}", str(e))
    print_table(results)
    harness.emit(results)


def print_table(results: dict) -> None:
    print("\nChnSentiCorp dev accuracy (1,200 sentences)")
    for key, r in results.items():
        if key.startswith("chnsenticorp/"):
            print(f"  {key.split('/', 1)[1]:32} {r['dev_acc']:.4f}   {r['train_limit']} sentences x "
                  f"{r['epochs']:g} epoch, {r['minutes']} min")
    if "pretrain" in results:
        p = results["pretrain"]
        print(f"\ncontinued RTD: {p['steps']} steps in {p['minutes']} min; last metrics {p['last_metrics']}")
    if "detection" in results:
        print("\nheld-out detection (AUC own generator / unigram; generator accuracy at masked positions)")
        for key, r in results["detection"].items():
            print(f"  {key:14} {r['auc_own']:.3f} / {r['auc_unigram']:.3f}   gen acc {r['generator_acc']:.3f}   "
                  f"{r['tokens']:,} tokens")
    if "correction" in results:
        print("\ncorrection (zh; threshold 0.8, the default): detection AUC, det P/R, corr P/R, CER before->after")
        for name, r in results["correction"]["result"].items():
            zh = r.get("zh", {})
            for row in zh.get("rows", []):
                if row["threshold"] == 0.8:
                    print(f"  {name:10} {zh['det_auc']:.3f}  {row['det_p']:.3f}/{row['det_r']:.3f}  "
                          f"{row['corr_p'] if row['edits'] else '-':.5}/{row['corr_r']:.3f} ({row['edits']} edits)  "
                          f"{row['err_before']:.4f}->{row['err_after']:.4f}  (gen>={row['min_generator_prob']})")
    for key in sorted(k for k in results if k.split("/")[0] in ("lcqmc", "cmrc", "cmrc+bias-correction")):
        print(f"\n{key}: {json.dumps({k: v for k, v in results[key].items() if k not in ('evaluate', 'official')})}")
    for key, err in results.items():
        if key.startswith("error/"):
            print(f"\n{key}: {err}")


if __name__ == "__main__":
    main()
