"""What the property-based tests (tests/test_fuzz_readers.py) and benchmarks/fuzz.py throw at every reader.

Each target is a Hypothesis strategy of inputs plus a function that feeds one input to a reader (or a writer)
in a scratch folder. The property, checked by :func:`outcome`: the reader returns a result, or raises an
``ElectraError`` whose message is one line; any other exception is a bug. Writers also must leave either a
complete output or none (no half-written folder, no temporary leftovers).
"""

from __future__ import annotations

import atexit
import gzip
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from hypothesis import strategies as st

from electra.errors import ElectraError

FIXTURES = Path(__file__).parent / "fixtures"
VOCAB = FIXTURES / "finetune_vocab"

# ---- building blocks ----------------------------------------------------------------------------------------
ENCODINGS = ("utf-8", "utf-16", "utf-32", "latin-1", "cp1252", "gb18030", "shift_jis")
# Pieces that matter to the readers' grammars, mixed with arbitrary text.
TOKENS = ["\t", "\n", "\r\n", ",", '"', "'", " ", "\x00", "\ufeff", "{", "}", "[", "]", ":", "-DOCSTART-", "O",
          "B-PER", "I-LOC", "E-ORG", "S-MISC", "X-BAD", "0", "1", "2", "-1", "1e309", "nan", "label", "sentence",
          "index", "id", "qid", "text", "text_a", "a", "b", "y", "#1 String", "#2 String", "Quality", "\u00e9",
          "\u4e2d\u6587", "\U0001f600", "\udcff"]


def text_like() -> st.SearchStrategy[str]:
    """Text made of the readers' delimiters and keywords, plus arbitrary characters."""
    piece = st.one_of(st.sampled_from(TOKENS), st.text(max_size=8))
    return st.lists(piece, max_size=60).map("".join)


def encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="surrogatepass" if encoding.startswith("utf") else "replace")


@st.composite
def file_bytes(draw: st.DrawFn, text: st.SearchStrategy[str] | None = None) -> bytes:
    """Any bytes; or reader-shaped text in any encoding; or a huge line; NUL bytes sometimes spliced in."""
    kind = draw(st.sampled_from(["bytes", "text", "huge", "nul"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    body = draw(text if text is not None else text_like())
    enc = draw(st.sampled_from(ENCODINGS))
    try:
        data = encoded(body, enc)
    except UnicodeError:
        data = encoded(body, "utf-8")
    if kind == "huge":
        data += draw(st.sampled_from([b"x", b"word ", "\u4e2d".encode(), b"\t"])) * draw(st.integers(100, 5000))
    if kind == "nul":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" * draw(st.integers(1, 4)) + data[at:]
    return data


JSON_KEYS = ["data", "paragraphs", "context", "qas", "id", "question", "answers", "text", "answer_start",
             "is_impossible", "version", "title", "format", "model", "spec", "head", "module", "class", "args",
             "vocab_size", "hidden_size", "num_layers", "num_heads", "embedding_size", "intermediate_size"]


def json_values() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=12)
    return st.recursive(leaves, lambda c: st.lists(c, max_size=4)
                        | st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=6), c, max_size=5),
                        max_leaves=25)


@st.composite
def squad_like(draw: st.DrawFn) -> Any:
    """A SQuAD-format object with some fields broken, or any JSON value."""
    if draw(st.booleans()):
        return draw(json_values())
    context = draw(st.text(max_size=40))
    value = lambda good: good if draw(st.integers(0, 9)) else draw(json_values())  # noqa: E731 - 1 in 10 broken
    answer = {"text": value(context[:5]), "answer_start": value(draw(st.integers(-3, 50)))}
    qa = {"id": value(draw(st.text(max_size=4))), "question": value(draw(st.text(max_size=20))),
          "answers": value([answer]), "is_impossible": value(draw(st.booleans()))}
    return {"version": "1.1", "data": value([{"title": "t", "paragraphs": value([{"context": value(context),
                                                                                   "qas": value([qa])}])}])}


# ---- targets ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any, Path], Any]  # (input, scratch folder) -> result; raises ElectraError for bad input


def outcome(target: Target, value: Any) -> str:
    """Run one input in a fresh scratch folder: "result" or "error"; anything else raises."""
    with tempfile.TemporaryDirectory(prefix="electra-fuzz-") as tmp:
        try:
            target.run(value, Path(tmp))
        except ElectraError as e:
            message = str(e)
            assert message and "\n" not in message, f"ElectraError message is not one line: {message!r}"
            return "error"
    return "result"


def _write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


# corpus files (.txt, .txt.gz, .jsonl) in every --errors mode, and prepare's shards (a writer) from them
def _corpus(args: tuple[bytes, str, str, bool], tmp: Path) -> Any:
    from electra.data.corpus import Corpus

    data, suffix, errors, compress = args
    if compress:
        data = gzip.compress(data, mtime=0) if len(data) % 3 else data[: len(data) // 2]  # some truncated
    path = _write(tmp, f"in{suffix}", data)
    corpus = Corpus([path], errors=errors, max_line_bytes=64)
    return sum(1 for _ in corpus.lines())


def _prepare(args: tuple[bytes, str], tmp: Path) -> Any:
    from electra.data.prepare import prepare

    data, suffix = args
    path = _write(tmp, f"in{suffix}", data)
    out = tmp / "out"
    try:
        return prepare([path], VOCAB, out, max_seq_len=16, errors="replace", progress=False, max_line_bytes=64)
    except ElectraError:
        leftovers = [p.name for p in tmp.iterdir() if p.name.startswith(".out.")]
        assert not out.exists() and not leftovers, f"failed prepare left {out} or {leftovers}"
        raise


# GLUE-style TSV / CSV / JSONL for every layout kind
GLUE_TASKS = ["sst2", "cola", "mrpc", "lcqmc", "atec", "custom-tsv", "custom-csv", "custom-jsonl"]
GLUE_HEADERS = {"sst2": ["sentence", "label"], "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                "cola": None, "lcqmc": None, "atec": None, "custom-tsv": ["a", "b", "y"], "custom-csv": ["a", "b", "y"],
                "custom-jsonl": ["a", "b", "y"]}
GLUE_WIDTH = {"cola": 4, "lcqmc": 3, "atec": 4}
CELLS = st.one_of(st.sampled_from(["0", "1", "pos", "neg", "2.5", "good film", "", " ", "\u4e2d\u6587", '"q"', "a,b"]),
                  st.text(max_size=6))


@st.composite
def glue_text(draw: st.DrawFn, task: str) -> str:
    """Rows of cells under the task's header (sometimes changed), as the task's TSV, CSV or JSON lines."""
    header = GLUE_HEADERS[task]
    if header is not None and draw(st.integers(0, 3)) == 0:
        header = draw(st.lists(st.sampled_from([*header, "index", "label", "id", ""]), min_size=1, max_size=5))
    n = len(header) if header is not None else GLUE_WIDTH[task]
    width = st.integers(n - 1, n + 1) if draw(st.integers(0, 3)) == 0 else st.just(n)
    rows = draw(st.lists(width.flatmap(lambda k: st.lists(CELLS, min_size=k, max_size=k)), max_size=6))
    if task == "custom-jsonl":
        return "\n".join(json.dumps(dict(zip(header, r))) for r in rows)
    sep = "," if task == "custom-csv" else "\t"
    lines = ([sep.join(header)] if header is not None else []) + [sep.join(r) for r in rows]
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))


GLUE_INPUTS = st.sampled_from(GLUE_TASKS).flatmap(
    lambda task: st.tuples(file_bytes(glue_text(task) | text_like()), st.just(task), st.booleans()))


def _glue(args: tuple[bytes, str, bool], tmp: Path) -> Any:
    from electra.data.glue import custom_task, get_task, read_examples

    data, name, require_labels = args
    if name.startswith("custom"):
        task, suffix = custom_task(["a", "b"], "y"), "." + name.split("-")[1]
    else:
        task, suffix = get_task(name), ".tsv"
    return read_examples(task, _write(tmp, f"train{suffix}", data), require_labels=require_labels)


# SQuAD / CMRC JSON: raw bytes through the file reader, and structured objects through the parser + scorer
def _squad_file(data: bytes, tmp: Path) -> Any:
    from electra.data.squad import read_squad

    return read_squad(_write(tmp, "d.json", data), warn=False)


def _squad_object(args: tuple[Any, Any, str], tmp: Path) -> Any:
    from electra.data.squad import WindowConfig, make_features, parse_squad
    from electra.metrics.squad import score_files

    data, preds, task = args
    examples, _ = parse_squad(data, "d.json")
    make_features(examples, _tokenizer(), WindowConfig(16, 4, 4), training=True)
    if isinstance(preds, dict) and examples:  # mostly predictions for the file's own questions
        preds = {**{e.qid: str(preds.get(e.qid, e.context[:3])) for e in examples}, **preds}
    d = _write(tmp, "d.json", json.dumps(data))
    p = _write(tmp, "p.json", json.dumps(preds))
    return score_files(task, d, p)


def _conll(args: tuple[bytes, bool], tmp: Path) -> Any:
    from electra.data.conll import make_tag_features, read_conll

    data, unlabelled = args
    sentences = read_conll(_write(tmp, "train.txt", data), unlabelled=unlabelled)
    return make_tag_features(sentences, _tokenizer(), {"O": 0, "B-PER": 1}, max_seq_length=8)


# TOML / JSON configs, as files and as decoded values for every config dataclass
def _config_file(args: tuple[bytes, str], tmp: Path) -> Any:
    from electra.config import ModelConfig

    data, suffix = args
    return ModelConfig.load(_write(tmp, f"c{suffix}", data))


CONFIG_CLASSES = ["model", "pretrain", "finetune", "task", "qa", "tagging"]


@st.composite
def config_values(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A config class and field values: known fields with values of any JSON type or near their ranges."""
    from dataclasses import fields

    kind = draw(st.sampled_from(CONFIG_CLASSES))
    names = sorted({f.name for f in fields(_config_class(kind))} - {"discriminator", "preset"}
                   | ({f.name for f in fields(_config_class("encoder"))} if kind == "model" else set()))
    numbers = st.sampled_from([0, 1, -1, 0.5, 1.0, 1.5, 2, 3, 64, 10**9, 10**15, float("inf"), float("nan"), 1e-9])
    value = st.one_of(numbers, json_values(), st.sampled_from(["auto", "cpu", "fp32", "bf16", "gelu", "electra"]))
    return kind, draw(st.dictionaries(st.sampled_from(names), value, max_size=4))


def _config_class(kind: str) -> type:
    from electra.config import EncoderConfig, ModelConfig, PretrainConfig
    from electra.tasks.classification import TaskOptions
    from electra.tasks.qa import QAParams
    from electra.tasks.runner import FinetuneConfig
    from electra.tasks.tagging import TagParams

    return {"encoder": EncoderConfig, "model": ModelConfig, "pretrain": PretrainConfig, "finetune": FinetuneConfig,
            "task": TaskOptions, "qa": QAParams, "tagging": TagParams}[kind]


def _config_values(args: tuple[str, dict[str, Any]], tmp: Path) -> Any:
    from electra.config import ModelConfig, PretrainConfig

    kind, values = args
    if kind == "model":
        return ModelConfig.preset("tiny", source="fuzz", **values)
    if kind == "pretrain":
        return PretrainConfig.for_preset("tiny", source="fuzz", **values)
    required = {"qa": dict(task="squad1", model="m", out="o", train="t"),
                "tagging": dict(task="tags", model="m", out="o", train="t", dev="d")}.get(kind, {})
    return _config_class(kind)(**{**required, **values})


# checkpoint folders: missing, truncated, swapped, corrupted files; configs asking for anything
@cache
def _tokenizer() -> Any:
    from electra.tokenization import load_tokenizer

    return load_tokenizer(VOCAB)


@cache
def _pristine() -> Path:
    """A tiny pre-training run (one training checkpoint), a fine-tuned run and an HF export, made once."""
    from electra.checkpoint import save_checkpoint
    from electra.config import ModelConfig
    from electra.interop.hf_models import export_hf
    from electra.modeling import Electra
    from electra.tasks.heads import ClassificationHead
    from electra.tasks.runner import TaskModel, save_task_model
    from electra.training.checkpointing import save_training_checkpoint
    from electra.training.optim import AdamW

    root = Path(tempfile.mkdtemp(prefix="electra-fuzz-pristine-"))
    atexit.register(shutil.rmtree, root, True)
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", vocab_size=256, num_layers=1, max_position_embeddings=16)
    model = Electra(config)
    save_checkpoint(model, root / "ckpt", tokenizer_dir=VOCAB)
    optimizer = AdamW(model.parameters(), lr=1e-3)
    model.discriminator(torch.ones(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    save_training_checkpoint(root / "run", 1, model, optimizer, {"step": 1}, tokenizer_dir=VOCAB)
    enc = model.discriminator.encoder
    save_task_model(TaskModel(enc, ClassificationHead(enc.config), {"task": "sst2"}), root / "task" / "best", VOCAB)
    export_hf(root / "ckpt", root / "hf")
    return root


CHECKPOINT_KINDS = ["checkpoint", "training", "task", "hf", "tokenizer"]
MUTATIONS = ["delete", "truncate", "flip", "swap", "replace", "json"]


@st.composite
def checkpoint_damage(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, Any]]]:
    """Which saved folder, and a few (mutation, file, argument) to apply to it."""
    kind = draw(st.sampled_from(CHECKPOINT_KINDS))
    files = sorted(p.relative_to(_folder(kind)).as_posix() for p in _folder(kind).rglob("*") if p.is_file())
    steps = draw(st.lists(st.tuples(st.sampled_from(MUTATIONS), st.sampled_from(files),
                                    st.one_of(st.floats(0, 1), st.binary(max_size=64), json_values())),
                          min_size=1, max_size=3))
    return kind, steps


def _folder(kind: str) -> Path:
    root = _pristine()
    return {"checkpoint": root / "ckpt", "training": root / "run" / "checkpoints" / "step-00000001",
            "task": root / "task" / "best", "hf": root / "hf" / "discriminator",
            "tokenizer": root / "ckpt" / "tokenizer"}[kind]


def _damage(folder: Path, steps: list[tuple[str, str, Any]]) -> None:
    for op, name, arg in steps:
        f = folder / name
        if not f.is_file():
            continue
        data = f.read_bytes()
        if op == "delete":
            f.unlink()
        elif op == "truncate":
            f.write_bytes(data[: int(len(data) * (arg if isinstance(arg, float) else 0.5))])
        elif op == "flip" and data:
            at = int((len(data) - 1) * (arg if isinstance(arg, float) else 0.5))
            f.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
        elif op == "swap":
            other = sorted(p for p in folder.rglob("*") if p.is_file() and p != f)
            if other:
                o = other[len(data) % len(other)]
                od = o.read_bytes()
                o.write_bytes(data)
                f.write_bytes(od)
        elif op == "replace":
            f.write_bytes(arg if isinstance(arg, bytes) else b"")
        elif op == "json" and f.suffix == ".json":
            arg = arg.decode("latin-1") if isinstance(arg, bytes) else arg
            try:
                obj = json.loads(data)
            except ValueError:
                obj = {}
            if isinstance(obj, dict) and obj:  # change one field (the model's shape, a format, ...) or all
                key = sorted(obj)[len(data) % len(obj)]
                obj[key] = arg
                if isinstance(obj.get("model"), dict) and isinstance(arg, (int, float)):
                    obj["model"]["vocab_size"] = arg  # e.g. an absurd size: refused before allocating
            else:
                obj = arg
            f.write_text(json.dumps(obj))


def _checkpoint(args: tuple[str, list[tuple[str, str, Any]]], tmp: Path) -> Any:
    from electra.checkpoint import find_latest_checkpoint, load_checkpoint
    from electra.interop.hf import electra_from_hf
    from electra.interop.hf_models import export_hf
    from electra.tasks.runner import load_task_model
    from electra.tokenization import load_tokenizer
    from electra.training.checkpointing import load_training_checkpoint
    from electra.training.optim import AdamW

    kind, steps = args
    folder = tmp / "copy"
    shutil.copytree(_folder(kind), folder)
    _damage(folder, steps)
    if kind == "checkpoint":
        load_checkpoint(folder)
        out = tmp / "export"
        try:
            return export_hf(folder, out)
        except ElectraError:
            assert not out.exists(), "a failed export left a partial output"
            raise
    if kind == "training":
        run = tmp / "run"
        (run / "checkpoints").mkdir(parents=True)
        folder.rename(run / "checkpoints" / "step-00000001")
        found = find_latest_checkpoint(run)
        path = found or run / "checkpoints" / "step-00000001"
        model = load_checkpoint(_folder("checkpoint"))
        return load_training_checkpoint(path, model, AdamW(model.parameters(), lr=1e-3), verify=found is not None)
    if kind == "task":
        model = load_task_model(folder)
        return model(_batch())
    if kind == "hf":
        return electra_from_hf(folder)
    tok = load_tokenizer(folder)
    return tok.encode("hello world").ids


def _batch() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4, dtype=torch.long)}


# prepared data folders (meta.json, shards, offsets) read by pre-training
@cache
def _prepared() -> Path:
    from electra.data.prepare import prepare

    root = Path(tempfile.mkdtemp(prefix="electra-fuzz-data-"))
    atexit.register(shutil.rmtree, root, True)
    text = "\n".join(f"the film is good {i}\nand the story is bad\n" for i in range(40))
    _write(root, "in.txt", text)
    prepare([root / "in.txt"], VOCAB, root / "data", max_seq_len=16, progress=False)
    return root / "data"


@st.composite
def data_damage(draw: st.DrawFn) -> list[tuple[str, str, Any]]:
    files = sorted(p.relative_to(_prepared()).as_posix() for p in _prepared().rglob("*") if p.is_file())
    return draw(st.lists(st.tuples(st.sampled_from(MUTATIONS), st.sampled_from(files),
                                   st.one_of(st.floats(0, 1), st.binary(max_size=64), json_values())),
                         min_size=1, max_size=3))


def _prepared_data(steps: list[tuple[str, str, Any]], tmp: Path) -> Any:
    from electra.data.pretraining_data import PretrainingData

    folder = tmp / "data"
    shutil.copytree(_prepared(), folder)
    _damage(folder, steps)
    data = PretrainingData(folder)
    return next(data.batches(4))


@st.composite
def vectors_text(draw: st.DrawFn) -> str:
    """word2vec / GloVe text: an optional "count dim" header, then a word and numbers per line."""
    dim = draw(st.integers(1, 4))
    number = st.sampled_from(["0.5", "-1", "1e3", "nan", "inf", "x", "", "1e999"]) | st.floats().map(str)
    words = st.sampled_from(["the", "film", "good", "[CLS]", "##s", "\u4e2d", "a b", ""]) | st.text(max_size=4)
    rows = draw(st.lists(st.tuples(words, st.lists(number, min_size=dim - 1, max_size=dim + 1)), max_size=6))
    header = draw(st.sampled_from(["", f"{len(rows)} {dim}\n", f"{len(rows) + 1} {dim}\n", "x y\n"]))
    return header + "\n".join(w + " " + " ".join(v) for w, v in rows)


def _word_vectors(args: tuple[bytes, str], tmp: Path) -> Any:
    from electra.init.embeddings import read_word_vectors

    data, suffix = args
    if suffix == ".txt.gz":
        data = gzip.compress(data, mtime=0) if len(data) % 3 else data[: len(data) // 2]  # some truncated
    return read_word_vectors(_write(tmp, f"v{suffix}", data))


CONLL_TEXT = st.lists(st.tuples(st.sampled_from(["EU", "rejects", "-DOCSTART-", "", "Peter", "\u4e2d", "x y z"]),
                                st.sampled_from(["O", "B-PER", "I-LOC", "X-BAD", "", "B-", "NNP O"])),
                      max_size=12).map(lambda rows: "\n".join(f"{w} {t}".strip() for w, t in rows))
TARGETS: list[Target] = [
    Target("corpus", st.tuples(file_bytes(), st.sampled_from([".txt", ".jsonl", ".txt.gz"]),
                               st.sampled_from(["strict", "replace", "skip"]), st.booleans()), _corpus),
    Target("prepare", st.tuples(file_bytes(), st.sampled_from([".txt", ".jsonl"])), _prepare),
    Target("glue", GLUE_INPUTS, _glue),
    Target("squad-file", file_bytes(squad_like().map(json.dumps) | text_like()), _squad_file),
    Target("squad-object", st.tuples(squad_like(), st.dictionaries(st.text(max_size=4), json_values(), max_size=3)
                                     | json_values(), st.sampled_from(["squad1", "squad2", "cmrc2018"])),
           _squad_object),
    Target("conll", st.tuples(file_bytes(CONLL_TEXT | text_like()), st.booleans()), _conll),
    Target("config-file", st.tuples(file_bytes(json_values().map(json.dumps) | text_like()),
                                    st.sampled_from([".toml", ".json"])), _config_file),
    Target("config-values", config_values(), _config_values),
    Target("checkpoint", checkpoint_damage(), _checkpoint),
    Target("prepared-data", data_damage(), _prepared_data),
    Target("word-vectors", st.tuples(file_bytes(vectors_text() | text_like()), st.sampled_from([".txt", ".bin",
                                                                                                 ".txt.gz"])),
           _word_vectors),
]
