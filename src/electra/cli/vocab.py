"""`electra trim-vocab`: a checkpoint's vocabulary cut down to the pieces a corpus uses (:mod:`electra.vocab_trim`)."""

from __future__ import annotations

import argparse

from electra.vocab_trim import trim_vocab


def add_trim_vocab(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trim-vocab", help="keep only the vocabulary a corpus uses: tokenizer, embedding rows and "
                                          "config remapped together (outputs unchanged on text it covers)")
    p.add_argument("--model", required=True, help="checkpoint or run folder (with its tokenizer/ folder)")
    p.add_argument("--corpus", required=True, nargs="+", action="extend", metavar="PATH",
                   help="text whose pieces to keep: .txt/.txt.gz/.jsonl files or folders, one text per line")
    p.add_argument("--out", required=True, help="checkpoint directory to write (a new folder)")
    p.add_argument("--min-count", type=int, default=1,
                   help="keep pieces the corpus uses at least this often (default 1); special tokens always stay")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_trim_vocab)


def run_trim_vocab(args: argparse.Namespace) -> None:
    report = trim_vocab(args.model, args.corpus, args.out, min_count=args.min_count, overwrite=args.overwrite,
                        progress=not args.quiet)
    print(report.format())
