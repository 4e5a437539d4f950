"""Command-line options -> fine-tuning configs, in one place.

Every default lives in the dataclass that owns the setting (:class:`FinetuneConfig`, :class:`TaskOptions`,
:class:`QAParams`, :class:`TagParams`, :class:`RankingOptions`) or, where it depends on the task, in the task
registry (default epochs and length) and the official recipe by model width (learning rate, layer-wise decay).
``electra finetune`` declares its options without defaults and these functions pass on only what the user set,
so no default is written twice. ``args`` is an ``argparse.Namespace`` or any object with the attributes; a
missing attribute counts as not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from electra.checkpoint import read_checkpoint_meta, resolve_checkpoint
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.tasks import classification, qa, ranking, search, tagging
from electra.tasks.classification import Augmenter, TaskOptions
from electra.tasks.runner import FinetuneConfig, RunLoader, official_hparams, read_task_meta

CONFIG_OPTIONS = ("lr", "epochs", "max_steps", "batch_size", "warmup_fraction", "weight_decay", "layerwise_decay",
                  "bias_correction", "eval_every", "seed", "device", "precision", "save_every", "keep_last")


def given(args: Any, *names: str, **renamed: str) -> dict[str, Any]:
    """The options in ``names`` (and ``renamed``: option -> field name) that ``args`` carries, not None."""
    pairs = [(n, n) for n in names] + list(renamed.items())
    return {field: getattr(args, option) for option, field in pairs if getattr(args, option, None) is not None}


def arg(args: Any, name: str, default: Any = None) -> Any:
    """``args.name`` when given (even 0 or ""), else ``default``: an explicit value is never replaced silently."""
    value = getattr(args, name, None)
    return default if value is None else value


def finetune_config_from_args(args: Any, default_epochs: float) -> FinetuneConfig:
    """The official recipe by model width (LR, layer-wise decay), the task's epochs, then whatever ``args`` sets
    (``--layerwise-decay 1`` turns the decay off)."""
    ckpt = resolve_checkpoint(args.model)
    shape = ModelConfig.from_dict(read_checkpoint_meta(ckpt)["model"], source=str(ckpt)).discriminator
    values: dict[str, Any] = {**official_hparams(shape), "epochs": default_epochs, **given(args, *CONFIG_OPTIONS)}
    if values["layerwise_decay"] == 1:
        values["layerwise_decay"] = None
    if getattr(args, "quiet", False):
        values["progress"] = False
    return FinetuneConfig(**values)


def _no_augment(args: Any) -> None:
    if arg(args, "augment", 0):
        raise ElectraError(f"--augment applies to classification tasks, not --task {args.task}")


# ---- one function per family and command (the task registry points at these) ----------------------------------
def finetune_classification(args: Any, config: FinetuneConfig, augmenter: Augmenter | None = None
                            ) -> dict[str, Any]:
    """``electra finetune --task sst2|...|custom``: one run, ``--seeds N`` runs (median), or a ``--search`` grid."""
    fields = args.text_fields.split(",") if getattr(args, "text_fields", None) else None
    task = classification.resolve_task(args.task, fields, getattr(args, "label_field", None),
                                       bool(getattr(args, "regression", False)))
    options = TaskOptions(**given(args, "max_seq_len", "head", "pooling", "token_dropout", "word_swap", "train_limit",
                                  "dev_limit", "random_init", "tokenizer", "augment"),
                          swap_pairs=False if getattr(args, "no_swap_pairs", False) else None)
    seeds = arg(args, "seeds", 1)
    if getattr(args, "search", None):
        if getattr(args, "resume", False):
            raise ElectraError("--search cannot --resume (start the search again in a new --out)")
        return search.search(task, args.model, args.data, args.out, config, options, seeds,
                             search.parse_grid(args.search), augmenter)
    return classification.finetune_seeds(task, args.model, args.data, args.out, config, options, seeds,
                                         resume=bool(getattr(args, "resume", False)), augmenter=augmenter)


def finetune_qa(args: Any, config: FinetuneConfig, augmenter: Augmenter | None = None) -> dict[str, Any]:
    """``electra finetune --task squad1|squad2|cmrc2018 --data FILE|DIR`` (a directory: ``*train*.json`` and
    ``*dev*.json``; one file: split by article)."""
    _no_augment(args)
    train, dev = qa.resolve_qa_data(args.data)
    params = qa.QAParams(args.task, args.model, args.out, train, arg(args, "dev_file", dev),
                         **given(args, "dev_fraction", "doc_stride", "max_query_length", "n_best",
                                 "max_answer_length", "random_init", "tokenizer", max_seq_len="max_seq_length",
                                 train_limit="max_train_questions", dev_limit="max_dev_questions"),
                         joint=not getattr(args, "independent", False),
                         answerable=False if getattr(args, "no_answerable", False) else None)
    return qa.finetune_qa(params, config, resume=bool(getattr(args, "resume", False)))


def finetune_tagging(args: Any, config: FinetuneConfig, augmenter: Augmenter | None = None) -> dict[str, Any]:
    """``electra finetune --task conll2003 --data DIR`` (train.txt/valid.txt) or ``--task tags --data TRAIN
    --dev-file DEV``."""
    _no_augment(args)
    task = tagging.get_task(args.task)
    train = tagging.resolve_files(task, args.data, "train")
    dev = arg(args, "dev_file") or (tagging.resolve_files(task, args.data, "dev") if Path(args.data).is_dir()
                                    else None)
    if dev is None:
        raise ElectraError(f"--task {task.name}: give the dev file with --dev-file")
    params = tagging.TagParams(task.name, args.model, args.out, str(train), str(dev),
                               **given(args, "random_init", "tokenizer", max_seq_len="max_seq_length",
                                       train_limit="max_train_sentences", dev_limit="max_dev_sentences"))
    return tagging.finetune_tagging(params, config, resume=bool(getattr(args, "resume", False)))


def finetune_ranking(args: Any, config: FinetuneConfig, augmenter: Augmenter | None = None) -> dict[str, Any]:
    """``electra finetune --task asr-nbest|mt-rerank|mutual|ranking --data FILE|DIR``."""
    _no_augment(args)
    options = ranking.RankingOptions(**given(args, "max_seq_len", "temperature", "dev_fraction", "train_limit",
                                             "dev_limit", "random_init", "tokenizer"))
    return ranking.finetune_ranking(args.task, args.model, args.data, args.out, config, options,
                                    arg(args, "dev_file"), resume=bool(getattr(args, "resume", False)))


def classification_runs(args: Any) -> list[str]:
    """``--model RUN`` (one seed run) and/or ``--ensemble RUN...`` (a multi-seed directory counts as all)."""
    if getattr(args, "ensemble", None):
        return list(args.ensemble) + ([args.model] if args.model else [])
    if not args.model:
        raise ElectraError("give --model RUN or --ensemble RUN...")
    return [str(classification.single_run(args.model))]


def evaluate_classification(args: Any) -> dict[str, Any]:
    return classification.evaluate_runs(classification_runs(args), args.data, arg(args, "split", "dev"),
                                        getattr(args, "task", None), arg(args, "device", "auto"))


def evaluate_qa(args: Any) -> dict[str, Any]:
    """``electra evaluate --model RUN --data FILE|DIR`` for a QA run (a directory: its ``*dev*.json``)."""
    data = Path(args.data)
    if data.is_dir():
        devs = sorted(data.glob("*dev*.json")) or sorted(data.glob("*.json"))
        if not devs:
            raise ElectraError(f"{data}: no .json file to evaluate on")
        data = devs[0]
    return qa.evaluate_file(args.model, data)


def evaluate_tagging(args: Any) -> dict[str, Any]:
    """``electra evaluate --model RUN --data FILE|DIR [--split dev|test]``."""
    task = tagging.get_task(read_task_meta(args.model)["spec"]["task"])
    return tagging.evaluate_file(args.model, tagging.resolve_files(task, args.data, arg(args, "split", "dev")))


def predict_classification(args: Any, load: RunLoader | None = None) -> int:
    """``electra predict``: ``index<TAB>prediction`` in the GLUE submission format."""
    return classification.predict_file(classification_runs(args), args.input, args.out, getattr(args, "task", None),
                                       arg(args, "device", "auto"), load, bool(getattr(args, "label_names", False)))


def predict_qa(args: Any, load: RunLoader | None = None) -> int:
    """``electra predict --model RUN --input FILE --out OUT``: OUT.json gets the official predictions (with
    OUT.nbest.json and, for SQuAD 2.0, OUT.na_probs.json beside it); any other OUT is a directory."""
    return qa.write_predictions(args.model, args.input, args.out, load)


def predict_tagging(args: Any, load: RunLoader | None = None) -> int:
    return tagging.predict_file(args.model, args.input, args.out, load)
