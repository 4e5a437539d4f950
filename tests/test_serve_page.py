"""The web page in a real browser: Debian's Chromium driven by Playwright (no downloaded browser).

Skipped with the reason where Chromium or Playwright is missing, except in CI (``CI=true``), where that fails:
``.ci/run`` installs Chromium. A screenshot of each check is kept in pytest's tmp folder (its path is printed).
"""

import os
import shutil
from pathlib import Path

import pytest

from deploy_fixtures import ZH, tiny_models
from serve_fixtures import running_server, tiny_ranking_run, tiny_sst2_run

CHROMIUM = os.environ.get("ELECTRA_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CONTEXT = "The capital of France is Paris. The river runs through green hills."


def _browser_or_skip():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright; no browser download needed)"
    if missing is None and not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    sync_playwright = _browser_or_skip()
    root = tmp_path_factory.mktemp("page")
    models = tiny_models(root)
    rank, sst = tiny_ranking_run(models["pretrained"], root / "rank"), tiny_sst2_run(models["pretrained"],
                                                                                           root / "sst2")
    specs = [f"pre={models['pretrained']}", f"qa={models['qa']}", f"rank={rank}", f"sst={sst}"]
    with running_server(specs, root / "serve.log") as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1000, "height": 900})
            tab.goto(server.url + "/")
            tab.wait_for_selector("#detect:not([hidden])")
            tab.server = server
            yield tab
        finally:
            browser.close()


def _shot(page, tmp_path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("text", ["the chef cooked the meal and ate the car.", ZH])
def test_detect_shades_each_token_with_the_api_scores(page, tmp_path, text):
    page.fill("#detect-text", text)
    page.eval_on_selector("#detect-out", "e => e.replaceChildren()")  # wait for this answer, not the last one
    page.click("#detect-run")
    page.wait_for_selector("#detect-out .token")
    shown = page.eval_on_selector_all("#detect-out .token", "els => els.map(e => [e.textContent, e.dataset.p, "
                                                            "e.title, getComputedStyle(e).backgroundColor])")
    with page.server.client() as c:
        api = c.post("/v1/detect", json={"text": text}).json()
    assert [s[0] for s in shown] == api["tokens"]
    assert [float(s[1]) for s in shown] == api["replaced_prob"]
    assert all(s[2] == f"p(replaced) = {p:.4f}" for s, p in zip(shown, api["replaced_prob"]))  # the hover text
    assert all(s[3] != "rgba(0, 0, 0, 0)" for s in shown)  # shaded
    assert _shot(page, tmp_path, "detect").stat().st_size > 0


@pytest.mark.slow
def test_qa_highlights_the_api_answer_in_the_context(page, tmp_path):
    page.fill("#qa-question", "What is the capital of France?")
    page.fill("#qa-context", CONTEXT)
    page.eval_on_selector("#qa-out", "e => e.replaceChildren()")
    page.click("#qa-run")
    page.wait_for_selector("#qa-context-out")
    with page.server.client() as c:
        api = c.post("/v1/answer", json={"question": "What is the capital of France?", "context": CONTEXT}).json()
    assert page.inner_text("#qa-context-out") == CONTEXT
    if api["answer"]:
        mark = page.query_selector("#qa-context-out mark.answer")
        assert mark.inner_text() == CONTEXT[api["start"]:api["end"]] == api["answer"]
        assert (int(mark.get_attribute("data-start")), int(mark.get_attribute("data-end"))) == (api["start"],
                                                                                                api["end"])
    else:
        assert page.query_selector("#qa-context-out mark.answer") is None
    assert _shot(page, tmp_path, "qa").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("text", ["paris is old and the river runs", ZH])
def test_correct_shows_the_api_edits_struck_through_and_replaced(page, tmp_path, text):
    page.fill("#correct-text", text)
    for field, value in (("threshold", "0"), ("min-generator-prob", "0"), ("max-new-p", "1")):  # edits on a
        page.fill(f"#correct-{field}", value)  # random tiny model
    page.eval_on_selector("#correct-out", "e => e.replaceChildren()")
    page.click("#correct-run")
    page.wait_for_selector("#correct-result")
    shown = page.eval_on_selector_all("#correct-out .edit", "els => els.map(e => [+e.dataset.start, +e.dataset.end, "
                                                            "e.querySelector('del').textContent, "
                                                            "e.querySelector('ins').textContent, +e.dataset.p, "
                                                            "e.title, getComputedStyle(e.querySelector('del'))"
                                                            ".textDecorationLine])")
    with page.server.client() as c:
        api = c.post("/v1/correct", json={"text": text, "threshold": 0, "min_generator_prob": 0,
                                          "max_new_p": 1}).json()
    assert api["edits"] and [s[:5] for s in shown] == [[e["start"], e["end"], e["original"], e["replacement"],
                                                        e["p_replaced"]] for e in api["edits"]]
    assert all(s[5] == f"p(replaced) = {s[4]:.4f}" and s[6] == "line-through" for s in shown)  # hover, struck
    assert page.inner_text("#correct-result") == api["text"]
    assert _shot(page, tmp_path, "correct").stat().st_size > 0


RANK_CONTEXT = "what is the capital of france?"
RANK_CANDIDATES = ["the capital of france is paris.", "the capital of france is london.", ZH,
                   "the river runs through green hills."]


@pytest.mark.slow
def test_rank_lists_the_candidates_best_first_with_the_api_scores(page, tmp_path):
    page.fill("#rank-context", RANK_CONTEXT)
    page.fill("#rank-candidates", "\n".join(RANK_CANDIDATES) + "\n\n")  # blank lines are no candidates
    page.eval_on_selector("#rank-out", "e => e.replaceChildren()")
    page.click("#rank-run")
    page.wait_for_selector("#rank-list li")
    shown = page.eval_on_selector_all("#rank-list li", "els => els.map(e => [+e.dataset.index, +e.dataset.score, "
                                                       "e.querySelector('.text').textContent, "
                                                       "e.querySelector('.score').textContent])")
    with page.server.client() as c:
        api = c.post("/v1/rank", json={"context": RANK_CONTEXT, "candidates": RANK_CANDIDATES}).json()
    assert [s[0] for s in shown] == api["ranking"]
    assert [s[1] for s in shown] == [api["scores"][k] for k in api["ranking"]]
    assert [s[2] for s in shown] == [RANK_CANDIDATES[k] for k in api["ranking"]]
    assert all(s[3] == f"{s[1]:.4f}" for s in shown)
    assert _shot(page, tmp_path, "rank").stat().st_size > 0


@pytest.mark.slow
def test_classify_shows_the_label_names_the_api_answers(page, tmp_path):
    page.fill("#classify-text", "a gripping, beautifully acted film.")
    page.eval_on_selector("#classify-out", "e => e.replaceChildren()")
    page.click("#classify-run")
    page.wait_for_selector("#classify-out table")
    shown = page.eval_on_selector_all("#classify-out tr", "els => els.map(e => e.cells[0].textContent)")
    with page.server.client() as c:
        api = c.post("/v1/classify", json={"text": "a gripping, beautifully acted film."}).json()
    assert shown == [r["label"] for r in api] and sorted(shown) == ["negative", "positive"]
    assert _shot(page, tmp_path, "classify").stat().st_size > 0
