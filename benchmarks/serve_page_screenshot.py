"""Make ``docs/serve-page.png``: ``electra serve`` with real models, the page driven by Debian's Chromium.

  python benchmarks/serve_page_screenshot.py --pre runs/warm-start/rtd-from-minilm-new/checkpoints/step-00000923 \\
      --cls runs/sst2-minilm [--rank runs/mutual-minilm] [--out docs/serve-page.png]

Starts the server on a free loopback port (``serve_load.py``'s helpers) and waits until it is ready, then types
one sentence into detect, the same sentence with its last word masked into fill and a review into classify (and,
with ``--rank``, a fine-tuned reranker run, a context and its candidates into rank), presses each button, waits for
each answer and saves a full-page screenshot. Needs Playwright for Python and
Chromium at ``/usr/bin/chromium`` (or ``ELECTRA_CHROMIUM``); no browser is downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import harness
from serve_load import free_port, start, stop

CHROMIUM = os.environ.get("ELECTRA_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SENTENCE = "the city is located on the north bank of the banana."
MASKED = "the city is located on the north bank of the [MASK]."
REVIEW = "a gripping, beautifully acted film that never lets go."
CONTEXT = "m : how long are you going to stay here ? f : only 4 days , i have to go to london after the concert ."
CANDIDATES = ("m : so you will stay here for 4 days before you go to london .",
              "m : so you will stay here for a month after the concert .",
              "m : so you are going to london first and then come back for the concert .")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pre", required=True, help="pre-trained checkpoint (detect, fill)")
    ap.add_argument("--cls", required=True, help="fine-tuned classification run (classify)")
    ap.add_argument("--rank", help="fine-tuned reranker run (rank), e.g. electra finetune --task mutual")
    ap.add_argument("--out", type=Path, default=harness.ROOT / "docs" / "serve-page.png")
    ap.add_argument("--text", default=SENTENCE)
    ap.add_argument("--masked", default=MASKED)
    ap.add_argument("--review", default=REVIEW)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = free_port()
    models = [f"pre={args.pre}", f"cls={args.cls}"] + ([f"rank={args.rank}"] if args.rank else [])
    cmd = [sys.executable, "-m", "electra", "serve", "--model", *models, "--port", str(port), "--threads", "1",
           "--log-level", "warning"]
    with tempfile.TemporaryDirectory(prefix="serve-shot-") as tmp, sync_playwright() as pw:
        server = start(cmd, port, Path(tmp) / "serve.log", ready="/ready")
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/")
                steps = [("detect", "#detect-text", args.text, "#detect-out", "#detect-out .token"),
                         ("fill", "#fill-text", args.masked, "#fill-out", "#fill-out *"),
                         ("classify", "#classify-text", args.review, "#classify-out", "#classify-out *")]
                if args.rank:
                    steps.append(("rank", "#rank-candidates", "\n".join(CANDIDATES), "#rank-out", "#rank-list li"))
                for section, field, value, out, done in steps:
                    page.wait_for_selector(f"#{section}:not([hidden])")
                    if section == "rank":
                        page.fill("#rank-context", CONTEXT)
                    page.fill(field, value)
                    page.eval_on_selector(out, "e => e.replaceChildren()")
                    page.click(f"#{section}-run")
                    page.wait_for_selector(done)
                page.wait_for_timeout(300)
                tmp_png = args.out.with_suffix(".tmp.png")
                page.screenshot(path=str(tmp_png), full_page=True)
                tmp_png.replace(args.out)
            finally:
                browser.close()
        finally:
            stop(server)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
