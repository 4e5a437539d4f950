"""Supervised rerankers: the listwise and multiple-choice losses, list batches, and `electra finetune` runs."""

import json

import numpy as np
import pytest
import torch

from electra.cli import main
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.tasks.ranking import RankingHead, collate_lists, listwise_target, load_ranking_data
from electra.tasks.runner import load_task_model
from rescoring_fixtures import FIX, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_listwise_target_is_the_softmax_of_normalised_negative_costs():
    t = listwise_target([0.2, 0.0, 0.4], 0.5)
    z = -np.array([0.5, 0.0, 1.0]) / 0.5
    assert t == pytest.approx((np.exp(z) / np.exp(z).sum()).tolist())
    assert listwise_target([0.3, 0.3], 0.1) == [0.5, 0.5]


def test_listwise_loss_is_the_kl_divergence_and_ignores_padded_candidates():
    cfg = ModelConfig.preset("tiny", vocab_size=256).discriminator
    head = RankingHead(cfg, loss="listwise", dropout=0.0)
    hidden = torch.randn(4, 3, cfg.hidden_size)
    target = torch.tensor([[0.7, 0.3], [1.0, 0.0]])
    batch = {"candidate_mask": torch.tensor([[1, 1], [1, 0]]), "target": target}
    out = head(hidden, batch)
    scores = head.out(hidden[:, 0]).squeeze(-1).view(2, 2)
    logp0 = scores[0].log_softmax(-1)
    kl0 = (target[0] * (target[0].log() - logp0)).sum()
    kl1 = torch.tensor(0.0)  # one real candidate, probability 1 on it: KL 0
    assert out["loss"].item() == pytest.approx(((kl0 + kl1) / 2).item(), abs=1e-5)


def test_collate_pads_short_lists_with_masked_dummies():
    lists = [{"ids": [[2, 5, 3], [2, 6, 7, 3]], "types": [[0, 0, 0], [0, 0, 0, 0]], "label": 1},
             {"ids": [[2, 8, 3]], "types": [[0, 0, 0]], "label": 0}]
    b = collate_lists(lists)
    assert b["input_ids"].shape == (4, 4)
    assert b["candidate_mask"].tolist() == [[1, 1], [1, 0]] and b["labels"].tolist() == [1, 0]


def test_generic_jsonl_without_costs_or_labels_is_an_error(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"candidates": ["a", "b"]}\n{"candidates": ["a", "b"]}\n')
    with pytest.raises(ElectraError, match="neither \"costs\" nor \"label\""):
        load_ranking_data("ranking", tmp_path)


@pytest.mark.slow
def test_finetune_mutual_reports_recall_and_saves_a_reranker(checkpoint, tmp_path, capsys):
    data = tmp_path / "mutual"
    data.mkdir()
    lines = (FIX / "mutual_dev_head.jsonl").read_text()
    (data / "train.jsonl").write_text(lines)
    (data / "dev.jsonl").write_text(lines)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--task", "mutual", "--model", str(checkpoint), "--data", str(data), "--out", str(out),
              "--max-steps", "2", "--batch-size", "8", "--max-seq-len", "64", "--quiet", "--device", "cpu"])
    assert e.value.code in (0, None)
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"r1", "r2", "mrr"} <= set(res["best"])
    model = load_task_model(out)
    assert model.spec["task"] == "mutual" and model.spec["loss"] == "choice"


@pytest.mark.slow
def test_finetune_asr_nbest_trains_listwise_and_reports_wer(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        main(["finetune", "--task", "asr-nbest", "--model", str(checkpoint), "--data", str(FIX / "wsj_head.json"),
              "--dev-file", str(FIX / "wsj_next.json"), "--out", str(out), "--max-steps", "2", "--batch-size", "10",
              "--quiet", "--device", "cpu"])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"wer", "one_best_wer"} <= set(res["best"])
    assert load_task_model(out).spec["loss"] == "listwise"


@pytest.mark.slow
def test_rescore_uses_a_fine_tuned_reranker_run_as_the_model_score(checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        main(["finetune", "--task", "asr-nbest", "--model", str(checkpoint), "--data", str(FIX / "wsj_head.json"),
              "--dev-file", str(FIX / "wsj_next.json"), "--out", str(run), "--max-steps", "1", "--quiet",
              "--device", "cpu"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["rescore", "--task", "asr", "--model", str(run), "--input", str(FIX / "wsj_next.json"), "--dev",
              str(FIX / "wsj_head.json"), "--out", str(tmp_path / "o.jsonl"), "--json"])
    assert e.value.code == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["scorer"] == "reranker" and set(m["lambda"]) == {"reranker"}
