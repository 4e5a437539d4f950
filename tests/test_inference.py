"""The CPU inference path: every backend/precision answers like PyTorch fp32, through the CLI too; rerankers
score as their own evaluation does; label names."""

import json

import pytest
import torch

pytest.importorskip("onnxruntime")

from deploy_fixtures import ZH, tiny_models  # noqa: E402
from electra.cli import main  # noqa: E402
from electra.errors import ElectraError  # noqa: E402
from electra.export.onnx import export_onnx  # noqa: E402
from electra.inference import load_model  # noqa: E402
from electra.pipelines import group_entities, pipelines_for  # noqa: E402
from electra.training.precision import cpu_has_fast_bf16  # noqa: E402
from serve_fixtures import tiny_ranking_run, tiny_sst2_run  # noqa: E402

INPUTS = {"detect": ["paris is the capital of france", ZH], "fill": ["the capital of [MASK] is paris"],
          "correct": ["paris is the capital of france", ZH],
          "rescore": [["paris is the capital of france", "paris is the capital of spain"]],
          "classify": ["paris", ["paris", "london"]], "tag": ["paris and london are old towns"],
          "answer": [{"question": "what is the capital of france?",
                      "context": "the capital of france is paris. the river runs through old towns."}]}
BACKENDS = [("onnx", "fp32"), ("onnx", "int8"), ("torch", "int8")] + ([("torch", "bf16")] if cpu_has_fast_bf16()
                                                                      else [])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


def _results(path, backend, precision):
    return {t: p(INPUTS[t]) for t, p in pipelines_for(load_model(path, backend, precision)).items()}


def _close(a, b, tol):
    """Equal structure and strings; numbers within ``tol``."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= tol
    return a == b


@pytest.mark.parametrize("kind", ["pretrained", "classification", "qa", "tagging"])
def test_onnx_fp32_answers_as_torch_fp32(models, kind):
    assert _close(_results(models[kind], "onnx", "fp32"), _results(models[kind], "torch", "fp32"), 1e-4)


@pytest.mark.parametrize("backend,precision", BACKENDS)
def test_every_backend_finds_the_same_answer_span_and_entities(models, backend, precision):
    for kind in ("qa", "tagging"):
        ref = _results(models[kind], "torch", "fp32")
        got = _results(models[kind], backend, precision)
        assert _close(got, ref, 0.05), kind


def test_short_qa_inputs_are_padded_to_the_onnx_beam(models):
    pipe = pipelines_for(load_model(models["qa"], "onnx", "fp32"))["answer"]
    ref = pipelines_for(load_model(models["qa"], "torch", "fp32"))["answer"]
    short = [{"question": "capital?", "context": "paris"}]  # 5 tokens < the beam of 5 + question
    assert pipe(short) == ref(short)


def test_an_export_folder_loads_with_the_onnx_backend(models, tmp_path):
    export_onnx(models["pretrained"], tmp_path / "x", quantize="int8")
    loaded = load_model(tmp_path / "x", "onnx", "int8")
    assert loaded.kind == "pretrained" and set(loaded.runners) == {"discriminator", "generator"}
    with pytest.raises(ElectraError, match="exported as int8"):
        load_model(tmp_path / "x", "onnx", "fp32")
    with pytest.raises(ElectraError, match="--backend onnx"):
        load_model(tmp_path / "x", "torch", "fp32")


def test_similarity_scoring_on_onnx_names_the_backend_it_needs(models, tmp_path):
    from electra.scoring import Scorer

    export_onnx(models["pretrained"], tmp_path / "x")
    scorer = Scorer(load_model(tmp_path / "x", "onnx", "fp32"))
    with pytest.raises(ElectraError, match="only the torch backend"):
        scorer.score("similarity", ["a film"], ["a film"])


def test_bf16_is_refused_where_the_cpu_would_emulate_it(models, monkeypatch):
    monkeypatch.setenv("ELECTRA_CPU_BF16", "emulated")
    with pytest.raises(ElectraError, match="no native bf16"):
        load_model(models["pretrained"], "torch", "bf16")


def test_inputs_over_the_token_limit_are_refused_not_truncated(models):
    pipe = pipelines_for(load_model(models["pretrained"]), max_input_tokens=8)["detect"]
    with pytest.raises(ElectraError, match="at most 8"):
        pipe.prepare("paris " * 20)


def test_cli_detect_on_onnx_prints_what_torch_prints(models, capsys):
    outs = []
    for backend in ("torch", "onnx"):
        with pytest.raises(SystemExit):
            main(["detect", "--model", str(models["pretrained"]), "--json", "--backend", backend, "paris is old"])
        outs.append(json.loads(capsys.readouterr().out))
    assert _close(outs[0], outs[1], 1e-4)


def test_cli_predict_with_onnx_int8_writes_the_same_labels(models, tmp_path):
    tsv = tmp_path / "test.tsv"
    tsv.write_text("index\tsentence1\tsentence2\n" + "".join(f"{i}\tparis is old\tlondon {i}\n" for i in range(4)))
    files = []
    for backend, precision in (("torch", "fp32"), ("onnx", "int8")):
        out = tmp_path / f"{backend}.tsv"
        with pytest.raises(SystemExit):
            main(["predict", "--model", str(models["classification"]), "--input", str(tsv), "--out", str(out),
                  "--backend", backend, "--precision", precision])
        files.append(out.read_text())
    assert files[0] == files[1] and files[0].count("\n") == 5


def test_entities_group_runs_of_one_type():
    words = [("B-LOC", 0.9, 0, 3), ("I-LOC", 0.7, 4, 8), ("O", 0.99, 9, 12), ("B-PER", 0.8, 13, 16),
             ("I-LOC", 0.6, 17, 21)]
    got = group_entities("new york and bob rome", words)
    assert [(g["entity_group"], g["word"], g["start"], g["end"]) for g in got] == [
        ("LOC", "new york", 0, 8), ("PER", "bob", 13, 16), ("LOC", "rome", 17, 21)]
    assert got[0]["score"] == 0.8


@pytest.mark.parametrize("backend,precision", [("torch", "fp32")] + BACKENDS)
def test_fill_never_offers_special_tokens(models, tmp_path, backend, precision):
    from electra.checkpoint import load_checkpoint, save_checkpoint, tokenizer_dir
    from electra.generation import special_token_ids
    from electra.tokenization import load_tokenizer

    ckpt = models["pretrained"]
    model = load_checkpoint(ckpt)
    special = special_token_ids(load_tokenizer(tokenizer_dir(ckpt)))
    with torch.no_grad():
        model.generator.head.bias[special] = 50.0  # the generator now prefers every special token
    path = save_checkpoint(model, tmp_path / "biased", tokenizer_dir=tokenizer_dir(ckpt))
    fill = pipelines_for(load_model(path, backend, precision))["fill"]
    cands = fill.run([fill.prepare("the capital of [MASK] is paris", 10)])
    assert len(cands[0]) == 10 and not {c["token"] for c in cands[0]} & set(special)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_int8_result_of_an_input_does_not_depend_on_its_batch_mates(models, backend):
    import numpy as np

    from electra.export.onnx import check_batch

    loaded = load_model(models["classification"], backend, "int8")
    runner = loaded.runners["task"]
    batch = {k: v.numpy() for k, v in check_batch(loaded.config.vocab_size, 24, seed=3).items()}  # 2 of 3 padded
    together = runner(batch)["logits"]
    for i, n in enumerate(batch["attention_mask"].sum(1)):
        alone = runner({k: v[i:i + 1, :n] for k, v in batch.items()})["logits"]
        assert np.abs(alone - together[i:i + 1]).max() <= 1e-4  # per-tensor int8 differs by ~0.1 here


RANK_CONTEXT = "what is the capital of france?"
RANK_CANDIDATES = ["paris is the capital", "london is old", "the river runs through old towns", ZH]


@pytest.fixture(scope="module")
def ranker(models, tmp_path_factory):
    return tiny_ranking_run(models["pretrained"], tmp_path_factory.mktemp("ranker"))


def test_a_ranking_run_loads_as_a_ranking_model_that_serves_rank(ranker):
    loaded = load_model(ranker)
    assert loaded.kind == "ranking" and list(pipelines_for(loaded)) == ["rank"]


@pytest.mark.parametrize("context", [RANK_CONTEXT, None, ""], ids=["a context", "no context", "empty context"])
def test_rank_scores_equal_the_ranking_tasks_own_list_scores(ranker, context):
    from electra.data.ranking import RankItem
    from electra.metrics.ranking import rank
    from electra.tasks.classification import prepare_tokenizer
    from electra.tasks.ranking import encode_lists, list_scores
    from electra.tasks.runner import load_task_model

    model = load_task_model(ranker)
    cfg, max_len = model.encoder.config, model.spec["max_seq_len"]
    tok = prepare_tokenizer(None, ranker, cfg.vocab_size, max_len, cfg.max_position_embeddings)
    tok.no_truncation()  # as finetune_ranking sets it up for encode_lists
    feats = encode_lists(tok, [RankItem(RANK_CANDIDATES, context)], max_len, "choice", 0.1)
    want = list_scores(model, feats, pad_id=tok.token_to_id("[PAD]") or 0)[0]
    got = pipelines_for(load_model(ranker))["rank"]([{"context": context, "candidates": RANK_CANDIDATES}])[0]
    assert got["scores"] == pytest.approx(want, abs=1e-4) and got["ranking"] == rank(want)
    assert len(set(got["scores"])) == len(RANK_CANDIDATES)  # the scores tell the candidates apart


def test_rank_results_do_not_depend_on_the_other_inputs_of_the_batch(ranker):
    pipe = pipelines_for(load_model(ranker))["rank"]
    one = {"context": RANK_CONTEXT, "candidates": RANK_CANDIDATES}
    other = {"context": "paris and london are old towns " * 3, "candidates": ["a", "rome is old " * 4]}
    assert pipe([one, other])[0] == pipe([one])[0]


def test_rank_refuses_a_pair_longer_than_the_runs_max_seq_len(ranker):
    pipe = pipelines_for(load_model(ranker))["rank"]  # the run was trained with max_seq_len 48
    assert pipe.max_tokens == 48
    with pytest.raises(ElectraError, match="candidate 1: context \\+ candidate is .* at most 48"):
        pipe.prepare({"context": RANK_CONTEXT, "candidates": ["paris", "paris " * 50]})


@pytest.mark.parametrize("stored_names", [True, False], ids=["names in the run", "a run without names"])
def test_classify_answers_sst2_labels_by_name(models, tmp_path, stored_names):
    loaded = load_model(tiny_sst2_run(models["pretrained"], tmp_path / "sst2", stored_names))
    got = pipelines_for(loaded)["classify"](["a gripping film"])[0]
    assert loaded.labels == ["0", "1"] and sorted(r["label"] for r in got) == ["negative", "positive"]


def test_classify_labels_without_names_are_answered_as_stored(models):
    got = pipelines_for(load_model(models["classification"]))["classify"]([["paris", "london"]])[0]
    assert sorted(r["label"] for r in got) == ["contradiction", "entailment", "neutral"]


def test_a_ranking_run_exported_to_onnx_ranks_as_the_torch_run(ranker):
    request = [{"context": RANK_CONTEXT, "candidates": RANK_CANDIDATES}, {"context": None, "candidates": ["a", "b c"]}]
    want = pipelines_for(load_model(ranker))["rank"](request)
    onnx = load_model(ranker, "onnx", "fp32")  # exported on the fly, parity-checked by the export
    assert onnx.kind == "ranking"
    got = pipelines_for(onnx)["rank"](request)
    for g, w in zip(got, want):
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-3) and g["ranking"] == w["ranking"]
