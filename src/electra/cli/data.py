"""`electra tokenizer`, `electra prepare`, `electra wordvectors`: raw text to a tokenizer, token shards and word
vectors."""

from __future__ import annotations

import argparse

from electra.data.corpus import Corpus
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.init.wordvectors import train_word_vectors
from electra.tokenization import MODELS, is_lowercase, tokenizer_from_vocab, train_tokenizer


def add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a WordPiece or Unigram tokenizer, or build one from a vocab.txt")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    t = tsub.add_parser("train", help="train a tokenizer on raw text: WordPiece (BERT's normaliser and "
                                      "pre-tokeniser; English) or Unigram (SentencePiece's; Chinese, multilingual)")
    t.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help=".txt/.txt.gz/.jsonl files or folders")
    t.add_argument("--out", required=True, help="tokenizer directory to write")
    t.add_argument("--model", choices=MODELS, default="wordpiece",
                   help="wordpiece (default): BERT's, special tokens [PAD] [UNK] [CLS] [SEP] [MASK] = ids 0-4; "
                        "unigram: SentencePiece's as XLM-R, <s> <pad> </s> <unk> = ids 0-3, <mask> the last id")
    t.add_argument("--vocab-size", type=int, default=30522)
    t.add_argument("--min-frequency", type=int, default=None,
                   help="wordpiece only: drop pairs seen fewer times (default 2)")
    t.add_argument("--limit-alphabet", type=int, default=None,
                   help="wordpiece only: keep only the N most frequent characters (default: all, as Chinese needs)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--lowercase", dest="lowercase", action="store_true", default=None,
                   help="lower-case (wordpiece also strips accents); the default for wordpiece (BERT uncased)")
    g.add_argument("--cased", dest="lowercase", action="store_false",
                   help="keep case (and accents); the default for unigram")
    _add_corpus_options(t)
    t.set_defaults(handler=run_tokenizer_train)
    v = tsub.add_parser("from-vocab", help="make a WordPiece tokenizer directory from a vocab.txt (e.g. BERT's)")
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
    wordpiece_only = [f for f, v in (("--min-frequency", args.min_frequency),
                                     ("--limit-alphabet", args.limit_alphabet)) if v is not None]
    if args.model != "wordpiece" and wordpiece_only:
        raise ElectraError(f"{' and '.join(wordpiece_only)}: WordPiece options, not for --model {args.model}")
    options = {} if args.min_frequency is None else {"min_frequency": args.min_frequency}
    corpus = Corpus(args.input, text_field=args.text_field, errors=args.errors)
    tok = train_tokenizer(corpus.texts(), args.out, args.vocab_size, model=args.model, lowercase=args.lowercase,
                          limit_alphabet=args.limit_alphabet, **options)
    st = corpus.stats
    case = "uncased" if is_lowercase(tok) else "cased"
    print(f"wrote {args.out}: {args.model} {case}, {tok.get_vocab_size():,} tokens from {st.files} files, "
          f"{st.documents:,} documents, {st.lines:,} lines")
    for reason, n in sorted({**st.skipped, **st.altered}.items()):
        print(f"  {n:,} {reason} (e.g. {'; '.join(st.notes.get(reason, []))})")


def run_tokenizer_from_vocab(args: argparse.Namespace) -> None:
    tok = tokenizer_from_vocab(args.vocab, args.out, lowercase=args.lowercase)
    print(f"wrote {args.out}: {tok.get_vocab_size():,} tokens ({'uncased' if args.lowercase else 'cased'})")


def add_wordvectors(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wordvectors", help="train word vectors over WordPiece tokens for --init-embeddings")
    wsub = p.add_subparsers(dest="wordvectors_command", required=True, metavar="ACTION")
    t = wsub.add_parser("train", help="word2vec (gensim) over the tokens of raw text or prepared shards; writes "
                                      "a vector for every vocabulary entry (word2vec text format, id order)")
    t.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help=".txt/.txt.gz/.jsonl files or folders, or one folder written by `electra prepare`")
    t.add_argument("--tokenizer", help="tokenizer directory (required for raw text; prepared shards use their "
                                       "own copy, and a --tokenizer given too must have the same vocabulary)")
    t.add_argument("--out", required=True, help="vectors file to write (e.g. vectors.txt)")
    t.add_argument("--dim", type=int, default=100, help="vector size (default 100)")
    t.add_argument("--method", default="skipgram", help="skipgram (default) or cbow")
    t.add_argument("--window", type=int, default=5, help="context window in tokens (default 5)")
    t.add_argument("--epochs", type=int, default=5, help="passes over the corpus (default 5)")
    t.add_argument("--min-count", type=int, default=1,
                   help="tokens seen fewer times are filled in, not learned (default 1)")
    t.add_argument("--workers", type=int, default=1, help="gensim worker threads (default 1: gensim is only "
                                                          "reproducible with one worker)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-sentences", type=int, help="read only the first N sentences (lines) of the input")
    _add_corpus_options(t)
    t.set_defaults(handler=run_wordvectors_train)


def run_wordvectors_train(args: argparse.Namespace) -> None:
    report = train_word_vectors(args.input, args.out, args.tokenizer, dim=args.dim, method=args.method,
                                window=args.window, epochs=args.epochs, min_count=args.min_count,
                                workers=args.workers, seed=args.seed, max_sentences=args.max_sentences,
                                text_field=args.text_field, errors=args.errors)
    print(report.format())


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
    p.add_argument("--segmenter", choices=["jieba"],
                   help="also record which tokens start a word of this segmenter, for --whole-word-masking of text "
                        "without spaces (Chinese); needs the zh extra")
    _add_corpus_options(p)
    p.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> None:
    summary = prepare(args.input, args.tokenizer, args.out, args.max_seq_len, workers=args.workers,
                      seed=args.seed, text_field=args.text_field, errors=args.errors,
                      overwrite=args.overwrite, progress=not args.quiet, segmenter=args.segmenter)
    print(summary.format())
