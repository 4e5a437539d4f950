"""Token tagging: CoNLL reading, IOB1 -> BIO, first-sub-token labels, fine-tuning on toy and CoNLL-2003 data."""

from __future__ import annotations

import random

import pytest

from electra.data.conll import IGNORE, Sentence, make_tag_features, read_conll, to_iob2
from electra.errors import ElectraError
from electra.tasks.runner import FinetuneConfig
from electra.tasks.tagging import TagParams, evaluate_file, finetune_tagging, predict_file
from electra.tokenization import load_tokenizer
from qa_fixtures import CITIES, COUNTRIES, DATA, FILLER, tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tag"))


def test_reader_skips_docstart_and_splits_sentences(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP I-PER\n")
    sents = read_conll(f)
    assert [s.words for s in sents] == [["EU", "rejects"], ["Peter"]]
    assert sents[0].labels == ["I-ORG", "O"] and sents[1].line == 6


def test_reader_names_file_and_line_of_a_bad_label(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("EU I-ORG\nrejects X-VERB\n")
    with pytest.raises(ElectraError, match=r"a\.txt:2: label 'X-VERB' is not O or B-/I-/E-/S-"):
        read_conll(f)


def test_reader_names_line_missing_the_label_column(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("EU I-ORG\nrejects\n")
    with pytest.raises(ElectraError, match=r"a\.txt:2: expected a token and a label column"):
        read_conll(f)


def test_iob1_to_bio_marks_entity_starts():
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]


def test_labels_go_on_first_sub_tokens_only(ckpt):
    tok = load_tokenizer(ckpt / "tokenizer")
    s = Sentence(["Parisrome", "is", "old"], ["B-LOC", "O", "O"], 1)
    (f,) = make_tag_features([s], tok, {"O": 0, "B-LOC": 1})
    assert len(f.input_ids) > 5  # "parisrome" is split into sub-tokens
    assert [f.labels[t] for t in f.first_tokens] == [1, 0, 0]
    assert sum(label != IGNORE for label in f.labels) == 3


def test_long_sentence_is_split_at_word_boundaries(ckpt):
    tok = load_tokenizer(ckpt / "tokenizer")
    s = Sentence(["river"] * 40, ["O"] * 40, 1)
    feats = make_tag_features([s], tok, {"O": 0}, max_seq_length=16)
    assert all(len(f.input_ids) <= 16 for f in feats)
    assert sum(len(f.first_tokens) for f in feats) == 40 and [f.word_offset for f in feats][:2] == [0, 14]


def _toy_conll(path, n, seed):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = rng.sample(FILLER, 3)
        i = rng.randrange(len(CITIES))
        sent = [(w, "O") for w in words] + [(CITIES[i].title(), "B-LOC"), ("in", "O"),
                                            (COUNTRIES[i].title(), "B-LOC")]
        rng.shuffle(sent)
        lines += [f"{w} {label}" for w, label in sent] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_finetune_tagging_learns_toy_entities_and_predicts(tmp_path, ckpt):
    train, dev = _toy_conll(tmp_path / "train.txt", 96, 0), _toy_conll(tmp_path / "dev.txt", 24, 1)
    cfg = FinetuneConfig(lr=2e-3, epochs=4, batch_size=16, progress=False, device="cpu", layerwise_decay=None)
    res = finetune_tagging(TagParams("tags", str(ckpt), str(tmp_path / "run"), str(train), str(dev)), cfg)
    assert res["best"]["f1"] >= 0.9
    assert evaluate_file(tmp_path / "run", dev)["f1"] == pytest.approx(res["best"]["f1"])
    assert predict_file(tmp_path / "run", dev, tmp_path / "pred.txt") == 24
    first = (tmp_path / "pred.txt").read_text().split("\n\n")[0].splitlines()
    assert len(first) == 6 and all(len(line.split("\t")) == 2 for line in first)


@pytest.mark.slow
def test_finetune_on_shared_conll2003_slice(tmp_path, ckpt):
    root = DATA / "ner" / "conll2003"
    if not root.exists():
        pytest.skip("../shared/data not present")
    res = finetune_tagging(TagParams("conll2003", str(ckpt), str(tmp_path / "run"), str(root / "train.txt"),
                                     str(root / "valid.txt"), max_train_sentences=64, max_dev_sentences=32),
                           FinetuneConfig(lr=1e-3, max_steps=3, batch_size=16, progress=False, device="cpu"))
    assert res["steps"] == 3 and 0.0 <= res["best"]["f1"] <= 1.0
    assert set(res["best_types"]) <= {"PER", "ORG", "LOC", "MISC"}
