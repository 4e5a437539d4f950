"""``model.fit`` for ELECTRA in Keras: pre-training on the shards ``electra prepare`` writes, and fine-tuning a
classifier on GLUE-style data through our readers. Both write our formats (a checkpoint / a task run), so the
PyTorch side (``electra detect``, ``evaluate``, ``serve``, ...) takes what Keras trained.

Deviations from the PyTorch trainer, on purpose and small: Keras' AdamW always corrects Adam's bias (ours is off
by default, as the official code; on in the ``tiny`` preset); no layer-wise LR decay for fine-tuning; no resume,
no gradient accumulation, no data parallelism, fp32 only (the CLI refuses those options with ``--framework tf``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from electra.checkpoint import write_model
from electra.config import PretrainConfig
from electra.data.pretraining_data import PretrainingData
from electra.errors import ElectraError
from electra.files import atomic_directory, write_text_atomic
from electra.pretraining import SpecialIds
from electra.tf import keras_module
from electra.tf.modeling import Electra, build
from electra.tf.pretraining import METRICS, ReplacedTokenDetection
from electra.tf.weights import assign, to_torch

keras = keras_module()
ops = keras.ops

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# ---- data ------------------------------------------------------------------------------------------------
class PretrainingBatches(keras.utils.PyDataset):
    """``steps`` batches of our :class:`~electra.data.pretraining_data.PretrainingData` (the same example stream
    as the PyTorch trainer: batch i = examples [i*b, (i+1)*b)), as dicts of int32 arrays."""

    def __init__(self, data: PretrainingData, batch_size: int, steps: int, start: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.data, self.batch_size, self.steps, self.start = data, batch_size, steps, start

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        first = (self.start + index) * self.batch_size
        rows = [self.data.example(first + j) for j in range(self.batch_size)]
        batch = {name: np.stack([r[i] for r in rows]).astype(np.int32) for i, name in enumerate(INPUTS)}
        if int(batch["input_ids"].max()) >= self.data.vocab_size:
            raise ElectraError(f"{self.data.data_dir}: token id {int(batch['input_ids'].max())} outside the "
                               f"{self.data.vocab_size}-entry vocabulary (damaged shards; re-run `electra prepare`)")
        return batch


class FeatureBatches(keras.utils.PyDataset):
    """Encoded classification features (our ``encode``) in batches padded to their longest row: ``(x, y)``."""

    def __init__(self, features: list[dict[str, Any]], batch_size: int, pad_id: int = 0,
                 shuffle_seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.features, self.batch_size, self.pad_id = features, batch_size, pad_id
        self.order = np.arange(len(features))
        self.rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.features) / self.batch_size)

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.order = self.rng.permutation(len(self.features))

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rows = [self.features[i] for i in self.order[index * self.batch_size:(index + 1) * self.batch_size]]
        width = max(len(r["input_ids"]) for r in rows)
        x = {}
        for name in INPUTS:
            arr = np.full((len(rows), width), self.pad_id if name == "input_ids" else 0, np.int32)
            for i, r in enumerate(rows):
                arr[i, :len(r[name])] = r[name]
            x[name] = arr
        labels = [r.get("labels", 0) for r in rows]
        y = np.asarray(labels, np.float32 if any(isinstance(v, float) for v in labels) else np.int32)
        return x, y


# ---- optimisation ------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="electra")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """peak * min(1, step / warmup) * max(0, 1 - step / total): :func:`electra.training.schedule.lr_multiplier`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        decay = ops.maximum(0.0, 1.0 - step / max(1, self.total_steps))
        warmup = ops.minimum(1.0, step / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return self.peak * decay * warmup

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def make_optimizer(lr: float, total_steps: int, warmup_steps: int, weight_decay: float = 0.01,
                   beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-6, clipnorm: float = 1.0) -> Any:
    """AdamW with the official schedule, no weight decay on biases and LayerNorm, global-norm clipping."""
    opt = keras.optimizers.AdamW(learning_rate=WarmupLinearDecay(lr, total_steps, warmup_steps),
                                 weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                                 global_clipnorm=clipnorm if clipnorm > 0 else None)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


class CsvLog(keras.callbacks.Callback):
    """Every ``every`` steps: the running means of the objective's metrics to ``metrics.csv`` (our columns)."""

    def __init__(self, run_dir: Path, every: int, batch_tokens: int, start: int = 0):
        super().__init__()
        from electra.training.metrics_log import MetricsLogger

        self.logger = MetricsLogger(run_dir, tensorboard=False)
        self.every, self.batch_tokens, self.start = every, batch_tokens, start
        self.t_last, self.last_step = time.perf_counter(), start
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self.start + batch + 1
        if step % self.every and step != self.params.get("steps"):
            return
        now = time.perf_counter()
        values = {k: float(v) for k, v in (logs or {}).items() if k in METRICS}
        values["tokens_per_s"] = self.batch_tokens * (step - self.last_step) / (now - self.t_last)
        values["lr"] = float(self.model.optimizer.learning_rate)
        if not all(math.isfinite(v) for v in values.values()):
            raise ElectraError(f"step {step}: non-finite loss or metric ({values}); lower --lr or check data")
        self.logger.log(step, values)
        self.history.append({"step": step, **values})
        self.t_last, self.last_step = now, step
        for t in self.model.metrics:  # means over the last `every` steps, as the PyTorch trainer logs them
            t.reset_state()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.logger.close()


# ---- pre-training ------------------------------------------------------------------------------------------
def pretrain(cfg: PretrainConfig, model_overrides: dict[str, Any] | None = None, overwrite: bool = False,
             jit_compile: bool | str = "auto", verbose: int = 0) -> tuple[Path, list[dict[str, float]]]:
    """Pre-train with ``model.fit`` and write ``OUT/checkpoints/step-N`` (our format, with the tokenizer, a
    manifest: ``electra detect --model OUT`` reads it) and ``OUT/metrics.csv``; returns (run folder, logged rows).
    ``cfg.init_from`` starts from a checkpoint (its weights and shape)."""
    import shutil

    from electra.checkpoint import CHECKPOINTS_DIR, _write_manifest
    from electra.training.pretrainer import RUN_FILE, check_run_folder, load_init_weights, resolve_model_config

    cfg.check_paths()
    run_dir = Path(cfg.out)
    data = PretrainingData(cfg.data, seed=cfg.seed)
    model_cfg = resolve_model_config(cfg, data.vocab_size, None, model_overrides)
    record = {"model": model_cfg.to_dict(), "pretrain": cfg.to_dict(), "data_meta": data.meta, "world_size": 1,
              "precision": "fp32", "framework": "tf", "keras_backend": keras.backend.backend()}
    check_run_folder(run_dir, record, resume=False, overwrite=overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / RUN_FILE, json.dumps(record, indent=2, default=str) + "\n", "run record")

    keras.utils.set_random_seed(cfg.seed)
    model = build(Electra(model_cfg))
    if cfg.init_from:  # through the PyTorch loader: the same vocabulary and shape checks
        from electra.modeling import Electra as TorchElectra

        torch_model = TorchElectra(model_cfg)
        print(load_init_weights(torch_model, cfg.init_from, data.tokenizer_dir))
        assign(model, {k: v for k, v in torch_model.state_dict().items() if k in model.torch_weights()},
               cfg.init_from)
    special = SpecialIds.of(data)
    objective = ReplacedTokenDetection(model, special, data.max_seq_len, cfg.mask_prob, cfg.generator_weight,
                                       cfg.discriminator_weight, cfg.temperature, seed=cfg.seed)
    objective.compile(optimizer=make_optimizer(cfg.lr, cfg.max_steps, cfg.warmup_steps, cfg.weight_decay,
                                               cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, cfg.grad_clip),
                      jit_compile=jit_compile)
    log = CsvLog(run_dir, cfg.log_every, cfg.batch_size * data.max_seq_len)
    objective.fit(PretrainingBatches(data, cfg.batch_size, cfg.max_steps), epochs=1, callbacks=[log],
                  verbose=verbose)
    path = run_dir / CHECKPOINTS_DIR / f"step-{cfg.max_steps:08d}"
    with atomic_directory(path, f"checkpoint of step {cfg.max_steps}") as tmp:
        write_model(to_torch(model), tmp, extra={"objective": "electra", "generator_training": "joint",
                                                 "saved_by": "electra.tf"})
        shutil.copytree(data.tokenizer_dir, tmp / "tokenizer")
        _write_manifest(tmp, cfg.max_steps)
    return run_dir, log.history


# ---- classification fine-tuning ------------------------------------------------------------------------------
@dataclasses.dataclass
class KerasFinetuneOptions:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_seq_len: int = 128
    head: str = "electra"
    pooling: str = "cls"  # "mean": the mean of the real tokens (electra.tasks.heads.pool)
    seed: int = 0
    train_limit: int | None = None
    dev_limit: int | None = None


def finetune_classification(task: Any, model_path: str | Path, data_dir: str | Path, out_dir: str | Path,
                            options: KerasFinetuneOptions | None = None, verbose: int = 0) -> dict[str, Any]:
    """Fine-tune a Keras classifier from a checkpoint's discriminator on ``task`` (a
    :class:`~electra.data.glue.TaskDef`, read by our GLUE readers) with ``model.fit``; score dev with the task's
    metrics; write ``OUT/best/`` as our task run (``electra evaluate/predict/serve --run OUT`` load it) and
    ``OUT/results.json``. Returns the results."""
    from electra.checkpoint import resolve_checkpoint, tokenizer_dir
    from electra.data.glue import load_split
    from electra.tasks.classification import encode, label_index, prepare_tokenizer, task_metrics
    from electra.tasks.heads import ClassificationHead
    from electra.tasks.runner import BEST_DIR, TaskModel, save_task_model
    from electra.tf.weights import classifier_from_checkpoint, state_dict
    from electra.tokenization import special_tokens

    o = options or KerasFinetuneOptions()
    ckpt = resolve_checkpoint(model_path)
    train, dev = load_split(task, data_dir, "train"), load_split(task, data_dir, "dev")
    if task.labels is None and not task.regression:  # custom: labels from the training data, as finetune_task
        from electra.tasks.classification import _is_number, _num

        found = sorted({str(e.label) for e in train}, key=lambda s: (not _is_number(s), _num(s), s))
        task = dataclasses.replace(task, labels=tuple(found))
        dev = load_split(task, data_dir, "dev")
    if o.train_limit:
        train = [train[i] for i in sorted(np.random.default_rng(0).permutation(len(train))[:o.train_limit])]
    if o.dev_limit:
        dev = dev[:o.dev_limit]
    keras.utils.set_random_seed(o.seed)
    num_labels = 1 if task.regression else len(task.labels or ())
    model = classifier_from_checkpoint(ckpt, num_labels, o.head, pooling=o.pooling)
    cfg = model.encoder_config
    tok = prepare_tokenizer(None, ckpt, cfg.vocab_size, o.max_seq_len, cfg.max_position_embeddings)
    pad_id = special_tokens(tok).pad_id
    labels = label_index(task)
    train_f, dev_f = encode(tok, train, labels, task.regression), encode(tok, dev, labels, task.regression)
    batches = FeatureBatches(train_f, o.batch_size, pad_id, shuffle_seed=o.seed)
    steps = len(batches) * o.epochs
    loss = (keras.losses.MeanSquaredError() if task.regression
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(optimizer=make_optimizer(o.lr, steps, int(o.warmup_fraction * steps), o.weight_decay), loss=loss)
    history = model.fit(batches, epochs=o.epochs, verbose=verbose)
    logits = model.predict(FeatureBatches(dev_f, 64, pad_id), verbose=0)
    predicted = logits if task.regression else ops.convert_to_numpy(ops.softmax(logits, -1))
    gold = np.array([f["labels"] for f in dev_f], np.float64 if task.regression else np.int64)
    metrics = task_metrics(task, gold, predicted, num_labels)
    spec = {"task": task.name, "labels": list(task.labels or []), "regression": task.regression,
            "max_seq_len": o.max_seq_len, "metric": task.metric, "report": list(task.report),
            "text_fields": [str(c) for c in task.labelled.text], "label_field": str(task.labelled.label),
            "pretrained": str(model_path), "random_init": False, "framework": "tf"}
    from electra.modeling import Encoder

    torch_model = TaskModel(Encoder(cfg), ClassificationHead(cfg, num_labels=num_labels, style=o.head,
                                                                pooling=o.pooling), spec)
    torch_model.load_state_dict(state_dict(model), strict=True)
    save_task_model(torch_model, Path(out_dir) / BEST_DIR, tokenizer=tokenizer_dir(ckpt))
    results = {"dev": metrics, "train_loss": [float(v) for v in history.history["loss"]],
               "train_examples": len(train), "dev_examples": len(dev), "framework": "tf",
               "keras_backend": keras.backend.backend(), "report": list(task.report)}
    write_text_atomic(Path(out_dir) / "results.json", json.dumps(results, indent=2) + "\n", "results")
    return results
