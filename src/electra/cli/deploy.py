"""`electra export`, `electra import-hf`, `electra serve`: other formats in and out, and the HTTP service."""

from __future__ import annotations

import argparse
import dataclasses
import json

from electra.cli.common import add_backend_args
from electra.errors import ElectraError
from electra.export.onnx import export_onnx, read_meta
from electra.interop.hf import EXPORT_KINDS, import_hf
from electra.interop.hf_bert import DEFAULT_GENERATOR_INIT, import_bert
from electra.interop.hf_models import MODEL_TYPES, export_hf, exported_class, import_model
from electra.serve.limits import Limits
from electra.serve.server import serve


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to Hugging Face transformers format, or a checkpoint "
                                      "or fine-tuned run to ONNX")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or run folder, or (onnx) a fine-tuned run")
    p.add_argument("--format", choices=["hf", "onnx", "tf-savedmodel"], default="hf",
                   help="hf (transformers), onnx, or tf-savedmodel (TensorFlow Serving; needs electra[tf])")
    p.add_argument("--out", required=True, help="output directory (a checkpoint gets discriminator/ and generator/)")
    p.add_argument("--quantize", choices=["int8", "int8-tensor"],
                   help="onnx: int8 dynamic quantization of the encoder; int8: activations per row (each input's "
                        "result independent of its batch mates), int8-tensor: per tensor (onnxruntime's default)")
    p.add_argument("--calibration", help="onnx, int8-tensor: text file (one input per line, TAB between a pair's "
                                         "texts; the first 1,000 lines) to smooth activations on (SmoothQuant) "
                                         "before quantizing")
    p.add_argument("--opset", type=int, default=17, help="onnx: opset version (default 17)")
    p.add_argument("--no-optimize", action="store_true", help="onnx: skip onnxruntime's transformer fusions")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> None:
    if args.format == "tf-savedmodel":
        if args.quantize or args.no_optimize or args.calibration:
            raise ElectraError("--quantize/--no-optimize/--calibration apply to --format onnx only")
        from electra.tf.export import export_savedmodel

        for folder in export_savedmodel(args.checkpoint, args.out):
            print(f"wrote {folder} (SavedModel, signature serving_default)")
        return
    if args.format == "onnx":


        for folder in export_onnx(args.checkpoint, args.out, quantize=args.quantize, opset=args.opset,
                                  optimize=not args.no_optimize, calibration=args.calibration):
            meta = read_meta(folder)
            fused = ", ".join(f"{k} {v}" for k, v in meta["fused_operators"].items()) or "none"
            print(f"wrote {folder / 'model.onnx'} ({meta['kind']}; fused: {fused}; "
                  f"{meta['quantization'] or 'fp32'}; parity {json.dumps(meta['parity'])})")
        return
    if args.quantize or args.no_optimize or args.calibration:
        raise ElectraError("--quantize/--no-optimize/--calibration apply to --format onnx only")
    out = export_hf(args.checkpoint, args.out)
    written = [f"{out / kind} ({exported_class(out / kind)})" for kind in EXPORT_KINDS if (out / kind).is_dir()]
    print("wrote " + " and ".join(written))


def add_import_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-hf", help="import a transformers checkpoint directory (ELECTRA, BERT, RoBERTa, "
                                         "XLM-RoBERTa, DeBERTa-v2/v3)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="any supported transformers directory (config.json + weights); its model_type "
                                     f"decides how: {', '.join(MODEL_TYPES)} (electra: the discriminator)")
    src.add_argument("--discriminator", help="ELECTRA discriminator directory with config.json + weights")
    src.add_argument("--bert", help="BERT-architecture directory (BertModel / BertForMaskedLM / "
                                    "BertForPreTraining; any tokenizer.json): its body becomes the discriminator; "
                                    "or all-MiniLM-L6-v2 / multilingual-e5-small, the encoders "
                                    "requirements-models.lock installs")
    p.add_argument("--generator", help="generator directory (optional): ELECTRA's with --discriminator or --model "
                                       "of an ELECTRA, a DebertaV2ForMaskedLM with --model of a DeBERTa-v2")
    p.add_argument("--generator-size", type=float,
                   help="with --bert / --model (not ELECTRA): generator width as a fraction of the body's (default 1 "
                        "with truncate; 0.25 with new)")
    p.add_argument("--generator-depth", type=float, help="with --bert / --model: generator depth as a fraction "
                                                         "(default 1/6 with truncate; 1 with new)")
    p.add_argument("--generator-init", choices=["new", "truncate"],
                   help="with --bert / --model: the body's lowest blocks + its MLM head when it has one (truncate, "
                        "the default), or a new generator")
    p.add_argument("--seed", type=int, default=0, help="with --bert / --model: seed of the new weights")
    p.add_argument("--out", required=True, help="our checkpoint directory to write")
    p.set_defaults(handler=run_import_hf)


def run_import_hf(args: argparse.Namespace) -> None:
    if args.model is not None:
        out, report = import_model(args.model, args.out, generator_dir=args.generator,
                                   generator_init=args.generator_init, generator_size=args.generator_size,
                                   generator_depth=args.generator_depth, seed=args.seed)
        print(report)
        print(f"wrote checkpoint {out}")
        return
    if args.bert is None:
        if args.generator_size is not None or args.generator_depth is not None or args.generator_init is not None:
            raise ElectraError("--generator-size/--generator-depth/--generator-init apply to --bert imports only")

        print(f"wrote checkpoint {import_hf(args.discriminator, args.out, args.generator)}")
        return
    if args.generator is not None:
        raise ElectraError("--generator goes with --discriminator (ELECTRA pairs); --bert builds its own generator")

    out, report = import_bert(args.bert, args.out, generator_init=args.generator_init or DEFAULT_GENERATOR_INIT,
                              seed=args.seed, generator_size=args.generator_size, generator_depth=args.generator_depth)
    print(report.format())
    print(f"wrote checkpoint {out}")


LIMIT_HELP = {  # --help of each serve limit; the defaults are Limits' (electra.serve.limits)
    "max_body_bytes": "larger bodies get 413",
    "max_inputs": "inputs per request, else 422",
    "max_input_tokens": "tokens per input, else 422 (default: the model's maximum length); inputs are never "
                        "truncated or split",
    "max_batch_tokens": "padded tokens per forward pass",
    "max_batch_size": "inputs per forward pass",
    "max_wait_ms": "how long an input waits for batch mates",
    "max_queue": "queued inputs per model and task, else 429",
    "linger_bytes": "a 413 answered before its body arrived: the rest of the body read and discarded up to this "
                    "many bytes, so every client reads the answer",
    "linger_seconds": "... for at most this long",
}


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP service + web page: detect, fill, correct, rescore; classify, answer, "
                                     "tag, rank with fine-tuned runs")
    p.add_argument("--model", required=True, nargs="+", action="extend", metavar="[NAME=]RUN",
                   help="checkpoint/run folder (detect + fill), fine-tuned run (classify/answer/tag/rank) or ONNX "
                        "export folder; repeat for several")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    add_backend_args(p)
    p.add_argument("--threads", type=int, help="inference threads (default: torch's, one per core)")
    defaults = Limits()
    for f in dataclasses.fields(Limits):
        default = getattr(defaults, f.name)
        kind = float if isinstance(default, float) else int
        shown = "" if default is None else f" (default {default})"
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, help=LIMIT_HELP[f.name] + shown)
    p.add_argument("--graceful-seconds", type=float, default=30.0, help="on SIGTERM/SIGINT: time for requests "
                                                                       "in flight to finish")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> None:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Limits) if getattr(args, f.name) is not None}
    serve(args.model, args.host, args.port, args.backend, args.precision, Limits(**given).check(), args.threads,
          args.graceful_seconds, args.log_level)
