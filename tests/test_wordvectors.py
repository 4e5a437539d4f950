"""Word vectors over WordPiece tokens (electra wordvectors train): coverage, determinism, shards, loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from electra.cli import main
from electra.config import ModelConfig
from electra.data.corpus import Corpus
from electra.data.prepare import prepare
from electra.init.embeddings import init_word_embeddings, read_word_vectors
from electra.init.wordvectors import complete_vectors, train_word_vectors
from electra.modeling import Electra
from electra.tokenization import SPECIAL_TOKENS, load_tokenizer, train_tokenizer, vocab_tokens

pytest.importorskip("gensim", reason="electra wordvectors needs gensim (pip install 'electra[wordvectors]')")

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
EN = FIXTURES / "tiny-en.txt"
ZH = FIXTURES / "tiny-zh.txt"
DIM = 16
FAST = dict(dim=DIM, epochs=2)


def make_tokenizer(text: Path, out: Path, vocab_size: int) -> Path:
    train_tokenizer(Corpus([text]).texts(), out, vocab_size, show_progress=False)
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    return make_tokenizer(EN, tmp_path_factory.mktemp("tok"), 600)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, tok) -> Path:
    out = tmp_path_factory.mktemp("data") / "shards"
    prepare([EN], tok, out, shard_tokens=3000, progress=False)  # several shards
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tok):
    out = tmp_path_factory.mktemp("vec") / "vectors.txt"
    return out, train_word_vectors([EN], out, tok, **FAST)


def rows(path: Path) -> tuple[list[str], list[str]]:
    """(header fields, tokens in file order) of a word2vec text file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split(), [line.split(" ")[0] for line in lines[1:]]


def test_vectors_cover_the_whole_vocabulary_in_id_order(trained, tok):
    path, report = trained
    vocab = vocab_tokens(load_tokenizer(tok))
    header, tokens = rows(path)
    assert header == [str(len(vocab)), str(DIM)]
    assert tokens == vocab
    vectors, dim, fmt = read_word_vectors(path)
    assert (dim, fmt) == (DIM, "word2vec-text") and all(v.shape == (DIM,) for v in vectors.values())
    assert report.learned + report.filled == report.vocab_size == len(vocab)
    assert report.learned > report.filled and "100% of the vocabulary" in report.format()


def test_same_seed_gives_an_identical_file(trained, tok, tmp_path):
    path, _ = trained
    train_word_vectors([EN], tmp_path / "again.txt", tok, **FAST)
    train_word_vectors([EN], tmp_path / "other.txt", tok, seed=1, **FAST)
    assert (tmp_path / "again.txt").read_bytes() == path.read_bytes()
    assert (tmp_path / "other.txt").read_bytes() != path.read_bytes()


def test_prepared_shards_give_the_same_vectors_as_their_text(trained, shards, tmp_path):
    path, text_report = trained
    report = train_word_vectors([shards], tmp_path / "v.txt", **FAST)
    assert report.source == "shards"
    assert (report.sentences, report.tokens) == (text_report.sentences, text_report.tokens)
    assert (tmp_path / "v.txt").read_bytes() == path.read_bytes()


def test_shards_accept_a_tokenizer_with_the_same_vocabulary(shards, tok, tmp_path):
    report = train_word_vectors([shards], tmp_path / "v.txt", tok, **FAST)
    assert report.vocab_size == len(vocab_tokens(load_tokenizer(tok)))


def test_max_sentences_limits_what_is_read(tok, tmp_path):
    report = train_word_vectors([EN], tmp_path / "v.txt", tok, max_sentences=10, dim=DIM, epochs=1)
    assert report.sentences == 10 and report.vocab_size == 600


def test_cbow_trains_too(tok, tmp_path):
    report = train_word_vectors([EN], tmp_path / "v.txt", tok, method="cbow", max_sentences=20, dim=DIM, epochs=1)
    assert report.method == "cbow" and rows(tmp_path / "v.txt")[0] == ["600", str(DIM)]


def test_unlearned_tokens_take_their_twin_else_a_seeded_random_vector():
    vocab = [*SPECIAL_TOKENS, "run", "##run", "##the", "the", "zebra"]
    learned = {"run": np.ones(4, np.float32), "##the": np.full(4, 3.0, np.float32), "[UNK]": np.zeros(4, np.float32)}
    matrix, sources = complete_vectors(vocab, learned, 4, seed=7)
    assert sources == ["random"] * 5 + ["learned", "twin", "learned", "twin", "random"]
    assert np.array_equal(matrix[6], learned["run"]) and np.array_equal(matrix[8], learned["##the"])
    again, _ = complete_vectors(vocab, learned, 4, seed=7)
    assert np.array_equal(matrix, again)  # the random rows are seeded
    assert not np.array_equal(matrix[1], learned["[UNK]"])  # special tokens are never kept from training


def test_vectors_initialise_the_model_including_pieces(trained, tok):
    path, _ = trained
    vocab = vocab_tokens(load_tokenizer(tok))
    torch.manual_seed(0)
    model = Electra(ModelConfig.preset("tiny", vocab_size=len(vocab), embedding_size=DIM))
    table = model.discriminator.encoder.embeddings.word_embeddings.weight
    before = table.detach().clone()
    report = init_word_embeddings(model, path, tok)
    changed = [not torch.equal(before[i], table[i].detach()) for i in range(len(vocab))]
    assert report.vocabulary_complete
    assert report.covered == report.candidates == len(vocab) - len(SPECIAL_TOKENS)
    assert "all but the special tokens" in report.format()
    pieces = [i for i, t in enumerate(vocab) if t.startswith("##")]
    assert pieces and all(changed[i] for i in pieces)
    assert not any(changed[i] for i, t in enumerate(vocab) if t in SPECIAL_TOKENS)


def test_chinese_characters_get_learned_vectors(tmp_path):
    zh_tok = make_tokenizer(ZH, tmp_path / "tok", 800)
    report = train_word_vectors([ZH], tmp_path / "v.txt", zh_tok, **FAST)
    tok = load_tokenizer(zh_tok)
    seen = {t for line in Corpus([ZH]).texts() for t in tok.encode(line, add_special_tokens=False).tokens}
    seen -= set(SPECIAL_TOKENS)
    chars = {c for c in ZH.read_text(encoding="utf-8") if "\u4e00" <= c <= "\u9fff"}
    assert len(chars) > 100 and chars <= seen  # one token per character (BERT's CJK split)
    assert report.learned == len(seen)  # min-count 1: every token of the text is learned
    assert chars <= set(rows(tmp_path / "v.txt")[1])


def test_cli_writes_the_vectors_file(tok, tmp_path, capsys):
    out = tmp_path / "vectors.txt"
    with pytest.raises(SystemExit) as e:
        main(["wordvectors", "train", "--input", str(EN), "--tokenizer", str(tok), "--out", str(out),
              "--dim", "8", "--epochs", "1", "--max-sentences", "20"])
    assert e.value.code == 0
    assert rows(out)[0] == ["600", "8"]
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("wrote ") and "100% of the vocabulary" in printed[-1]
    assert "word2vec: epoch 1/1 done" in printed[-2]  # one progress line per epoch
    assert not list(tmp_path.glob(".vectors.txt.tmp-*"))  # written through a temporary file


def _empty(tmp_path: Path, tok: Path, shards: Path) -> list[str]:
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    return ["--input", str(tmp_path / "blank.txt"), "--tokenizer", str(tok)]


def _no_tokenizer_copy(tmp_path: Path, tok: Path, shards: Path) -> list[str]:
    copy = shutil.copytree(shards, tmp_path / "shards")
    shutil.rmtree(copy / "tokenizer")
    return ["--input", str(copy)]


def _other_vocabulary(tmp_path: Path, tok: Path, shards: Path) -> list[str]:
    other = make_tokenizer(ZH, tmp_path / "zh-tok", 300)
    return ["--input", str(shards), "--tokenizer", str(other)]


BAD = {
    "missing input": (lambda tmp, tok, shards: ["--input", str(tmp / "nope.txt"), "--tokenizer", str(tok)],
                      "nope.txt: input not found"),
    "empty corpus": (_empty, "no text in"),
    "dim below 1": (lambda tmp, tok, shards: ["--input", str(EN), "--tokenizer", str(tok), "--dim", "0"],
                    "--dim 0: must be >= 1"),
    "unknown method": (lambda tmp, tok, shards: ["--input", str(EN), "--tokenizer", str(tok), "--method", "glove"],
                       "--method glove: expected one of skipgram, cbow"),
    "tokenizer dir missing": (lambda tmp, tok, shards: ["--input", str(EN), "--tokenizer", str(tmp / "no-tok")],
                              "no-tok: tokenizer directory not found"),
    "text without tokenizer": (lambda tmp, tok, shards: ["--input", str(EN)], "--tokenizer: required"),
    "shards without tokenizer copy": (_no_tokenizer_copy, "tokenizer: missing"),
    "shards with another vocabulary": (_other_vocabulary, "vocabulary differs"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_one_line_error(case, tok, shards, tmp_path, capsys):
    make_args, message = BAD[case]
    out = tmp_path / "v.txt"
    with pytest.raises(SystemExit) as e:
        main(["wordvectors", "train", *make_args(tmp_path, tok, shards), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("electra: error:")
    assert message in err[0]
    assert not out.exists()
