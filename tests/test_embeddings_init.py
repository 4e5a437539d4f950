"""Word-vector initialisation of the embeddings: word2vec text/binary and GloVe, coverage, projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.init.embeddings import detect_format, init_word_embeddings, projection_matrix, read_word_vectors
from electra.modeling import Electra

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "Sat", "##s", "zebra"]
WORDS = {"the": 1.0, "cat": 2.0, "sat": 3.0, "dog": 4.0, "##s": 5.0}


def vectors(dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {w: (v + rng.standard_normal(dim)).astype(np.float32) for w, v in WORDS.items()}


def write(path, dim: int, fmt: str) -> dict[str, np.ndarray]:
    vecs = vectors(dim)
    if fmt == "word2vec-binary":
        with open(path, "wb") as f:
            f.write(f"{len(vecs)} {dim}\n".encode())
            for w, v in vecs.items():
                f.write(w.encode() + b" " + v.astype("<f4").tobytes() + b"\n")
    else:
        lines = [f"{len(vecs)} {dim}"] if fmt == "word2vec-text" else []
        lines += [w + " " + " ".join(f"{x:.6f}" for x in v) for w, v in vecs.items()]
        path.write_text("\n".join(lines) + "\n")
    return vecs


def model(embedding_size: int = 64) -> Electra:
    torch.manual_seed(0)
    return Electra(ModelConfig.preset("tiny", vocab_size=len(VOCAB), embedding_size=embedding_size))


@pytest.mark.parametrize("fmt", ["word2vec-text", "word2vec-binary", "glove"])
def test_reads_each_format(tmp_path, fmt):
    path = tmp_path / ("v.bin" if fmt == "word2vec-binary" else "v.txt")
    expected = write(path, 8, fmt)
    assert detect_format(path) == fmt
    got, dim, detected = read_word_vectors(path)
    assert dim == 8 and detected == fmt and got.keys() == expected.keys()
    assert all(np.allclose(got[w], expected[w], atol=1e-5) for w in expected)


def test_covers_exact_and_lowercased_entries_not_specials_or_pieces(tmp_path):
    write(tmp_path / "v.txt", 64, "glove")
    m = model(64)
    before = m.discriminator.encoder.embeddings.word_embeddings.weight.detach().clone()
    report = init_word_embeddings(m, tmp_path / "v.txt", VOCAB)
    after = m.discriminator.encoder.embeddings.word_embeddings.weight.detach()
    changed = [VOCAB[i] for i in range(len(VOCAB)) if not torch.equal(before[i], after[i])]
    assert changed == ["the", "cat", "Sat"]  # "Sat" via "sat"; "##s" and specials untouched; "zebra" missing
    assert (report.covered, report.candidates, report.vocab_size) == (3, 4, 10)
    assert "3 of 10" in report.format()
    # Same dimension: the vectors keep their geometry (one common rescaling to the init's scale).
    src = vectors(64)
    ratio = after[5] / torch.from_numpy(src["the"])
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)


@pytest.mark.parametrize("method", ["pca", "random"])
def test_projects_when_dimensions_differ(tmp_path, method):
    write(tmp_path / "v.txt", 300, "word2vec-text")
    m = model(16)
    report = init_word_embeddings(m, tmp_path / "v.txt", VOCAB, projection=method)
    assert (report.source_dim, report.target_dim) == (300, 16)
    table = m.discriminator.encoder.embeddings.word_embeddings.weight
    assert table.shape == (len(VOCAB), 16) and torch.isfinite(table).all()


def test_pca_projection_keeps_the_top_directions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)) @ np.diag([10.0, 1.0, 0.1])
    p = projection_matrix(x.astype(np.float32), 1, "pca")
    assert abs(abs(p[0, 0]) - 1) < 1e-3  # the largest-variance axis
    q = projection_matrix(x.astype(np.float32), 5, "random")
    assert np.allclose(q @ q.T, np.eye(3), atol=1e-5)  # enlarging: an isometry


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("the 1 2 3\ncat 1 2\n")
    with pytest.raises(ElectraError, match=r"v.txt:2: expected a word and 3 numbers"):
        read_word_vectors(path)


def write_complete(path, dim: int, vocab: list[str]) -> None:
    """A vectors file with every vocabulary entry in id order (as `electra wordvectors train` writes)."""
    rng = np.random.default_rng(1)
    lines = [f"{len(vocab)} {dim}"] + [t + " " + " ".join(f"{x:.6f}" for x in rng.standard_normal(dim))
                                       for t in vocab]
    path.write_text("\n".join(lines) + "\n")


def test_vocabulary_complete_file_sets_pieces_but_not_special_tokens(tmp_path):
    write_complete(tmp_path / "v.txt", 64, VOCAB)
    m = model(64)
    before = m.discriminator.encoder.embeddings.word_embeddings.weight.detach().clone()
    report = init_word_embeddings(m, tmp_path / "v.txt", VOCAB)
    after = m.discriminator.encoder.embeddings.word_embeddings.weight.detach()
    changed = [VOCAB[i] for i in range(len(VOCAB)) if not torch.equal(before[i], after[i])]
    assert changed == ["the", "cat", "Sat", "##s", "zebra"]
    assert report.vocabulary_complete and (report.covered, report.candidates) == (5, 5)
    assert "all but the special tokens" in report.format()


def test_same_words_in_another_order_are_an_ordinary_file(tmp_path):
    write_complete(tmp_path / "v.txt", 64, VOCAB[::-1])
    report = init_word_embeddings(model(64), tmp_path / "v.txt", VOCAB)
    assert not report.vocabulary_complete and report.covered == 4  # "##s" skipped as in any word2vec file


def test_requiring_a_vocabulary_complete_file_rejects_an_ordinary_one(tmp_path):
    write(tmp_path / "v.txt", 64, "word2vec-text")
    with pytest.raises(ElectraError, match=r"v.txt: not a vocabulary-complete vectors file"):
        init_word_embeddings(model(64), tmp_path / "v.txt", VOCAB, vocabulary_complete=True)
