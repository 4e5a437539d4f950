"""electra.metrics against scikit-learn and scipy on random inputs."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from electra import metrics


@pytest.fixture(params=[0, 1, 2])
def labels(request):
    rng = np.random.default_rng(request.param)
    k = [2, 3, 5][request.param]
    y = rng.integers(0, k, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, k, 200))
    return y, p, k


def test_accuracy_matches_sklearn(labels):
    y, p, _ = labels
    assert metrics.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))


def test_confusion_matrix_matches_sklearn(labels):
    y, p, k = labels
    expected = skm.confusion_matrix(y, p, labels=range(k))
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p, k), expected)


def test_per_class_precision_recall_f1_match_sklearn(labels):
    y, p, k = labels
    ours = metrics.precision_recall_f1(y, p, k)
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, p, labels=range(k), zero_division=0)
    np.testing.assert_allclose(ours["precision"], pr)
    np.testing.assert_allclose(ours["recall"], rc)
    np.testing.assert_allclose(ours["f1"], f1)
    np.testing.assert_array_equal(ours["support"], sup)


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_averaged_precision_recall_f1_match_sklearn(labels, average):
    y, p, _ = labels
    ours = metrics.precision_recall_f1(y, p)
    pr, rc, f1, _ = skm.precision_recall_fscore_support(y, p, average=average, zero_division=0)
    assert ours[f"{average}_precision"] == pytest.approx(pr)
    assert ours[f"{average}_recall"] == pytest.approx(rc)
    assert ours[f"{average}_f1"] == pytest.approx(f1)


def test_macro_average_skips_classes_absent_from_truth_and_prediction():
    y, p = np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2])
    ours = metrics.precision_recall_f1(y, p)
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_binary_f1_matches_sklearn():
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    assert metrics.binary_f1(y, p) == pytest.approx(skm.f1_score(y, p))


def test_matthews_corrcoef_matches_sklearn(labels):
    y, p, _ = labels
    assert metrics.matthews_corrcoef(y, p) == pytest.approx(skm.matthews_corrcoef(y, p))


def test_matthews_corrcoef_is_zero_for_constant_prediction():
    assert metrics.matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0


def test_pearson_matches_scipy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=500)
    y = 0.5 * x + rng.normal(size=500)
    assert metrics.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, 400).astype(float)  # many ties, like STS-B gold scores
    y = x + rng.normal(size=400)
    assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_rank_matches_scipy_rankdata():
    x = np.random.default_rng(6).integers(0, 10, 100).astype(float)
    np.testing.assert_allclose(metrics._rank(x), stats.rankdata(x))


def test_correlation_of_constant_input_is_zero():
    assert metrics.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0


def test_median_and_spread():
    s = metrics.median_and_spread([0.8, 0.9, 0.7, 0.85])
    assert s["median"] == pytest.approx(0.825)
    assert (s["min"], s["max"], s["n"]) == (0.7, 0.9, 4)
    assert s["std"] == pytest.approx(np.std([0.8, 0.9, 0.7, 0.85], ddof=1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * y, 1)  # coarse scores: many ties
    assert metrics.roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)


def test_roc_auc_is_nan_for_one_class():
    assert np.isnan(metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
