"""The fine-tuning loop shared by every task (classification, QA, tagging, ...), and saving/loading runs.

A task supplies a :class:`TaskModel` (the pre-trained encoder as attribute ``encoder`` plus a :class:`Head`),
a function giving each epoch's training batches, and a function scoring the model on dev. :func:`finetune`
runs the official recipe of google-research/electra's ``run_finetuning.py``: AdamW without bias correction
(eps 1e-6), layer-wise LR decay, linear warm-up over 10% of the steps then linear decay to zero, gradient
clipping at 1.0; it evaluates on dev after each epoch (or every ``eval_every`` steps), keeps the best model
on disk and leaves its weights loaded in the model when it returns.

A run directory holds ``best/`` (``task.json`` + ``model.safetensors`` + ``tokenizer/``, written atomically),
``metrics.csv`` + ``tb/`` (curves; ``electra plot RUN`` draws them) and ``results.json``;
:func:`load_task_model` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from electra.checkpoint import (
    CHECKPOINTS_DIR,
    check_tokenizer_fits,
    find_latest_checkpoint,
    load_encoder_for_finetuning,
    resolve_checkpoint,
    tokenizer_dir,
)
from electra.config import DEVICE, EncoderConfig, Rule, at_least, interval, one_of, positive, read_json, validate
from electra.errors import ElectraError
from electra.files import atomic_directory, recover_swap, write_text_atomic
from electra.modeling import Electra, Encoder, make_encoder
from electra.tasks.heads import HEADS, Batch, Head
from electra.tokenization import load_tokenizer
from electra.training.checkpointing import load_training_checkpoint, save_training_checkpoint
from electra.training.metrics_log import METRICS_FILE, TB_DIR, MetricsLogger
from electra.training.optim import AdamW, param_groups
from electra.training.schedule import lr_multiplier

RunLoader = Callable[[Path], tuple[nn.Module, Any]]  # a run -> (a model taking collated batches, its tokenizer)
TASK_FILE = "task.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
BEST_DIR = "best"
FORMAT = "electra-task"


# ---- the task model -----------------------------------------------------------------------------------
class TaskModel(nn.Module):
    """Encoder + head. ``spec`` is free JSON describing the task (name, labels, max length, ...)."""

    def __init__(self, encoder: Encoder, head: Head, spec: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder  # the attribute name layer-wise LR decay relies on: "encoder.layers.{i}."
        self.head = head
        self.spec = dict(spec or {})

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        hidden = self.encoder(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"),
                              cls_only=self.head.reads_cls_only)
        return self.head(hidden, batch)


def load_encoder(path: str | Path, random_init: bool = False, seed: int = 0) -> Encoder:
    """The encoder to fine-tune from a checkpoint or pre-training run folder (its newest checkpoint): the
    discriminator's, or the generator network's for a run trained with the MLM objective. With
    ``random_init``, a freshly initialised encoder of the same shape: the baseline that shows what
    pre-training brings."""
    config, encoder, _ = load_encoder_for_finetuning(path)
    if random_init:
        torch.manual_seed(seed)
        fresh = Electra(config)
        same = fresh.discriminator.encoder.config == encoder.config
        encoder = fresh.discriminator.encoder if same else fresh.generator.encoder
    return encoder


def train_subset_indices(n: int, limit: int) -> list[int]:
    """The fixed random subset a run with ``--train-limit limit`` trains on: indices into its ``n`` training
    examples, in file order (seeded, so every arm and every benchmark sees the same examples)."""
    return sorted(np.random.default_rng(0).permutation(n)[:limit].tolist())


def official_hparams(config: EncoderConfig) -> dict[str, float]:
    """Peak LR and layer-wise decay of the paper by width: Small 3e-4/0.8, Base 1e-4/0.8, Large 5e-5/0.9."""
    if config.hidden_size <= 256:
        return {"lr": 3e-4, "layerwise_decay": 0.8}
    if config.hidden_size <= 768:
        return {"lr": 1e-4, "layerwise_decay": 0.8}
    return {"lr": 5e-5, "layerwise_decay": 0.9}


# ---- saving and loading runs ----------------------------------------------------------------------------
def save_task_model(model: TaskModel, path: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write ``task.json`` + ``model.safetensors`` (+ a copy of the tokenizer folder) atomically."""
    head = model.head
    meta = {"format": FORMAT, "version": 1, "spec": model.spec,
            "head": {"module": type(head).__module__, "class": type(head).__name__, "args": head.args},
            "model": dataclasses.asdict(model.encoder.config)}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_directory(path, "fine-tuned model") as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        (tmp / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if tokenizer is not None:
            shutil.copytree(tokenizer, tmp / TOKENIZER_DIR)
    return Path(path)


def resolve_run(path: str | Path) -> Path:
    """The directory holding ``task.json``: ``path`` itself or its ``best/`` (a run directory)."""
    path = Path(path)
    recover_swap(path / BEST_DIR)  # a save of best/ killed half-way: its previous version is complete
    for d in (path, path / BEST_DIR):
        if (d / TASK_FILE).is_file():
            return d
    if (path / "config.json").is_file() or (path / "checkpoints").is_dir():
        raise ElectraError(f"{path}: this is a pre-trained checkpoint, not a fine-tuned run "
                           "(run `electra finetune` on it first)")
    raise ElectraError(f"{path}: not a fine-tuned run (no {TASK_FILE} here or in {BEST_DIR}/)")


def read_task_meta(path: str | Path) -> dict[str, Any]:
    file = resolve_run(path) / TASK_FILE
    meta = read_json(file, "run description")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ElectraError(f"{file}: not a fine-tuned run description (expected \"format\": \"{FORMAT}\")")
    return meta


def load_run_with_tokenizer(run: str | Path, tasks: Iterable[str], kind: str) -> tuple[TaskModel, Any]:
    """A fine-tuned run of one of ``tasks`` and its tokenizer, with one-line errors otherwise."""
    model = load_task_model(run)
    if model.spec.get("task") not in tasks:
        raise ElectraError(f"{run}: not a {kind} run (task {model.spec.get('task')!r})")
    tok_dir = run_tokenizer_dir(run)
    if tok_dir is None:
        raise ElectraError(f"{run}: run has no tokenizer/ folder")
    tok = load_tokenizer(tok_dir)
    check_tokenizer_fits(tok, model.encoder.config.vocab_size, tok_dir, run)
    return model, tok


def load_task_model(path: str | Path, map_location: str | torch.device = "cpu") -> TaskModel:
    """Rebuild a :class:`TaskModel` saved by :func:`save_task_model` (a run directory or its ``best/``)."""
    run = resolve_run(path)
    meta = read_task_meta(run)
    where = run / TASK_FILE
    head_info = meta.get("head")
    if not isinstance(head_info, dict) or not isinstance(head_info.get("args", {}), dict):
        raise ElectraError(f"{where}: \"head\" must be an object with \"module\", \"class\" and \"args\"")
    module, name = head_info.get("module"), head_info.get("class")
    if not isinstance(module, str) or not module.startswith("electra."):
        raise ElectraError(f"{where}: head module {module!r} is not one of electra's")
    cls = HEADS.get(name) if isinstance(name, str) else None  # by class name: heads have moved between modules
    if cls is None:
        raise ElectraError(f"{where}: head {name!r} is not one of {', '.join(HEADS)}")
    config = EncoderConfig.from_dict(meta.get("model"), source=f"{where}: model")
    spec = meta.get("spec", {})
    if not isinstance(spec, dict):
        raise ElectraError(f"{where}: \"spec\" must be an object, got {type(spec).__name__}")
    try:
        head = cls(config, **head_info.get("args", {}))
    except (TypeError, ValueError) as e:
        raise ElectraError(f"{where}: head arguments do not fit {name} ({e})") from None
    model = TaskModel(make_encoder(config), head, spec)
    file = run / WEIGHTS_FILE
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ElectraError(f"{file}: unreadable weights file ({e})") from None
    expected = model.state_dict()
    for k, v in tensors.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            raise ElectraError(f"{file}: tensor {k!r} has shape {tuple(v.shape)} but {TASK_FILE} expects "
                               f"{tuple(expected[k].shape)}")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ElectraError(f"{file}: weights do not match {TASK_FILE} (missing {missing[:1]}, "
                           f"unexpected {unexpected[:1]})")
    return model.to(map_location).eval()


def run_tokenizer_dir(path: str | Path) -> Path | None:
    """The tokenizer folder saved with a run (or stored in a pre-trained checkpoint), if any."""
    try:
        d = resolve_run(path) / TOKENIZER_DIR
    except ElectraError:
        return tokenizer_dir(resolve_checkpoint(path))
    return d if d.is_dir() else None


# ---- batches ------------------------------------------------------------------------------------------
def collate(features: list[dict[str, Any]], pad_id: int = 0, label_pad: int = -100) -> Batch:
    """Stack features into tensors, padding list-valued fields to the longest in the batch (dynamic padding).

    ``input_ids`` pads with ``pad_id``, ``attention_mask``/``token_type_ids`` with 0, any other list field
    (token labels) with ``label_pad``; scalar fields become a 1-D tensor (float if any value is a float).
    Keep other metadata (offsets, example ids) outside the batch, keyed by a scalar index field.
    """
    out: Batch = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if isinstance(values[0], (list, tuple, np.ndarray)):
            width = max(len(v) for v in values)
            pad = (pad_id if key == "input_ids" else 0 if key in ("attention_mask", "token_type_ids")
                   else label_pad)
            arr = np.full((len(values), width), pad, dtype=np.int64)
            for i, v in enumerate(values):
                arr[i, : len(v)] = v
            out[key] = torch.from_numpy(arr)
        else:
            is_float = any(isinstance(v, float) for v in values)
            out[key] = torch.tensor(values, dtype=torch.float32 if is_float else torch.long)
    return out


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


@torch.inference_mode()
def run_inference(model: nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None
                  ) -> Iterator[tuple[Batch, dict[str, Tensor]]]:
    """Yield ``(batch, outputs)`` for each batch, outputs on the CPU, the model in eval mode."""
    was_training = model.training
    model.eval()
    if device is None:  # a module without parameters (an onnxruntime runner) runs where it runs: the CPU
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    try:
        for batch in batches:
            out = model(to_device(batch, device))
            yield batch, {k: v.float().cpu() for k, v in out.items()}
    finally:
        model.train(was_training)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ---- logging ---------------------------------------------------------------------------------------------
class Logger(Protocol):
    """What :func:`finetune` logs to (``electra.training.metrics_log.MetricsLogger`` by default)."""

    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def default_logger(out_dir: Path, tensorboard: bool = True) -> Logger:
    """A fresh ``out_dir/metrics.csv`` (wide: ``step`` then one column per scalar) and ``out_dir/tb``."""

    (out_dir / METRICS_FILE).unlink(missing_ok=True)  # a new run replaces the previous one's curves
    shutil.rmtree(out_dir / TB_DIR, ignore_errors=True)
    return MetricsLogger(out_dir, tensorboard=tensorboard)


# ---- the loop -----------------------------------------------------------------------------------------
@dataclass
class FinetuneConfig:
    """Optimisation settings; the defaults are google-research/electra's fine-tuning recipe for Base."""

    lr: float = 1e-4
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 32  # used by the task's batch builder; recorded here for results.json
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    layerwise_decay: float | None = 0.8  # None: same LR everywhere
    official_depths: bool = True  # the official layer-depth rule (last layer decayed twice), see param_groups
    bias_correction: bool = False  # the official AdamWeightDecay has none
    grad_clip: float | None = 1.0
    eval_every: int | None = None  # steps between dev evaluations; None: after each epoch
    log_every: int = 20
    seed: int = 42
    device: str = "auto"
    precision: str = "fp32"  # "bf16": autocast forward passes to bfloat16 (weights and optimizer stay fp32)
    tensorboard: bool = True  # TensorBoard events in out_dir/tb besides metrics.csv
    progress: bool = True
    save_every: int | None = None  # steps between resumable checkpoints in out_dir/checkpoints (None: at the end)
    keep_last: int = 2  # resumable checkpoints kept (0: all)

    # Fields that may differ when a run is resumed (they do not change what is computed).
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = ("device", "tensorboard", "progress", "save_every", "keep_last",
                                                    "log_every")
    KIND: ClassVar[str] = "finetune option"
    RULES: ClassVar[dict[str, Rule]] = {
        "lr": positive(), "epochs": positive(), "max_steps": at_least(1).optional(), "batch_size": at_least(1),
        "warmup_fraction": interval(0, 1, "[)"), "weight_decay": at_least(0),
        "layerwise_decay": interval(0, 1, "(]").optional(), "grad_clip": at_least(0).optional(),
        "eval_every": at_least(1).optional(), "log_every": at_least(1), "seed": at_least(0), "device": DEVICE,
        "precision": one_of("fp32", "bf16"), "save_every": at_least(1).optional(),
        "keep_last": Rule("a number >= 0 (0: keep every checkpoint)", lambda v: v >= 0),
    }

    def __post_init__(self) -> None:
        validate(self)


def _resume_identity(model: TaskModel, config: FinetuneConfig, total: int, steps_per_epoch: int,
                     main_metric: str) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (everything that changes what is computed)."""
    options = {k: v for k, v in dataclasses.asdict(config).items() if k not in FinetuneConfig.RESUMABLE_CHANGES}
    spec = {k: v for k, v in model.spec.items() if k != "na_threshold"}  # (tuned on dev as the run goes)
    return json.loads(json.dumps({"config": options, "total_steps": total, "steps_per_epoch": steps_per_epoch,
                                  "main_metric": main_metric, "spec": spec}, default=str))


def _check_resume(checkpoint: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    diffs = []
    for section in ("config", "spec"):
        old, new = saved.get(section, {}), now[section]
        diffs += [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                  if old.get(k) != new.get(k)]
    diffs += [f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in ("total_steps", "steps_per_epoch", "main_metric")
              if saved.get(k) != now[k]]
    if diffs:
        raise ElectraError(f"{checkpoint}: --resume with different options or data ({'; '.join(diffs[:3])}); "
                           "use the same ones, or a new --out")


def finetune(model: TaskModel, train_batches: Callable[[int], Iterable[Batch]], steps_per_epoch: int,
             evaluate: Callable[[TaskModel], dict[str, float]] | None, main_metric: str,
             out_dir: str | Path, config: FinetuneConfig, *, tokenizer: str | Path | None = None,
             greater_is_better: bool = True, logger: Logger | None = None, resume: bool = False) -> dict[str, Any]:
    """Train ``model`` and keep the best dev checkpoint in ``out_dir/best``; returns the results summary.

    ``train_batches(epoch)`` yields that epoch's batches (the task shuffles, seeded by epoch, and draws no
    global random numbers); ``steps_per_epoch`` is their number. ``evaluate(model)`` returns dev metrics
    including ``main_metric`` (called in eval mode without gradients); with ``evaluate=None`` the final model
    is kept. Returns ``{"best": metrics, "best_step", "final": metrics, "steps", "train_seconds", "config"}``,
    also written to ``out_dir/results.json``; the best weights are loaded into ``model`` on return.

    Resumable checkpoints (``electra.training.checkpointing``: model, optimizer, RNG, data position, best so
    far) go to ``out_dir/checkpoints`` every ``config.save_every`` steps (default: after each evaluation) and
    at the end; ``resume=True`` continues from the newest valid one and gives the same final model as a run
    never interrupted. Without ``resume`` a previous run's checkpoints in ``out_dir`` are removed first.
    """
    from tqdm.auto import tqdm


    if steps_per_epoch <= 0:
        raise ElectraError("finetune: the training split yields no batches")
    out_dir = Path(out_dir)
    if out_dir.is_file():
        raise ElectraError(f"--out {out_dir}: exists and is a file; expected a run folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        shutil.rmtree(out_dir / CHECKPOINTS_DIR, ignore_errors=True)
    device = pick_device(config.device)
    set_seed(config.seed)
    model.to(device).train()
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = int(config.warmup_fraction * total)
    groups = param_groups(model, config.lr, config.weight_decay, config.layerwise_decay,
                          model.encoder.config.num_layers, config.official_depths)
    optimizer = AdamW(groups, lr=config.lr, eps=1e-6, weight_decay=config.weight_decay,
                      bias_correction=config.bias_correction)
    identity = _resume_identity(model, config, total, steps_per_epoch, main_metric)
    # The loop's position: steps done, epoch and batches of it consumed, best so far, loss being averaged.
    loop: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "best": None, "best_step": -1, "last": {},
                            "loss_sum": 0.0, "loss_n": 0}
    latest = find_latest_checkpoint(out_dir) if resume else None
    if latest is not None:
        state = load_training_checkpoint(latest, model, optimizer)
        _check_resume(latest, state.get("run", {}), identity)
        loop.update(state["loop"])
        model.spec = dict(state["spec"])
        recover_swap(out_dir / BEST_DIR)
        if loop["best_step"] >= 0 and evaluate is not None and not (out_dir / BEST_DIR / WEIGHTS_FILE).is_file():
            raise ElectraError(f"{out_dir / BEST_DIR}: missing, but {latest} records a best model at step "
                               f"{loop['best_step']}; start again without --resume")
        print(f"resuming from {latest} at step {loop['step']}", file=sys.stderr)
    if logger is None:

        logger = (MetricsLogger(out_dir, resume_step=loop["step"], tensorboard=config.tensorboard)
                  if latest is not None else default_logger(out_dir, config.tensorboard))
    sign = 1.0 if greater_is_better else -1.0

    def run_eval(step: int) -> None:
        if evaluate is None:
            return
        with torch.inference_mode():
            model.eval()
            metrics = {k: float(v) for k, v in evaluate(model).items()}
            model.train()
        if main_metric not in metrics:
            raise ValueError(f"evaluate() returned {sorted(metrics)}, not the main metric {main_metric!r}")
        loop["last"] = metrics
        logger.log(step, {f"dev/{k}": v for k, v in metrics.items()})
        best = loop["best"]
        score = metrics[main_metric]
        if best is None or sign * score > sign * best[main_metric] or math.isnan(best[main_metric]):
            loop["best"], loop["best_step"] = metrics, step
            save_task_model(model, out_dir / BEST_DIR, tokenizer)

    def save(step: int, epoch: int, position: int) -> None:
        loop.update(step=step, epoch=epoch, position=position)
        save_training_checkpoint(out_dir, step, model, optimizer, {"loop": loop, "run": identity, "spec": model.spec},
                                 keep_last=config.keep_last)

    start = time.perf_counter()
    step, epoch, skip = loop["step"], loop["epoch"], loop["position"]
    pending = False  # a checkpoint is due: written before the next step (or after the epoch's evaluation)
    bar = tqdm(total=total, initial=step, desc=f"finetune {model.spec.get('task', '')}".strip(),
               disable=not config.progress, dynamic_ncols=True)
    while step < total:
        seen, position = step, 0
        for batch in train_batches(epoch):
            if position < skip:  # resumed: this epoch's batches before the checkpoint
                position += 1
                continue
            if pending:
                save(step, epoch, position)
                pending = False
            scale = lr_multiplier(step, total, warmup)
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * scale
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                loss = model(to_device(batch, device))["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step, position = step + 1, position + 1
            loop["loss_sum"], loop["loss_n"] = loop["loss_sum"] + loss.item(), loop["loss_n"] + 1
            if step % config.log_every == 0 or step == total:
                mean = loop["loss_sum"] / loop["loss_n"]
                logger.log(step, {"train/loss": mean, "train/lr": config.lr * scale})
                postfix = {"loss": f"{mean:.4f}"}
                if loop["best"]:
                    postfix[f"best {main_metric}"] = f"{loop['best'][main_metric]:.4f}"
                bar.set_postfix(postfix)
                loop["loss_sum"], loop["loss_n"] = 0.0, 0
            bar.update(1)
            if config.eval_every and step % config.eval_every == 0 and step < total:
                run_eval(step)
                pending = pending or not config.save_every
            if config.save_every and step % config.save_every == 0:
                pending = True
            if step >= total:
                break
        if step == seen:
            raise ElectraError(f"finetune: epoch {epoch} yielded no training batches")
        epoch, skip = epoch + 1, 0
        if not config.eval_every or step >= total:
            run_eval(step)
            pending = pending or not config.save_every
        if pending and step < total:
            save(step, epoch, 0)
            pending = False
    bar.close()
    if latest is None or loop["step"] < total:  # the finished run's state: --resume then only writes the results
        save(step, epoch, 0)
    logger.close()
    seconds = time.perf_counter() - start
    if evaluate is None:
        save_task_model(model, out_dir / BEST_DIR, tokenizer)
    else:  # leave the best weights in the model
        state = load_file(str(out_dir / BEST_DIR / WEIGHTS_FILE))
        model.load_state_dict(state)
    model.eval()
    best, best_step, last = loop["best"], loop["best_step"], loop["last"]
    results = {"task": model.spec.get("task"), "main_metric": main_metric, "best": best or {},
               "best_step": best_step if evaluate is not None else step, "final": last, "steps": step,
               "epochs": step / steps_per_epoch, "train_seconds": round(seconds, 2),
               "config": dataclasses.asdict(config)}
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=2) + "\n", "results")
    return results
