"""The pre-training loop: a plain loop (forward, backward, clip, step, log, save) around the RTD objective.

Data parallel with ``torchrun`` (DDP), gradient accumulation, bf16 autocast, atomic checkpoints and exact
resume. Each micro-batch is one of ``world_size * grad_accum`` disjoint shards of the global batch, and its
randomness (masking, sampling, dropout) is seeded from (seed, step, shard): so 2 processes x 1 micro-batch
and 1 process x 2 micro-batches compute the same thing, and a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from electra import objectives
from electra.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    _shared_keys,
    convert_sharing,
    find_latest_checkpoint,
    load_state,
    read_checkpoint_meta,
    read_tensors,
    resolve_checkpoint,
    tokenizer_dir,
    write_model,
)
from electra.config import PRESETS, ModelConfig, PretrainConfig
from electra.data.pretraining_data import PretrainingData
from electra.detection_eval import DetectionReport, evaluate_on_data
from electra.errors import ElectraError, os_reason
from electra.files import write_text_atomic
from electra.init.embeddings import init_word_embeddings
from electra.init.positions import init_position_embeddings
from electra.modeling import Electra, table_parameters
from electra.pretraining import SpecialIds, annealed_temperature
from electra.tokenization import load_tokenizer, tokenizer_hash, word_start_table
from electra.training.allocator import tune_malloc
from electra.training.checkpointing import collect_rng_states, load_training_checkpoint, save_training_checkpoint
from electra.training.distributed import barrier, cleanup, init_distributed
from electra.training.metrics_log import METRICS_FILE, MetricsLogger, read_metrics_csv
from electra.training.optim import AdamW, param_groups
from electra.training.plot import plot_curves
from electra.training.precision import EMULATED_BF16_MESSAGE, autocast_context, default_precision, emulated_bf16

RUN_FILE = "run.json"
DETECTION_FILE = "detection.json"  # held-out detection quality at the end of a run
PROBE_STEPS = 16  # plan_steps: a short run whose logged step rate sizes the real one


def micro_batch_seed(seed: int, step: int, shard: int) -> int:
    """A distinct, reproducible seed per (run seed, step, data shard)."""
    return ((seed * 1_000_003 + step) * 10_007 + shard) % (2**63 - 1)


@dataclass
class StepInputs:
    """What one optimiser step consumes: this rank's micro-batches and their shard indices."""

    batches: list[dict[str, Tensor]]
    shards: list[int]


def train_step(objective: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: StepInputs, step: int,
               seed: int, grad_clip: float, autocast: contextlib.AbstractContextManager | None = None,
               forward: torch.nn.Module | None = None) -> dict[str, Tensor]:
    """One optimiser step over this rank's micro-batches; returns detached metric tensors (no host sync).

    ``forward`` is what to call instead of ``objective`` itself: its DDP wrapper and/or compiled form.
    """
    optimizer.zero_grad(set_to_none=True)
    n = len(inputs.batches)
    forward = forward if forward is not None else objective
    ddp = forward if isinstance(forward, torch.nn.parallel.DistributedDataParallel) else None
    totals: dict[str, Tensor] = {}
    for i, (batch, shard) in enumerate(zip(inputs.batches, inputs.shards)):
        s = micro_batch_seed(seed, step, shard)
        torch.manual_seed(s)  # dropout
        rng = torch.Generator(device=batch["input_ids"].device).manual_seed(s)  # masking and sampling
        sync = ddp is None or i == n - 1
        words = {"word_start": batch["word_start"]} if "word_start" in batch else {}  # whole-word masking's
        with (contextlib.nullcontext() if sync else ddp.no_sync()), (autocast or contextlib.nullcontext()):
            loss, metrics = forward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], rng,
                                    **words)
        (loss / n).backward()
        for k, v in metrics.items():
            totals[k] = totals[k] + v / n if k in totals else v / n
        totals["tokens"] = totals.get("tokens", 0) + batch["attention_mask"].sum()
    if grad_clip > 0:
        totals["grad_norm"] = torch.nn.utils.clip_grad_norm_(objective.parameters(), grad_clip)
    optimizer.step()
    return totals


def split_groups(groups: list[dict], ids: set[int], flag: str) -> list[dict]:
    """Each parameter group split in two: the parameters whose ``id`` is in ``ids`` (marked ``flag: True``), the
    rest; empty parts are dropped."""
    out = []
    for g in groups:
        for marked in (True, False):
            keep = [i for i, p in enumerate(g["params"]) if (id(p) in ids) == marked]
            if keep:
                out.append({**g, "params": [g["params"][i] for i in keep], "names": [g["names"][i] for i in keep],
                            flag: marked})
    return out


def scale_word_embeddings_lr(groups: list[dict], model: Electra, scale: float) -> list[dict]:
    """``groups`` with the word-embedding tables (one when tied) in groups of their own at ``scale`` x their LR."""
    if scale == 1:
        return groups
    ids = {id(p) for net in (model.discriminator, model.generator)
           for p in table_parameters(net.encoder.embeddings.word_embeddings)}
    return [{**g, "lr": g["lr"] * scale, "base_lr": g["base_lr"] * scale} if g["word_embeddings"] else g
            for g in split_groups(groups, ids, "word_embeddings")]


def body_parameter_ids(model: Electra) -> set[int]:
    """The discriminator's body: its encoder, with the embeddings it shares with the generator."""
    return {id(p) for p in model.discriminator.encoder.parameters()}


def new_parameter_ids(model: Electra, init_from: str) -> set[int]:
    """The parameters an imported BERT did not provide, which start untrained: the detection head, the generator's
    MLM head when it had none, the whole generator when it is new. Empty for our own and ELECTRA checkpoints."""

    imported = read_checkpoint_meta(resolve_checkpoint(init_from)).get("imported_from") or {}
    if "bert" not in imported:
        return set()
    parts: list[torch.nn.Module] = [model.discriminator.head]
    if imported.get("generator_init") == "new":
        parts.append(model.generator)
    elif imported.get("mlm_head") != "copied":
        parts.append(model.generator.head)
    body = body_parameter_ids(model)  # the shared embeddings are pre-trained
    return {id(p) for m in parts for p in m.parameters() if id(p) not in body}


def warm_start_groups(groups: list[dict], model: Electra, cfg: PretrainConfig, verbose: bool
                      ) -> tuple[list[dict], int]:
    """``groups`` for an ``--init-from`` run with untrained parts: those at ``new_parts_lr``, the body marked
    ``body`` for :func:`body_lr_factor`. Returns the groups and the number of frozen steps (0: none)."""
    new = new_parameter_ids(model, cfg.init_from) if cfg.init_from else set()
    freeze = cfg.freeze_body_steps if new else 0  # nothing to warm up: nothing is frozen
    if freeze:
        groups = split_groups(groups, body_parameter_ids(model), "body")
    if new and cfg.new_parts_lr:
        groups = [{**g, "lr": cfg.new_parts_lr, "base_lr": cfg.new_parts_lr} if g["new"] else g
                  for g in split_groups(groups, new, "new")]
    if new and verbose and (freeze or cfg.new_parts_lr):
        count = sum(p.numel() for g in groups for p in g["params"] if id(p) in new)
        print(f"untrained parts of {cfg.init_from} (detection head; generator or its MLM head): {count:,} parameters"
              + (f" at lr {cfg.new_parts_lr:g}" if cfg.new_parts_lr else "")
              + (f"; the pre-trained body is frozen for {freeze} steps" if freeze else ""))
    return groups, freeze


def body_lr_factor(step: int, freeze_steps: int, warmup_steps: int) -> float:
    """LR multiplier of the discriminator body: 0 while frozen, then a linear warm-up over ``warmup_steps``."""
    if step < freeze_steps:
        return 0.0
    return min(1.0, (step - freeze_steps + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def resolve_model_config(cfg: PretrainConfig, vocab_size: int, config_file: str | None = None,
                         overrides: dict[str, Any] | None = None) -> ModelConfig:
    """Preset (or config file) + overrides, with the vocabulary size of the prepared data; with ``init_from``,
    the checkpoint's shape (it has to match the vocabulary, see :func:`check_init_vocabulary`)."""
    if cfg.init_from:
        shape = {k: v for k, v in (overrides or {}).items() if k != "embedding_sharing"}
        if config_file or shape:
            raise ElectraError("--init-from takes the model's shape from the checkpoint: drop --config [model] "
                               f"and --generator-size ({', '.join(sorted(shape)) or config_file})")

        ckpt = resolve_checkpoint(cfg.init_from)
        model_cfg = ModelConfig.from_dict(read_checkpoint_meta(ckpt)["model"], source=str(ckpt / "config.json"))
        if sharing := (overrides or {}).get("embedding_sharing"):
            model_cfg = model_cfg.replace(embedding_sharing=sharing)  # the weights are converted on loading
        rows = model_cfg.discriminator.vocab_size
        if rows > vocab_size and tokenizer_dir(ckpt) is not None \
                and load_tokenizer(tokenizer_dir(ckpt)).get_vocab_size() == vocab_size:
            # e.g. multilingual-e5: 250,037 embedding rows for 250,002 ids; the generator would sample ids no
            # tokenizer can write
            raise ElectraError(f"--init-from {ckpt}: the embedding table has {rows - vocab_size:,} rows more than "
                               f"the tokenizer has ids ({rows:,} vs {vocab_size:,}); the generator would sample "
                               "them: drop them first with `electra trim-vocab --model CKPT --corpus TEXT --out NEW`")
        if rows != vocab_size:
            raise ElectraError(f"--init-from {ckpt}: the model has a {rows:,}-entry "
                               f"vocabulary, the prepared data {vocab_size:,}; prepare the data with the "
                               "checkpoint's tokenizer (electra prepare --tokenizer CKPT/tokenizer)")
        if cfg.objective == "mlm":
            raise ElectraError("--init-from with --objective mlm is not supported (the MLM baseline trains a "
                               "discriminator-sized generator from scratch)")
        return objectives.adjust_model_config(cfg, model_cfg)
    if cfg.preset not in PRESETS:
        raise ElectraError(f"--preset {cfg.preset}: a training recipe for --init-from (it has no model shape); "
                           f"for a new model pick one of {', '.join(PRESETS)}")
    base = ModelConfig.load(config_file) if config_file else ModelConfig.preset(cfg.preset)
    model_cfg = base.replace(**(overrides or {}))
    if "vocab_size" in (overrides or {}) and model_cfg.discriminator.vocab_size != vocab_size:
        raise ElectraError(f"--vocab-size {model_cfg.discriminator.vocab_size} does not match the prepared data's "
                           f"tokenizer ({vocab_size} entries)")
    model_cfg = model_cfg.replace(vocab_size=vocab_size)
    return objectives.adjust_model_config(cfg, model_cfg)  # e.g. the MLM baseline: a discriminator-sized generator


def load_init_weights(model: Electra, init_from: str, data_tokenizer_dir: Path) -> str:
    """Copy an existing checkpoint's weights into ``model`` (same shape) after checking that the data was
    prepared with the checkpoint's vocabulary; returns a one-line summary. Nothing else is taken from it:
    optimizer, step, schedule and data position start fresh."""

    ckpt = resolve_checkpoint(init_from)
    meta = read_checkpoint_meta(ckpt)
    tok = tokenizer_dir(ckpt)
    if tok is not None:
        ours, theirs = tokenizer_hash(load_tokenizer(tok)), tokenizer_hash(load_tokenizer(data_tokenizer_dir))
        if ours != theirs:
            raise ElectraError(f"--init-from {ckpt}: its tokenizer (hash {ours}) differs from the one the data was "
                               f"prepared with ({data_tokenizer_dir}, hash {theirs}); the token ids would not mean "
                               "the same words: prepare the data with --tokenizer CKPT/tokenizer")
    has_generator = meta.get("has_generator", True)
    source = ModelConfig.from_dict(meta["model"], source=str(ckpt / CONFIG_FILE)).embedding_sharing
    tensors, sharing = convert_sharing(read_tensors(ckpt), source, model.config)
    left = load_state(ckpt, model, skip=_shared_keys(model), optional_prefix=None if has_generator else "generator.",
                      tensors=tensors)
    generator = "generator from the checkpoint" if not left else f"new generator ({len(left)} tensors initialised)"
    checked = "vocabulary checked" if tok is not None else "no tokenizer in the checkpoint: vocabulary size only"
    sharing = f"; {sharing}" if sharing else ""
    return (f"init-from: {ckpt / WEIGHTS_FILE}: discriminator and {generator}{sharing}; {checked}; optimizer and "
            "step fresh")


def check_run_folder(run_dir: Path, record: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: an existing run folder needs --resume (same config) or --overwrite."""
    existing = run_dir / RUN_FILE
    if not existing.exists():
        return
    if overwrite:
        shutil.rmtree(run_dir)
        return
    if not resume:
        raise ElectraError(f"{run_dir}: already holds a run; pass --resume to continue it or --overwrite to "
                           "start again")
    old = json.loads(existing.read_text())
    # model fields added since (architecture, embedding_sharing for tie_embeddings) read as their defaults; a
    # model section that no longer parses is compared as written (the differences are listed below)
    with contextlib.suppress(ElectraError):
        old["model"] = ModelConfig.from_dict(old.get("model", {}), source=str(existing)).to_dict()
    # a field added since the run was made holds its default there (the run trained with that behaviour)
    added = {f.name: f.default for f in dataclasses.fields(PretrainConfig) if f.default is not dataclasses.MISSING}
    diffs = []
    for section in ("model", "pretrain"):
        was = old.get(section, {})
        for k in sorted(set(was) | set(record[section])):
            if section == "pretrain" and k in PretrainConfig.RESUMABLE_CHANGES:
                continue
            before = was[k] if k in was or section != "pretrain" else added.get(k)
            if before != record[section].get(k):
                diffs.append(f"{k} {before!r} -> {record[section].get(k)!r}")
    if diffs:
        raise ElectraError(f"{run_dir}: --resume with a different config ({'; '.join(diffs[:4])}); use a new "
                           "--out or --overwrite")


def probe_tokens_per_s(cfg: PretrainConfig, model_overrides: dict[str, Any] | None = None,
                       steps: int = PROBE_STEPS) -> float:
    """Tokens/s of ``cfg``'s step, from its first ``steps`` steps trained in ``cfg.out`` (overwritten; the output
    hidden; the run stays there, so it can be resumed). The rate is that of the second half of those steps."""
    probe_cfg = dataclasses.replace(cfg, max_steps=10_000, stop_step=steps, log_every=steps // 2, max_minutes=0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # the probe's own stop and detection lines would confuse
        probe = pretrain(probe_cfg, model_overrides=model_overrides, overwrite=True, progress=False)
    _, rows = read_metrics_csv(probe / METRICS_FILE)
    return float(rows[-1]["tokens_per_s"])


def plan_steps(cfg: PretrainConfig, minutes: float, model_overrides: dict[str, Any] | None = None,
               seq_len: int = 128, minimum: int = 50, share: float = 0.9) -> tuple[int, float]:
    """(steps of ``cfg``'s batch that fill ``share`` of ``minutes``, tokens/s measured) from a ``PROBE_STEPS``-step
    probe (:func:`probe_tokens_per_s`). The rest is for start-up, logging and saving."""
    tokens_per_s = probe_tokens_per_s(cfg, model_overrides)
    return max(minimum, int(minutes * 60 * share * tokens_per_s / (cfg.batch_size * seq_len))), tokens_per_s


def pretrain(cfg: PretrainConfig, config_file: str | None = None,
             model_overrides: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
             progress: bool = True) -> Path:
    """Run (or resume) pre-training; returns the run folder."""
    from tqdm.auto import tqdm

    tune_malloc()  # keep step-sized buffers in the heap: no page faults on every step (see allocator.py)
    objectives.check_options(cfg)
    cfg.check_paths()
    dist = init_distributed(None if cfg.device == "auto" else cfg.device)
    device = dist.device
    run_dir = Path(cfg.out)
    world, accum = dist.world_size, cfg.grad_accum
    if cfg.batch_size % (world * accum):
        raise ElectraError(f"--batch-size {cfg.batch_size} is not divisible by world size {world} x "
                           f"--grad-accum {accum}")
    micro = cfg.batch_size // (world * accum)
    shards = [j * world + dist.rank for j in range(accum)]
    datasets = [PretrainingData(cfg.data, seed=cfg.seed, rank=s, world_size=world * accum) for s in shards]
    data = datasets[0]
    model_cfg = resolve_model_config(cfg, data.vocab_size, config_file, model_overrides)
    if cfg.held_out and (held_vocab := PretrainingData(cfg.held_out).vocab_size) != data.vocab_size:
        raise ElectraError(f"--held-out {cfg.held_out}: prepared with a {held_vocab:,}-entry vocabulary, --data "
                           f"with {data.vocab_size:,}; prepare both with the same tokenizer")
    precision = default_precision(device) if cfg.precision == "auto" else cfg.precision
    if precision == "bf16" and emulated_bf16(device) and dist.is_main:
        print(f"warning: --precision bf16: {EMULATED_BF16_MESSAGE}; --precision auto picks fp32 here")
    record = {"model": model_cfg.to_dict(), "pretrain": cfg.to_dict(), "data_meta": data.meta,
              "world_size": world, "precision": precision}
    if dist.is_main:
        check_run_folder(run_dir, record, resume, overwrite)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ElectraError(f"--out {run_dir}: cannot create the run folder ({os_reason(e)})") from None
        write_text_atomic(run_dir / RUN_FILE, json.dumps(record, indent=2, default=str) + "\n", "run record")

    random.seed(cfg.seed)  # unused by the loop, but seeded: a checkpoint's RNG states are then reproducible too
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    model = Electra(model_cfg).to(device)
    special = SpecialIds.of(data)
    latest = find_latest_checkpoint(run_dir) if resume else None
    if cfg.init_from and latest is None:  # a resumed run starts from its own checkpoint instead
        summary = load_init_weights(model, cfg.init_from, data.tokenizer_dir)
        if dist.is_main:
            print(summary)
    if cfg.init_embeddings:  # (on resume the checkpoint's weights replace these)

        report = init_word_embeddings(model, cfg.init_embeddings, data.tokenizer_dir, seed=cfg.seed)
        if dist.is_main:
            print(report.format())
    if cfg.position_init != "normal":  # (never with init_from: PretrainConfig refuses the pair)

        init_position_embeddings(model, cfg.position_init)
    model.generator.output_grad = cfg.generator_output_grad
    if not cfg.train_word_embeddings:
        for net in (model.discriminator, model.generator):
            for p in table_parameters(net.encoder.embeddings.word_embeddings):
                p.requires_grad_(False)
    word_starts = None  # whole-word masking without word starts in the data: the vocabulary's
    if cfg.whole_word_masking and not data.has_word_starts:
        try:
            word_starts = word_start_table(load_tokenizer(data.tokenizer_dir))
        except ElectraError as e:
            raise ElectraError(f"--whole-word-masking: {e}; prepare the data with --segmenter") from None
    objective = objectives.build_objective(model, special, data.max_seq_len, cfg, word_starts).to(device)
    trained = objectives.trained_parameters_root(objective)
    groups, freeze = warm_start_groups(param_groups(trained, cfg.lr, cfg.weight_decay), model, cfg, dist.is_main)
    groups = scale_word_embeddings_lr(groups, model, cfg.word_embeddings_lr_scale)
    optimizer = AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                      weight_decay=cfg.weight_decay, bias_correction=cfg.bias_correction)
    start = 0
    if latest is not None:
        state = load_training_checkpoint(latest, model, optimizer, rank=dist.rank)
        objectives.load_objective_state(objective, latest)
        start = int(state["step"])
        if state.get("shards") != world * accum:
            raise ElectraError(f"{latest}: saved with {state.get('shards')} data shards (world size x "
                               f"grad-accum); now {world * accum}. Resume with the same product.")
        if dist.is_main:
            print(f"resuming from {latest} at step {start}")
    forward: torch.nn.Module = objective
    if world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=objectives.needs_unused_parameters(objective))
    elif cfg.compile:
        forward = _maybe_compile(objective)
    iters: list[Iterator[dict[str, Tensor]]] = [d.batches(micro, start=start) for d in datasets]
    logger = MetricsLogger(run_dir, enabled=dist.is_main, resume_step=start)
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not (progress and dist.is_main), unit="step",
               dynamic_ncols=True)
    sums: dict[str, Tensor] = {}
    n_sum, t_last = 0, time.perf_counter()
    tokenizer_dir = data.tokenizer_dir
    extra_state = {"shards": world * accum, "config": record}

    def write_fn(module: torch.nn.Module, directory: Path) -> None:
        write_model(module, directory, extra={"objective": cfg.objective,
                                              "generator_training": cfg.generator_training})
        objectives.save_objective_state(objective, directory)

    started = time.perf_counter()
    deadline = started + 60 * cfg.max_minutes if cfg.max_minutes > 0 else math.inf
    done = start
    for step in range(start, cfg.max_steps):
        factor = objectives.begin_step(objective, step, cfg.max_steps, cfg.warmup_steps)
        objective.temperature = annealed_temperature(step, cfg.max_steps, cfg.temperature_start, cfg.temperature)
        body = body_lr_factor(step, freeze, cfg.warmup_steps)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor * (body if g.get("body") else 1.0)
        batches = [{k: v.to(device, non_blocking=True) for k, v in next(it).items()} for it in iters]
        metrics = train_step(objective, optimizer, StepInputs(batches, shards), step, cfg.seed, cfg.grad_clip,
                             autocast_context(device, precision), forward)
        for k, v in metrics.items():
            sums[k] = sums[k] + v.detach() if k in sums else v.detach()
        n_sum += 1
        done = step + 1
        out_of_time = done == cfg.stop_step or time.perf_counter() >= deadline
        if world > 1 and cfg.max_minutes > 0:  # clocks differ between ranks: every rank stops at the same step
            flag = torch.tensor([float(out_of_time)], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        if done % cfg.log_every == 0 or done == cfg.max_steps or out_of_time:  # the last steps are logged too
            values = _reduce(sums, n_sum, world)
            now = time.perf_counter()
            values["tokens_per_s"] = values.pop("tokens") * n_sum / (now - t_last)
            values["lr"] = cfg.lr * factor
            if cfg.temperature_start > 0:
                values["temperature"] = objective.temperature
            logger.log(done, values)
            if not all(math.isfinite(v) for v in values.values()):
                raise ElectraError(f"step {done}: non-finite loss or metric ({values}); lower --lr or check data")
            bar.set_postfix(loss=f"{values['loss']:.3f}", tok_s=f"{values['tokens_per_s']:.0f}")
            sums, n_sum, t_last = {}, 0, now
        bar.update(1)
        if done % cfg.save_every == 0 or done == cfg.max_steps or out_of_time:
            rng_states = collect_rng_states()  # a collective: every rank takes part
            if dist.is_main:
                save_training_checkpoint(run_dir, done, model, optimizer, {**extra_state, "step": done},
                                         tokenizer_dir=tokenizer_dir, keep_last=cfg.keep_last,
                                         rng_states=rng_states, write_fn=write_fn)
            barrier()
        if out_of_time:
            if dist.is_main:
                why = f"--stop-step {done}" if done == cfg.stop_step else f"--max-minutes {cfg.max_minutes:g}"
                print(f"{why}: stopped at step {done} of {cfg.max_steps} after "
                      f"{(time.perf_counter() - started) / 60:.1f} minutes (checkpoint saved; --resume continues)")
            break
    bar.close()
    logger.close()
    if dist.is_main and cfg.objective in ("electra", "electra-15"):
        if cfg.held_out:
            report = held_out_detection(model, PretrainingData(cfg.held_out, seed=cfg.seed), cfg, separate=True)
        else:
            report = held_out_detection(model, PretrainingData(cfg.data, seed=cfg.seed), cfg)
        (run_dir / DETECTION_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(report.format())
    if dist.is_main:

        try:
            plot_curves(run_dir)
        except ElectraError as e:
            print(f"no curves.png: {e}")
    cleanup()
    return run_dir


def held_out_detection(model: Electra, data: Any, cfg: PretrainConfig, batches: int = 16,
                       batch_size: int = 32, separate: bool = False) -> DetectionReport:
    """Detection quality (AUC, recall, ...) on the last ``batches`` batches of the data's first epoch: examples
    the run has not trained on unless it went that far (then the report says so). ``separate``: ``data`` is a
    held-out set (``--held-out``), never trained on."""
    total = data.num_examples(0)
    n = max(1, min(batches, total // batch_size))
    first = max(0, total // batch_size - n)
    report = evaluate_on_data(model, data, n, start=first, batch_size=batch_size, mask_prob=cfg.mask_prob,
                              seed=cfg.seed + 1, temperature=cfg.temperature)
    report.held_out = separate or cfg.max_steps * cfg.batch_size <= first * batch_size
    return report


def _reduce(sums: dict[str, Tensor], n: int, world: int) -> dict[str, float]:
    """Average metric sums over steps (and ranks); tokens are summed over ranks. One host sync."""
    keys = sorted(sums)
    stacked = torch.stack([sums[k].float() for k in keys])
    if world > 1:
        torch.distributed.all_reduce(stacked)
        stacked /= world
    out = {k: float(v) / n for k, v in zip(keys, stacked.tolist())}
    out["tokens"] = out["tokens"] * world
    return out


def _maybe_compile(module: torch.nn.Module) -> torch.nn.Module:
    try:
        return torch.compile(module)
    except Exception as e:  # compilation is an optimisation: fall back cleanly
        print(f"torch.compile unavailable ({e}); running eagerly")
        return module
