"""`electra serve` in a subprocess on a free loopback port: every endpoint's schema, every error class, dynamic
batching under concurrency, oversized bodies answered to clients that write the whole body first, and graceful
shutdown."""

import contextlib
import inspect
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from deploy_fixtures import ZH, tiny_models  # noqa: E402
from electra.checkpoint import load_checkpoint, save_checkpoint, tokenizer_dir  # noqa: E402
from electra.generation import Edit, apply_edits  # noqa: E402
from electra.inference import load_model  # noqa: E402
from electra.pipelines import PIPELINES, pipelines_for  # noqa: E402
from electra.scoring import Scorer  # noqa: E402
from electra.serve.app import ENDPOINTS, ROUTES  # noqa: E402
from electra.tasks.registry import FAMILIES  # noqa: E402
from serve_fixtures import SST2_NAMES, free_port, running_server, tiny_ranking_run, tiny_sst2_run  # noqa: E402

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
    runs["ranking"] = tiny_ranking_run(ckpt, ckpt.parent / "rank")
    runs["named"] = tiny_sst2_run(ckpt, ckpt.parent / "sst2")
    return runs


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    specs = [f"pre={models['pretrained']}", f"cls={models['classification']}", f"qa={models['qa']}",
             f"tag={models['tagging']}", f"disc={models['discriminator_only']}", f"rank={models['ranking']}",
             f"sst={models['named']}"]
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
            **pipelines_for(load_model(models["tagging"])), **pipelines_for(load_model(models["classification"])),
            **pipelines_for(load_model(models["ranking"]))}


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
    assert set(got) == {"tokens", "replaced_prob", "sequence_score", "offsets"}
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
    assert result["status"] == 200 and set(result["body"]) == {"tokens", "replaced_prob", "sequence_score", "offsets"}


# ---- rank (fine-tuned rerankers) ----------------------------------------------------------------------------
RANK = {"context": "what is the capital of france?", "candidates": ["paris is the capital", "london is old", ZH]}


def test_rank_answers_each_candidates_score_and_the_ranking(client, local):
    got = client.post("/v1/rank", json=RANK).json()
    assert set(got) == {"scores", "ranking"} and len(got["scores"]) == 3 and sorted(got["ranking"]) == [0, 1, 2]
    assert got == local["rank"]([RANK])[0]
    assert [got["scores"][k] for k in got["ranking"]] == sorted(got["scores"], reverse=True)


def test_rank_inputs_give_one_answer_per_input_in_order(client):
    inputs = [RANK, {"candidates": ["paris", "rome is old"]}, {**RANK, "candidates": RANK["candidates"][::-1]}]
    got = client.post("/v1/rank", json={"inputs": inputs}).json()
    assert got == [client.post("/v1/rank", json=i).json() for i in inputs]


def test_rank_is_listed_in_info_with_the_runs_kind(client):
    by_name = {m["name"]: m for m in client.get("/info").json()["models"]}
    assert by_name["rank"]["kind"] == "ranking" and by_name["rank"]["tasks"] == ["rank"]
    assert by_name["rank"]["task"] == "mutual" and by_name["rank"]["max_input_tokens"] == 40


RANK_ERRORS = [
    ({"context": "q", "candidates": []}, "no candidates: the list is empty"),
    ({"context": "q", "candidates": ["a", 5]}, "candidates.1: Input should be a valid string"),
    ({"context": 5, "candidates": ["a"]}, "context: Input should be a valid string"),
    ({"candidates": ["a"] * 21}, "a list of 21 candidates; at most 20 per list"),
    ({"context": "q", "candidates": ["a", "paris " * 60]}, "candidate 1: context + candidate is"),
    ({"context": "q"}, "give \"candidates\""),
    ({"candidates": ["a"], "inputs": [RANK]}, "give \"candidates\""),
    ({"inputs": []}, "no inputs: the list is empty"),
    ({"inputs": [RANK, {"context": "q", "candidates": []}]}, "input 1: no candidates"),
    ({"inputs": [{"context": "q"}]}, "inputs.0.candidates: Field required"),
    ({"candidates": ["a"], "choices": ["b"]}, "choices: Extra inputs are not permitted"),
    ({"candidates": ["a"], "model": "cls"}, "model 'cls' does not serve rank"),
]


@pytest.mark.parametrize("body,message", RANK_ERRORS, ids=[m for _, m in RANK_ERRORS])
def test_rank_bad_requests_are_validation_errors_saying_what_is_wrong(client, body, message):
    r = client.post("/v1/rank", json=body)
    assert r.status_code == 422 and r.json().keys() == {"error", "error_type"}
    assert r.json()["error_type"] == "validation" and message in r.json()["error"]


def test_rank_keeps_serving_after_bad_requests(server, client):
    for _, args, _, _ in ERRORS:
        client.post("/v1/rank", headers={"Content-Type": "application/json"}, **args)
    for body, _ in RANK_ERRORS:
        client.post("/v1/rank", json=body)
    assert server.process.poll() is None
    assert client.post("/v1/rank", json=RANK).status_code == 200


@pytest.mark.slow
def test_a_fine_tuned_mutual_run_serves_the_scores_of_its_own_evaluation(tmp_path, capsys):
    from electra.cli import main
    from electra.data.ranking import read_mutual
    from electra.metrics.ranking import rank
    from electra.tasks.classification import prepare_tokenizer
    from electra.tasks.ranking import encode_lists, list_scores
    from electra.tasks.runner import load_task_model
    from rescoring_fixtures import FIX, tiny_checkpoint

    data, run = tmp_path / "mutual", tmp_path / "run"
    data.mkdir()
    for split in ("train", "dev"):
        (data / f"{split}.jsonl").write_text((FIX / "mutual_dev_head.jsonl").read_text())
    with pytest.raises(SystemExit):
        main(["finetune", "--task", "mutual", "--model", str(tiny_checkpoint(tmp_path)), "--data", str(data),
              "--out", str(run), "--max-steps", "1", "--batch-size", "8", "--max-seq-len", "128", "--quiet",
              "--device", "cpu"])
    capsys.readouterr()
    item = read_mutual(data / "dev.jsonl")[0]
    model = load_task_model(run)
    cfg = model.encoder.config
    tok = prepare_tokenizer(None, run, cfg.vocab_size, 128, cfg.max_position_embeddings)
    tok.no_truncation()
    while max(len(tok.encode(item.context, c).ids) for c in item.candidates) > 128:  # the server refuses what
        item.context = item.context.split(" ", 1)[1]  # evaluation would cut: drop words from the left
    assert item.context
    feats = encode_lists(tok, [item], 128, "choice", 0.1)
    want = list_scores(model, feats, pad_id=tok.token_to_id("[PAD]") or 0)[0]
    with running_server([str(run)], tmp_path / "serve.log") as s, s.client() as c:
        got = c.post("/v1/rank", json={"context": item.context, "candidates": item.candidates}).json()
    assert got["scores"] == pytest.approx(want, abs=1e-4) and got["ranking"] == rank(want)


# ---- label names ----------------------------------------------------------------------------------------------
def test_classify_answers_label_names_where_the_run_names_its_labels(client):
    got = client.post("/v1/classify", json={"text": "a gripping film", "model": "sst"}).json()
    assert sorted(r["label"] for r in got) == ["negative", "positive"]
    by_name = {m["name"]: m for m in client.get("/info").json()["models"]}
    assert by_name["sst"]["labels"] == ["negative", "positive"] and by_name["sst"]["label_names"] == SST2_NAMES
    assert by_name["cls"]["label_names"] == {}


# ---- an oversized body reaches clients that write it whole before reading (lingering close) ----------------------
BIG = b'{"text": "' + b"a" * 6_000_000 + b'"}'


def _post_whole_body(port: int, body: bytes, chunked: bool = False, extra: bytes = b"") -> bytes:
    """POST ``body`` as urllib does (``Connection: close``; the whole body written before reading), then read the
    response until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = (b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\n" + extra)
        if chunked:
            s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 1 << 16):
                s.sendall(b"%x\r\n%s\r\n" % (len(body[i:i + (1 << 16)]), body[i:i + (1 << 16)]))
            s.sendall(b"0\r\n\r\n")
        else:
            s.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return _read_to_close(s)


def _read_to_close(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _status_and_json(response: bytes) -> tuple[int, dict, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head.lower()


def test_urllib_posting_an_oversized_body_gets_the_413_json(server):
    req = urllib.request.Request(server.url + "/v1/detect", data=BIG, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 413 and json.loads(e.value.read())["error_type"] == "payload_too_large"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_writing_a_6_mb_body_before_reading_gets_the_413(server, client, chunked):
    status, body, head = _status_and_json(_post_whole_body(int(server.url.rsplit(":", 1)[1]), BIG, chunked))
    assert status == 413 and body["error_type"] == "payload_too_large" and b"connection: close" in head
    assert client.post("/v1/detect", json={"text": "paris"}).status_code == 200


@pytest.fixture(scope="module")
def bare_server():
    """The app with no model under uvicorn in a thread, lingering at most 1 MiB and 1 s: its port."""
    import uvicorn

    from electra.serve.app import create_app
    from electra.serve.limits import Limits

    app = create_app({}, Limits(max_body_bytes=4096, linger_bytes=1 << 20, linger_seconds=1.0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


def _serving(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        return r.status == 200


def test_a_body_over_the_discard_bound_is_cut_off_and_the_server_keeps_serving(bare_server):
    start = time.monotonic()
    with contextlib.suppress(OSError):  # a reset: what such a client may see
        _post_whole_body(bare_server, b"x" * (3 << 20))  # 3 MiB declared, 1 MiB may be discarded: closed at once
    assert time.monotonic() - start < 10 and _serving(bare_server)
    status, _, _ = _status_and_json(_post_whole_body(bare_server, b"x" * (512 << 10)))  # within the bound
    assert status == 413


def test_a_client_that_stops_sending_gets_the_413_then_the_close_after_the_linger_time(bare_server):
    with socket.create_connection(("127.0.0.1", bare_server), timeout=30) as s:
        s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 6000000\r\n\r\n" + b"x" * 65536)
        start = time.monotonic()
        status, body, _ = _status_and_json(_read_to_close(s))  # and nothing more is sent
        waited = time.monotonic() - start
    assert status == 413 and body["error_type"] == "payload_too_large" and waited < 5
    assert _serving(bare_server)


def test_expect_100_continue_gets_the_413_at_once_without_a_continue(bare_server):
    with socket.create_connection(("127.0.0.1", bare_server), timeout=30) as s:
        s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 6000000\r\nExpect: 100-continue\r\n\r\n")
        response = _read_to_close(s)
    assert response.startswith(b"HTTP/1.1 413") and b"100 Continue" not in response


def test_every_task_family_of_the_registry_has_a_pipeline_a_route_and_its_endpoint():
    for family in FAMILIES.values():
        assert family.pipeline in PIPELINES and family.pipeline in ROUTES, family.name
        assert family.endpoint == f"/v1/{family.pipeline}" and family.endpoint in ENDPOINTS, family.name
