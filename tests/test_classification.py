"""Classification/regression fine-tuning on tiny data: train, evaluate, predict, ensembles, seeds."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from electra.checkpoint import save_checkpoint
from electra.cli import main
from electra.config import ModelConfig
from electra.data.glue import custom_task, get_task
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.tasks.classification import (
    TaskOptions,
    augment,
    evaluate_runs,
    finetune_seeds,
    finetune_task,
    label_names,
    predict_file,
)
from electra.tasks.runner import FinetuneConfig, load_task_model

FIXTURES = Path(__file__).parent / "fixtures"
VOCAB = FIXTURES / "finetune_vocab"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAST = FinetuneConfig(lr=1e-3, max_steps=3, batch_size=8, progress=False, device="cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=256)), path, tokenizer_dir=VOCAB)


def pairs_data(folder: Path, n_train=24, n_dev=12) -> Path:
    """A custom TSV pair task: label 'pos' when the first text says 'good'."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["a\tb\ty"]
        for _ in range(n):
            pos = rng.random() < 0.5
            rows.append(f"the film is {'good' if pos else 'bad'}\tthe story\t{'pos' if pos else 'neg'}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (folder / "test.tsv").write_text("a\tb\nvery good\tfun\nvery bad\tboring\nso so\tstory\n")
    return folder


CUSTOM = custom_task(["a", "b"], "y")


def test_finetune_evaluate_and_predict_round_trip(checkpoint, tmp_path):
    data = pairs_data(tmp_path / "data")
    res = finetune_task(CUSTOM, checkpoint, data, tmp_path / "run", FAST)
    assert res["steps"] == 3 and res["train_examples"] == 24
    ev = evaluate_runs([tmp_path / "run"], data, "dev")
    assert ev["acc"] == pytest.approx(res["best"]["acc"])
    assert predict_file([tmp_path / "run"], data / "test.tsv", tmp_path / "pred.tsv") == 3
    lines = (tmp_path / "pred.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction"
    assert [ln.split("\t")[0] for ln in lines[1:]] == ["0", "1", "2"]
    assert {ln.split("\t")[1] for ln in lines[1:]} <= {"neg", "pos"}


def test_custom_labels_are_taken_from_training_data(checkpoint, tmp_path):
    data = pairs_data(tmp_path / "data")
    finetune_task(CUSTOM, checkpoint, data, tmp_path / "run", FAST)
    assert load_task_model(tmp_path / "run").spec["labels"] == ["neg", "pos"]


def test_dev_label_unseen_in_training_is_an_error(checkpoint, tmp_path):
    data = pairs_data(tmp_path / "data")
    with open(data / "dev.tsv", "a") as f:
        f.write("x\ty\tmaybe\n")
    with pytest.raises(ElectraError, match=r"dev\.tsv:14: unknown label 'maybe'"):
        finetune_task(CUSTOM, checkpoint, data, tmp_path / "run", FAST)


def test_ensemble_of_a_run_with_itself_equals_the_run(checkpoint, tmp_path):
    data = pairs_data(tmp_path / "data")
    finetune_task(CUSTOM, checkpoint, data, tmp_path / "run", FAST)
    one = evaluate_runs([tmp_path / "run"], data)
    two = evaluate_runs([tmp_path / "run", tmp_path / "run"], data)
    assert two["runs"] == 2 and two["acc"] == one["acc"]


def test_seeds_train_each_seed_and_report_the_median(checkpoint, tmp_path):
    data = pairs_data(tmp_path / "data")
    summary = finetune_seeds(CUSTOM, checkpoint, data, tmp_path / "runs", FAST, seeds=2)
    assert summary["seeds"] == [42, 43]
    assert all((tmp_path / "runs" / f"seed-{s}" / "best" / "task.json").is_file() for s in (42, 43))
    per_seed = [json.loads((tmp_path / "runs" / f"seed-{s}" / "results.json").read_text())["best"]["acc"]
                for s in (42, 43)]
    assert summary["best"]["acc"]["median"] == pytest.approx(np.median(per_seed))
    assert evaluate_runs([tmp_path / "runs"], data)["runs"] == 2  # a multi-seed run is an ensemble


def test_mrpc_pairs_are_also_trained_swapped(checkpoint, tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    rows = "".join(f"{i % 2}\t{i}\t{i}\tthe dog ran\tthe cat ran\n" for i in range(10))
    for split in ("train", "dev"):
        (tmp_path / f"{split}.tsv").write_text(header + rows)
    res = finetune_task(get_task("mrpc"), checkpoint, tmp_path, tmp_path / "run", FAST)
    assert res["train_examples"] == 20
    res = finetune_task(get_task("mrpc"), checkpoint, tmp_path, tmp_path / "run2", FAST,
                        TaskOptions(swap_pairs=False))
    assert res["train_examples"] == 10


def test_regression_reports_correlations(checkpoint, tmp_path):
    for split in ("train", "dev"):
        (tmp_path / f"{split}.jsonl").write_text(
            "".join(json.dumps({"t": f"good {'very ' * i}", "s": float(i)}) + "\n" for i in range(8)))
    task = custom_task(["t"], "s", regression=True)
    res = finetune_task(task, checkpoint, tmp_path, tmp_path / "run", FAST)
    assert {"pearson", "spearman"} <= set(res["best"])
    assert load_task_model(tmp_path / "run").head.num_labels == 1


def test_transformers_style_head_saves_and_reloads(checkpoint, tmp_path):
    data = pairs_data(tmp_path / "data")
    finetune_task(CUSTOM, checkpoint, data, tmp_path / "run", FAST, TaskOptions(head="transformers"))
    assert load_task_model(tmp_path / "run").head.dense is not None


def test_model_vocabulary_smaller_than_the_tokenizer_is_an_error(tmp_path):
    small = save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=50)), tmp_path / "ckpt",
                            tokenizer_dir=VOCAB)
    data = pairs_data(tmp_path / "data")
    with pytest.raises(ElectraError, match=r"tokenizer has 194 tokens but the model .* vocabulary of 50"):
        finetune_task(CUSTOM, small, data, tmp_path / "run", FAST)


def test_random_init_baseline_differs_from_the_pretrained_start(checkpoint, tmp_path):
    data = pairs_data(tmp_path / "data")
    config = FinetuneConfig(lr=1e-9, max_steps=1, batch_size=8, progress=False, device="cpu")
    finetune_task(CUSTOM, checkpoint, data, tmp_path / "pre", config)
    finetune_task(CUSTOM, checkpoint, data, tmp_path / "rnd", config, TaskOptions(random_init=True))
    pre, rnd = load_task_model(tmp_path / "pre"), load_task_model(tmp_path / "rnd")
    assert load_task_model(tmp_path / "rnd").spec["random_init"] is True
    assert not torch.equal(pre.encoder.layers[0].ffn_in.weight, rnd.encoder.layers[0].ffn_in.weight)


def test_augment_keeps_special_tokens_and_whole_words():
    # [CLS]=2 [SEP]=3; token 11 is a "##" continuation of 10
    cont = np.zeros(20, dtype=bool)
    cont[11] = True
    ids, types = [2, 10, 11, 12, 13, 3, 14, 15, 3], [0, 0, 0, 0, 0, 0, 1, 1, 1]
    new_ids, new_types = augment(ids, types, cont, {2, 3}, np.random.default_rng(0), drop=0.0, swap=1.0)
    assert new_ids == [2, 12, 10, 11, 13, 3, 15, 14, 3]
    assert new_types == types
    dropped, _ = augment(ids, types, cont, {2, 3}, np.random.default_rng(1), drop=0.5, swap=0.0)
    assert [t for t in dropped if t in (2, 3)] == [2, 3, 3]
    assert (10 in dropped) == (11 in dropped)


def test_cli_reports_a_bad_file_in_one_line_and_exits_2(checkpoint, tmp_path, capsys):
    data = pairs_data(tmp_path / "data")
    with open(data / "train.tsv", "a") as f:
        f.write("only one column\n")
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--task", "custom", "--text-fields", "a,b", "--label-field", "y", "--model",
              str(checkpoint), "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert err.count("\n") == 0 and "train.tsv:26: expected 3 tab-separated columns" in err


def test_cli_evaluate_json_prints_one_object(checkpoint, tmp_path, capsys):
    data = pairs_data(tmp_path / "data")
    finetune_task(CUSTOM, checkpoint, data, tmp_path / "run", FAST)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model", str(tmp_path / "run"), "--data", str(data), "--json"])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "custom" and 0.0 <= out["acc"] <= 1.0
    assert set(out["per_class"]) == {"neg", "pos"}
    assert sum(map(sum, out["confusion_matrix"])) == out["examples"] == 12


@pytest.mark.slow
@pytest.mark.parametrize("task,folder,metric", [("sst2", "SST-2", "acc"), ("cola", "CoLA", "mcc")])
def test_glue_slice_finetunes_and_predicts_the_test_file(checkpoint, tmp_path, capsys, task, folder, metric):
    data = DATA / "glue" / folder
    if not data.is_dir():
        pytest.skip("../shared/data not present")
    with pytest.raises(SystemExit):
        main(["finetune", "--task", task, "--model", str(checkpoint), "--data", str(data), "--out",
              str(tmp_path / "run"), "--train-limit", "200", "--dev-limit", "100", "--max-steps", "6",
              "--batch-size", "16", "--quiet"])
    best = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["best"]
    assert metric in best
    with pytest.raises(SystemExit):
        main(["predict", "--model", str(tmp_path / "run"), "--input", str(data / "test.tsv"),
              "--out", str(tmp_path / "pred.tsv")])
    lines = (tmp_path / "pred.tsv").read_text().splitlines()
    n = len((data / "test.tsv").read_text(encoding="utf-8").splitlines()) - 1
    assert len(lines) == n + 1 and lines[1].split("\t")[0] == "0"


def sst2_like(folder: Path) -> Path:
    """SST-2's layout (sentence<TAB>label, 0 / 1) on a few made-up sentences."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [("a good film", 1), ("a bad film", 0), ("good fun", 1), ("bad and boring", 0)] * 4
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    (folder / "test.tsv").write_text("index\tsentence\n0\ta good film\n1\tbad and boring\n")
    return folder


def test_a_fine_tuned_sst2_run_stores_its_label_names(checkpoint, tmp_path):
    finetune_task(get_task("sst2"), checkpoint, sst2_like(tmp_path / "data"), tmp_path / "run", FAST)
    spec = load_task_model(tmp_path / "run").spec
    assert (spec["labels"], spec["label_names"]) == (["0", "1"], ["negative", "positive"])


def test_label_names_of_a_run_without_them_come_from_the_task_table():
    assert label_names({"task": "sst2", "labels": ["0", "1"]}) == ["negative", "positive"]
    assert label_names({"task": "custom", "labels": ["neg", "pos"]}) == ["neg", "pos"]


def test_predict_with_label_names_writes_the_names(checkpoint, tmp_path):
    data = sst2_like(tmp_path / "data")
    finetune_task(get_task("sst2"), checkpoint, data, tmp_path / "run", FAST)
    main_args = ["predict", "--model", str(tmp_path / "run"), "--input", str(data / "test.tsv")]
    for out, flag, allowed in (("ids.tsv", [], {"0", "1"}), ("names.tsv", ["--label-names"],
                                                            {"negative", "positive"})):
        with pytest.raises(SystemExit) as done:
            main([*main_args, "--out", str(tmp_path / out), *flag])
        assert done.value.code == 0
        rows = (tmp_path / out).read_text().splitlines()[1:]
        assert len(rows) == 2 and {r.split("\t")[1] for r in rows} <= allowed
