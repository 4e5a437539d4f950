"""`electra serve` in a subprocess on a free loopback port: every endpoint's schema, every error class, dynamic
batching under concurrency, and graceful shutdown."""

import inspect
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from deploy_fixtures import ZH, tiny_models  # noqa: E402
from electra.checkpoint import load_checkpoint, save_checkpoint, tokenizer_dir  # noqa: E402
from electra.generation import Edit, apply_edits  # noqa: E402
from electra.inference import load_model  # noqa: E402
from electra.pipelines import pipelines_for  # noqa: E402
from electra.scoring import Scorer  # noqa: E402
from serve_fixtures import running_server  # noqa: E402

QA = {"question": "what is the capital of france?", "context": "The capital of France is Paris. Rivers run."}
OPTIONS = ("--max-wait-ms", "100", "--max-queue", "16", "--max-inputs", "20", "--max-body-bytes", "4096",
           "--max-input-tokens", "40")


PERMISSIVE = {"threshold": 0.0, "min_generator_prob": 0.0, "max_new_p": 1.0}  # edits even on a random model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    runs = tiny_models(tmp_path_factory.mktemp("models"))
    ckpt = runs["pretrained"]  # the same discriminator saved alone, as `electra import-hf --discriminator` does
    runs["discriminator_only"] = save_checkpoint(load_checkpoint(ckpt), ckpt.parent / "disc-only",
                                                 tokenizer_dir=tokenizer_dir(ckpt), has_generator=False)
    return runs


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    specs = [f"pre={models['pretrained']}", f"cls={models['classification']}", f"qa={models['qa']}",
             f"tag={models['tagging']}", f"disc={models['discriminator_only']}"]
    with running_server(specs, tmp_path_factory.mktemp("log") / "serve.log", *OPTIONS) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def local(models):
    """The same pipelines in this process: what the API must answer."""
    return {**pipelines_for(load_model(models["pretrained"])), **pipelines_for(load_model(models["qa"])),
            **pipelines_for(load_model(models["tagging"])), **pipelines_for(load_model(models["classification"]))}


def test_health_ready_and_info_describe_the_models(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    info = client.get("/info").json()
    by_name = {m["name"]: m for m in info["models"]}
    assert by_name["pre"]["tasks"] == ["detect", "fill", "correct", "rescore"] and by_name["qa"]["tasks"] == ["answer"]
    assert by_name["cls"]["labels"] == ["contradiction", "entailment", "neutral"]
    assert by_name["tag"]["max_input_tokens"] == 40 and info["limits"]["max_inputs"] == 20


def test_detect_answers_the_fields_of_cli_detect_json(client, local):
    got = client.post("/v1/detect", json={"text": "paris is old"}).json()
    assert set(got) == {"tokens", "replaced_prob", "sequence_score"}
    assert got == local["detect"](["paris is old"])[0]


def test_fill_answers_transformers_fill_mask_fields(client, local):
    got = client.post("/v1/fill", json={"text": "paris is [MASK]", "top_k": 3}).json()
    assert len(got) == 3 and all(set(c) == {"sequence", "score", "token", "token_str"} for c in got)
    assert got == local["fill"].run([local["fill"].prepare("paris is [MASK]", 3)])[0]


def test_correct_answers_the_text_and_its_edits(client):
    text = "paris is old and the river runs"
    got = client.post("/v1/correct", json={"text": text, **PERMISSIVE}).json()
    assert set(got) == {"text", "edits"} and got["edits"]
    assert all(set(e) == {"start", "end", "original", "replacement", "p_replaced"} for e in got["edits"])
    assert all(text[e["start"]:e["end"]] == e["original"] for e in got["edits"])


@pytest.mark.parametrize("text", ["paris is old and the river runs", ZH])
def test_correct_edits_applied_to_the_input_give_the_returned_text(client, text):
    got = client.post("/v1/correct", json={"text": text, **PERMISSIVE}).json()
    assert apply_edits(text, [Edit(**e) for e in got["edits"]]) == got["text"]


def test_correct_defaults_are_the_correctors(client):
    from electra.generation import DEFAULT_THRESHOLD, Corrector
    from electra.serve.app import CorrectRequest

    assert CorrectRequest().threshold == DEFAULT_THRESHOLD
    assert CorrectRequest().rounds == inspect.signature(Corrector).parameters["rounds"].default
    assert client.post("/v1/correct", json={"text": "paris is old"}).status_code == 200


def test_correct_texts_give_one_correction_per_input_in_order(client):
    texts = ["paris is old", ZH, "the river runs through green hills"]
    got = client.post("/v1/correct", json={"texts": texts, **PERMISSIVE}).json()
    assert got == [client.post("/v1/correct", json={"text": t, **PERMISSIVE}).json() for t in texts]


BAD_OPTIONS = [{"threshold": 2}, {"threshold": "0.5"}, {"min_generator_prob": -0.1}, {"max_new_p": 1.5},
               {"top_k": 0}, {"top_k": 51}, {"rounds": 6}, {"keep_names": "yes"}, {"beam": 3}]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=[str(o) for o in BAD_OPTIONS])
def test_correct_options_out_of_range_are_validation_errors(client, options):
    r = client.post("/v1/correct", json={"text": "paris is old", **options})
    assert r.status_code == 422 and r.json().keys() == {"error", "error_type"}
    assert r.json()["error_type"] == "validation" and next(iter(options)) in r.json()["error"]


@pytest.mark.parametrize("body", [{"text": "paris " * 60}, {"text": "   "}, {"texts": ["a"] * 21}],
                         ids=["over the token limit", "empty text", "too many inputs"])
def test_correct_refuses_what_the_other_endpoints_refuse(client, body):
    r = client.post("/v1/correct", json=body)
    assert r.status_code == 422 and r.json()["error_type"] == "validation"


def test_a_model_without_a_generator_neither_lists_nor_serves_correct(client):
    by_name = {m["name"]: m for m in client.get("/info").json()["models"]}
    assert by_name["disc"]["tasks"] == ["detect", "rescore"] and by_name["cls"]["tasks"] == ["classify"]
    for name in ("disc", "cls"):
        r = client.post("/v1/correct", json={"text": "paris is old", "model": name})
        assert r.status_code == 422 and r.json()["error_type"] == "validation"
        assert f"model {name!r} does not serve correct" in r.json()["error"] and "'pre'" in r.json()["error"]
    assert client.post("/v1/detect", json={"text": "paris is old", "model": "disc"}).status_code == 200


def test_correct_keeps_serving_after_bad_requests(server, client):
    for _, args, _, _ in ERRORS:
        client.post("/v1/correct", headers={"Content-Type": "application/json"}, **args)
    for options in BAD_OPTIONS:
        client.post("/v1/correct", json={"text": "paris", **options})
    assert server.process.poll() is None
    assert client.post("/v1/correct", json={"text": "paris is old"}).json().keys() == {"text", "edits"}


CANDIDATES = ["paris is old", "old is paris", ZH]


@pytest.mark.parametrize("method", ["rtd", "pll", "pll-word"])
def test_rescore_gives_electra_scoring_sentence_scores_and_the_ranking(client, models, method):
    got = client.post("/v1/rescore", json={"candidates": CANDIDATES, "method": method}).json()
    assert set(got) == {"scores", "ranking"} and sorted(got["ranking"]) == [0, 1, 2]
    expected = Scorer(load_model(models["pretrained"])).score(method, CANDIDATES)
    assert got["scores"] == pytest.approx([round(s.score, 4) for s in expected], abs=2e-4)
    assert [got["scores"][k] for k in got["ranking"]] == sorted(got["scores"], reverse=True)


def test_rescore_lists_give_one_answer_per_list_in_order(client):
    lists = [CANDIDATES, ["london is old"], CANDIDATES[::-1]]
    got = client.post("/v1/rescore", json={"lists": lists}).json()
    assert got == [client.post("/v1/rescore", json={"candidates": c}).json() for c in lists]


@pytest.mark.parametrize("body", [{"candidates": ["a"], "lists": [["b"]]}, {"candidates": []}, {"lists": [[]]},
                                  {"candidates": ["a"] * 21}, {"candidates": ["a", "paris " * 60]},
                                  {"candidates": ["a"], "method": "bleu"}, {"candidates": "a"},
                                  {"candidates": ["a"], "method": "pll", "model": "disc"}],
                         ids=["both", "empty", "empty list", "too many candidates", "over the token limit",
                              "unknown method", "not a list", "pll without a generator"])
def test_rescore_bad_requests_are_validation_errors(client, body):
    r = client.post("/v1/rescore", json=body)
    assert r.status_code == 422 and r.json().keys() == {"error", "error_type"}
    assert r.json()["error_type"] == "validation"


def test_rescore_keeps_serving_after_bad_requests(server, client):
    for _, args, _, _ in ERRORS:
        client.post("/v1/rescore", headers={"Content-Type": "application/json"}, **args)
    assert server.process.poll() is None
    assert client.post("/v1/rescore", json={"candidates": ["a", "b"], "model": "disc"}).status_code == 200


def test_classify_lists_every_label_best_first(client):
    got = client.post("/v1/classify", json={"text": ["paris is old", "london is old"]}).json()
    assert sorted(r["label"] for r in got) == ["contradiction", "entailment", "neutral"]
    assert [r["score"] for r in got] == sorted((r["score"] for r in got), reverse=True)
    assert abs(sum(r["score"] for r in got) - 1) < 1e-3


def test_answer_gives_character_offsets_into_the_context(client, local):
    got = client.post("/v1/answer", json=QA).json()
    assert set(got) == {"answer", "score", "start", "end"}
    assert QA["context"][got["start"]:got["end"]] == got["answer"] and got == local["answer"]([QA])[0]


def test_tag_gives_entity_groups_with_offsets(client):
    text = "paris and london are old towns"
    got = client.post("/v1/tag", json={"text": text}).json()
    assert all(set(e) == {"entity_group", "score", "word", "start", "end"} for e in got)
    assert all(text[e["start"]:e["end"]] == e["word"] for e in got)


def test_texts_give_one_result_per_input_in_order(client, local):
    texts = ["paris is old", ZH, "london"]
    assert client.post("/v1/detect", json={"texts": texts}).json() == local["detect"](texts)


def test_answer_takes_a_list_of_inputs(client):
    got = client.post("/v1/answer", json={"inputs": [QA, QA]}).json()
    assert len(got) == 2 and got[0] == got[1]


ERRORS = [
    ("malformed json", dict(content=b'{"text": '), 400, "malformed_json"),
    ("not utf-8", dict(content=b'{"text": "\xff"}'), 400, "malformed_json"),
    ("nested too deeply", dict(content=b"[" * 1500 + b"]" * 1500), 400, "malformed_json"),
    ("not an object", dict(json=["paris"]), 422, "validation"),
    ("wrong type", dict(json={"text": 5}), 422, "validation"),
    ("unknown field", dict(json={"text": "a", "txt": "b"}), 422, "validation"),
    ("text and texts", dict(json={"text": "a", "texts": ["b"]}), 422, "validation"),
    ("empty list", dict(json={"texts": []}), 422, "validation"),
    ("too many inputs", dict(json={"texts": ["a"] * 21}), 422, "validation"),
    ("over the token limit", dict(json={"text": "paris " * 60}), 422, "validation"),
    ("unknown model", dict(json={"text": "a", "model": "nope"}), 422, "validation"),
    ("body too large", dict(json={"text": "a" * 5000}), 413, "payload_too_large"),
    ("queue full", dict(json={"texts": ["a"] * 17}), 429, "overloaded"),
]


@pytest.mark.parametrize("name,request_args,status,error_type", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_requests_get_a_json_error(client, name, request_args, status, error_type):
    r = client.post("/v1/detect", headers={"Content-Type": "application/json"}, **request_args)
    assert r.status_code == status
    assert r.json().keys() == {"error", "error_type"} and r.json()["error_type"] == error_type
    assert "Traceback" not in r.text


def test_a_chunked_body_over_the_limit_is_refused(client):
    r = client.post("/v1/detect", content=iter([b'{"text": "', b"a" * 3000, b"a" * 3000, b'"}']))
    assert r.status_code == 413 and r.json()["error_type"] == "payload_too_large"


@pytest.mark.parametrize("method,path,status", [("GET", "/v1/detect", 405), ("GET", "/nope", 404),
                                                ("POST", "/v1/nope", 404)])
def test_unknown_routes_and_methods_get_a_json_error(client, method, path, status):
    r = client.request(method, path)
    assert r.status_code == status and r.json().keys() == {"error", "error_type"}


def test_fill_without_a_mask_and_a_bad_top_k_are_validation_errors(client):
    for body in ({"text": "no mask here"}, {"text": "a [MASK]", "top_k": 0}, {"text": "a [MASK]", "top_k": "3"}):
        r = client.post("/v1/fill", json=body)
        assert r.status_code == 422 and r.json()["error_type"] == "validation", body


def test_the_server_keeps_serving_after_every_malformed_request(server, client):
    for _, args, _, _ in ERRORS:
        client.post("/v1/tag", headers={"Content-Type": "application/json"}, **args)
    assert server.process.poll() is None
    assert client.get("/health").status_code == 200
    assert client.post("/v1/tag", json={"text": "paris"}).status_code == 200


def test_concurrent_clients_each_get_their_own_result(server, local):
    texts = [f"{a} is {b}" for a in ("paris", "london", "rome", "oslo") for b in ("old", "green", "france")]
    with server.client() as c:
        before = _batches(c)
        barrier = threading.Barrier(len(texts))

        def one(text):
            barrier.wait()
            return c.post("/v1/detect", json={"text": text}).json()

        with ThreadPoolExecutor(len(texts)) as pool:
            got = list(pool.map(one, texts))
        after = _batches(c)
    assert got == local["detect"](texts)
    forward_passes, inputs = after[0] - before[0], after[1] - before[1]
    assert inputs == len(texts) and forward_passes < len(texts)  # some requests shared a forward pass


def _batches(c) -> tuple[float, float]:
    """(forward passes, inputs) of the detect queues so far (summed over the models), from /metrics."""
    value = {"electra_batch_size_count": 0.0, "electra_batch_size_sum": 0.0}
    for ln in c.get("/metrics").text.splitlines():
        name = ln.split("{")[0].split(" ")[0]
        if name in value and 'task="detect"' in ln:
            value[name] += float(ln.rsplit(" ", 1)[1])
    return value["electra_batch_size_count"], value["electra_batch_size_sum"]


def test_metrics_count_requests_latency_batches_and_errors(client):
    client.post("/v1/detect", content=b"{")
    text = client.get("/metrics").text
    for name in ("electra_requests_total", "electra_request_duration_seconds_bucket", "electra_batch_size_bucket",
                 'electra_errors_total{error_type="malformed_json"}', "electra_inference_duration_seconds_count"):
        assert name in text, name


def test_the_page_is_served_at_the_root(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="detect-run"' in r.text and 'id="qa-run"' in r.text and 'id="correct-run"' in r.text


@pytest.mark.slow
def test_shutdown_lets_the_request_in_flight_finish(models, tmp_path):
    with running_server([str(models["pretrained"])], tmp_path / "serve.log", "--max-wait-ms", "800") as s:
        result = {}

        def request():
            with s.client() as c:
                r = c.post("/v1/detect", json={"text": "paris is old"})
                result.update(status=r.status_code, body=r.json())

        t = threading.Thread(target=request)
        t.start()
        time.sleep(0.3)  # the request now waits in the batcher (max-wait 800 ms)
        s.process.send_signal(signal.SIGTERM)
        t.join(30)
        assert s.process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert result["status"] == 200 and set(result["body"]) == {"tokens", "replaced_prob", "sequence_score"}
