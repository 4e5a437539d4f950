"""Pre-training step throughput: the Keras RTD step (TensorFlow backend, XLA off and on) vs our PyTorch step.

Same config, same starting weights (the Keras models are loaded from the PyTorch one), same batch, fp32, same
thread count (TensorFlow's intra-op pool sized like torch's), measured in rounds that alternate between the
three implementations so machine noise hits them alike:
  torch      ``electra.training.pretrainer.train_step`` + ``ReplacedTokenDetection`` + our AdamW (eager),
  keras      ``electra.tf.pretraining.ReplacedTokenDetection.train_on_batch`` (a ``tf.function``; XLA off),
  keras-xla  the same with ``jit_compile=True``.
Each Keras variant is traced/compiled once before timing. Prints a table (median tokens/s over rounds, ratio
to torch) and a final JSON line.

  OMP_WAIT_POLICY=PASSIVE python benchmarks/keras_step.py --preset small --batch 16 --seq 128 --steps 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import harness  # noqa: E402
from electra.config import ModelConfig  # noqa: E402
from electra.modeling import Electra  # noqa: E402
from electra.pretraining import ReplacedTokenDetection  # noqa: E402
from electra.training.optim import AdamW, param_groups  # noqa: E402
from electra.training.pretrainer import StepInputs, train_step  # noqa: E402
from pretrain_throughput import SPECIAL, make_batch  # noqa: E402


class TorchStep:
    def __init__(self, model: Electra, seq: int):
        self.obj = ReplacedTokenDetection(model, SPECIAL, seq).train()
        self.opt = AdamW(param_groups(model, 1e-4, 0.01), lr=1e-4)
        self.step = 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        out = train_step(self.obj, self.opt, StepInputs([batch], [0]), self.step, 0, 1.0)
        self.step += 1
        return float(out["loss"])


class KerasStep:
    def __init__(self, model: Electra, seq: int, xla: bool):
        from electra.tf.pretraining import ReplacedTokenDetection as KerasRTD
        from electra.tf.training import make_optimizer
        from electra.tf.weights import from_torch

        self.obj = KerasRTD(from_torch(model), SPECIAL, seq, seed=0)
        self.obj.compile(optimizer=make_optimizer(1e-4, 10_000, 0), jit_compile=xla)

    def __call__(self, batch: dict[str, np.ndarray]) -> float:
        return float(self.obj.train_on_batch(batch, return_dict=True)["loss"])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per implementation per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="default: torch's")
    p.add_argument("--skip", nargs="*", default=[], choices=["keras", "keras-xla"], help="leave a variant out")
    args = p.parse_args(argv)
    harness.set_threads(args.threads)
    from electra.tf import keras_module

    keras = keras_module()  # sizes TensorFlow's pools like torch's, before its runtime starts
    cfg = ModelConfig.preset(args.preset, vocab_size=args.vocab, max_position_embeddings=max(512, args.seq))
    torch.manual_seed(0)
    model = Electra(cfg)
    tb = make_batch(args.batch, args.seq, args.vocab)
    nb = {k: v.numpy().astype(np.int32) for k, v in tb.items()}
    impls: dict[str, tuple] = {}
    compile_s: dict[str, float] = {}
    for name, xla in (("keras", False), ("keras-xla", True)):
        if name in args.skip:
            continue
        step = KerasStep(model, args.seq, xla)
        t = time.perf_counter()
        step(nb)  # trace (and XLA-compile) once
        compile_s[name] = time.perf_counter() - t
        impls[name] = (step, nb)
    impls = {"torch": (TorchStep(model, args.seq), tb), **impls}  # after the Keras copies: same start weights
    impls["torch"][0](tb)  # warm-up
    losses: dict[str, float] = {}

    def turn(name: str) -> None:
        step, batch = impls[name]
        for _ in range(args.steps):
            losses[name] = step(batch)

    times = harness.alternate({n: lambda _, n=n: turn(n) for n in impls}, args.rounds, reverse_odd=True)
    tokens = args.batch * args.seq * args.steps
    tps = {n: tokens / harness.median(ts) for n, ts in times.items()}
    print(f"{args.preset} (vocab {args.vocab}), batch {args.batch} x {args.seq}, fp32, {torch.get_num_threads()} "
          f"threads, {args.rounds} rounds x {args.steps} steps, keras {keras.__version__} "
          f"({keras.backend.backend()})")
    print(harness.table(
        [("implementation", "<12"), ("tokens/s", ">10.0f"), ("vs torch", ">9.2f"), ("ms/step", ">9.1f"),
         ("first call s", ">13.1f"), ("last loss", ">10.3f")],
        [(n, tps[n], tps[n] / tps["torch"], 1000 * harness.median(times[n]) / args.steps,
          compile_s.get(n, float("nan")), losses[n]) for n in impls], sep=" "))
    result = {"benchmark": "keras_step", "preset": args.preset, "vocab": args.vocab, "batch": args.batch,
              "seq": args.seq, "threads": torch.get_num_threads(), "rounds": args.rounds, "steps": args.steps,
              "tokens_per_s": {n: round(v, 1) for n, v in tps.items()},
              "ratio_vs_torch": {n: round(v / tps["torch"], 3) for n, v in tps.items() if n != "torch"},
              "first_call_s": {n: round(v, 2) for n, v in compile_s.items()},
              "keras": keras.__version__, "backend": keras.backend.backend()}
    return harness.emit(result)


if __name__ == "__main__":
    main()
