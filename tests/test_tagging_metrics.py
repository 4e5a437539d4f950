"""Entity-level tagging metrics equal seqeval's (default mode) on BIO, IOB1 and BIOES sequences."""

import random

import pytest
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

from electra.metrics.tagging import entity_scores, get_entities

CASES = {
    "bio": ([["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"]],
            [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O"]]),
    "iob1": ([["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["I-MISC", "O"]],
             [["I-PER", "I-PER", "O", "I-LOC", "I-LOC"], ["I-MISC", "I-MISC"]]),
    "bioes": ([["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"], ["B-ORG", "E-ORG", "S-MISC"]],
              [["S-PER", "O", "B-LOC", "E-LOC", "O"], ["B-ORG", "E-ORG", "S-PER"]]),
    "ill_formed": ([["I-PER", "B-LOC", "E-PER", "O", "I-ORG"]], [["B-PER", "I-LOC", "I-PER", "E-ORG", "S-ORG"]]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_entity_scores_equal_seqeval(name):
    y_true, y_pred = CASES[name]
    ours = entity_scores(y_true, y_pred)
    assert ours["precision"] == pytest.approx(precision_score(y_true, y_pred))
    assert ours["recall"] == pytest.approx(recall_score(y_true, y_pred))
    assert ours["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))


def test_per_type_scores_equal_seqeval_report():
    y_true, y_pred = CASES["bioes"]
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for t, s in entity_scores(y_true, y_pred)["types"].items():
        assert s["f1"] == pytest.approx(report[t]["f1-score"]) and s["support"] == report[t]["support"]


def test_get_entities_equals_seqeval_on_random_sequences():
    rng = random.Random(0)
    tags = ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"]
    for _ in range(200):
        seq = [rng.choice(tags) for _ in range(rng.randint(1, 12))]
        assert get_entities(seq) == seqeval_entities(seq)
