"""The ``electra`` command. It only parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from electra.errors import ElectraError

Handler = Callable[[argparse.Namespace], int | None]


# ---- export / import ----------------------------------------------------------------------------------
def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to Hugging Face transformers format")
    p.add_argument("--checkpoint", required=True, help="our checkpoint directory")
    p.add_argument("--format", choices=["hf"], default="hf")
    p.add_argument("--out", required=True, help="output directory (gets discriminator/ and generator/)")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> None:
    from electra.hf import export_hf

    out = export_hf(args.checkpoint, args.out)
    print(f"wrote {out}/discriminator (ElectraForPreTraining) and {out}/generator (ElectraForMaskedLM)")


def add_import_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-hf", help="import transformers ELECTRA checkpoint directories")
    p.add_argument("--discriminator", required=True, help="directory with config.json + weights")
    p.add_argument("--generator", help="generator directory (optional)")
    p.add_argument("--out", required=True, help="our checkpoint directory to write")
    p.set_defaults(handler=run_import_hf)


def run_import_hf(args: argparse.Namespace) -> None:
    from electra.hf import import_hf

    out = import_hf(args.discriminator, args.out, args.generator)
    print(f"wrote checkpoint {out}")


# ---- tokenizer / prepare (data pipeline) --------------------------------------------------------------
def add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a WordPiece tokenizer, or build one from a vocab.txt")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    t = tsub.add_parser("train", help="train WordPiece (BERT normaliser/pre-tokeniser) on raw text")
    t.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help=".txt/.txt.gz/.jsonl files or folders")
    t.add_argument("--out", required=True, help="tokenizer directory to write")
    t.add_argument("--vocab-size", type=int, default=30522)
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--limit-alphabet", type=int, default=None,
                   help="keep only the N most frequent characters (default: all, as Chinese needs)")
    _add_case(t)
    _add_corpus_options(t)
    t.set_defaults(handler=run_tokenizer_train)
    v = tsub.add_parser("from-vocab", help="make a tokenizer directory from a vocab.txt (e.g. BERT's)")
    v.add_argument("--vocab", required=True, help="vocab.txt: one token per line, id = line number")
    v.add_argument("--out", required=True, help="tokenizer directory to write")
    _add_case(v)
    v.set_defaults(handler=run_tokenizer_from_vocab)


def _add_case(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lowercase", dest="lowercase", action="store_true", default=True,
                   help="lower-case and strip accents (default, BERT uncased)")
    g.add_argument("--cased", dest="lowercase", action="store_false", help="keep case and accents")


def _add_corpus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-field", default="text", help="field of .jsonl records holding the text")
    p.add_argument("--errors", choices=["strict", "replace", "skip"], default="strict",
                   help="bad UTF-8 or JSON: stop (strict), replace bytes / skip records, or skip lines")


def run_tokenizer_train(args: argparse.Namespace) -> None:
    from electra.data.corpus import Corpus
    from electra.tokenization import train_tokenizer

    corpus = Corpus(args.input, text_field=args.text_field, errors=args.errors)
    tok = train_tokenizer(corpus.texts(), args.out, args.vocab_size, lowercase=args.lowercase,
                          min_frequency=args.min_frequency, limit_alphabet=args.limit_alphabet)
    st = corpus.stats
    print(f"wrote {args.out}: {tok.get_vocab_size():,} tokens from {st.files} files, "
          f"{st.documents:,} documents, {st.lines:,} lines")
    for reason, n in sorted({**st.skipped, **st.altered}.items()):
        print(f"  {n:,} {reason} (e.g. {'; '.join(st.notes.get(reason, []))})")


def run_tokenizer_from_vocab(args: argparse.Namespace) -> None:
    from electra.tokenization import tokenizer_from_vocab

    tok = tokenizer_from_vocab(args.vocab, args.out, lowercase=args.lowercase)
    print(f"wrote {args.out}: {tok.get_vocab_size():,} tokens ({'uncased' if args.lowercase else 'cased'})")


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="tokenize raw text into token shards for pre-training")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory (tokenizer.json or vocab.txt)")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help=".txt/.txt.gz/.jsonl files or folders")
    p.add_argument("--out", required=True, help="data directory to write")
    p.add_argument("--max-seq-len", type=int, default=128,
                   help="default example length (stored in meta.json)")
    p.add_argument("--workers", type=int, default=0,
                   help="tokenizer processes (0: one process, the tokenizer's own threads)")
    p.add_argument("--seed", type=int, default=0, help="default shuffling seed (stored in meta.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if made with another tokenizer")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_corpus_options(p)
    p.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> None:
    from electra.data.prepare import prepare

    summary = prepare(args.input, args.tokenizer, args.out, args.max_seq_len, workers=args.workers,
                      seed=args.seed, text_field=args.text_field, errors=args.errors,
                      overwrite=args.overwrite, progress=not args.quiet)
    print(summary.format())


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_export, add_import_hf, add_tokenizer, add_prepare]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="electra", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except ElectraError as e:
        print(f"electra: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("electra: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
