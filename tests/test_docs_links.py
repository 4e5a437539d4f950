"""Relative links in README.md, README.zh-CN.md and docs/**/*.md point at files and headings that exist.

No network: http(s)/mailto links are not followed. Anchors are compared with GitHub's heading slugs.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
MAX_README_LINES = 300

# [text](target) and ![alt](target); the target may be followed by a title in quotes.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    return [p for p in READMES if p.exists()] + sorted((ROOT / "docs").rglob("*.md"))


def _prose_lines(path: Path):
    """(line number, text) of the lines outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def _strip_inline_code(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup removed, lower-case, punctuation dropped (letters of any script,
    digits, '_', '-' and spaces kept), spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "_- " or _is_mark(ch))
    return text.replace(" ", "-")


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")  # combining marks stay part of a word


def anchors(path: Path) -> set[str]:
    """Every heading slug of a file, with GitHub's -1, -2, ... suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in _prose_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        if slug in seen:
            seen[slug] += 1
            result.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            result.add(slug)
    for _, line in _prose_lines(path):  # explicit <a name="..."> / id="..." anchors
        result.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line))
    return result


def relative_links(path: Path):
    """(line number, target) of every relative link or image in the file's prose."""
    for number, line in _prose_lines(path):
        for m in LINK.finditer(_strip_inline_code(line)):
            target = m.group(1)
            if EXTERNAL.match(target):
                continue
            yield number, target


def _where(path: Path, number: int, target: str) -> str:
    return f"{path.relative_to(ROOT)}:{number}: ({target})"


def test_there_are_markdown_files_with_links():
    files = markdown_files()
    assert ROOT / "README.md" in files and (ROOT / "docs").is_dir()
    assert any(list(relative_links(f)) for f in files), "no relative link found at all: the parser is broken"


def test_relative_links_resolve_to_files():
    broken = []
    for md in markdown_files():
        for number, target in relative_links(md):
            file_part = unquote(target.split("#", 1)[0])
            if not file_part:
                continue  # same-file anchor: test_anchors_exist
            if not (md.parent / file_part).exists():
                broken.append(_where(md, number, target) + " -> no such file")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_anchors_exist():
    missing = []
    cache: dict[Path, set[str]] = {}
    for md in markdown_files():
        for number, target in relative_links(md):
            if "#" not in target:
                continue
            file_part, anchor = target.split("#", 1)
            dest = (md.parent / unquote(file_part)).resolve() if file_part else md.resolve()
            if dest.suffix.lower() != ".md" or not dest.exists():
                continue  # a missing file is reported by test_relative_links_resolve_to_files
            if dest not in cache:
                cache[dest] = anchors(dest)
            if unquote(anchor).lower() not in cache[dest]:
                missing.append(_where(md, number, target) + f" -> no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not missing, "links to missing headings:\n" + "\n".join(missing)


@pytest.mark.parametrize("name", ["README.md", "README.zh-CN.md"])
def test_readme_is_at_most_300_lines(name):
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"{name}: {len(lines)} lines, at most {MAX_README_LINES}"


@pytest.mark.parametrize("heading, slug", [
    ("Install and the two commands", "install-and-the-two-commands"),
    ("TensorFlow / Keras 3 (`electra.tf`)", "tensorflow--keras-3-electratf"),
    ("RTD vs MLM at equal compute (`benchmarks/rtd_vs_mlm.py`)", "rtd-vs-mlm-at-equal-compute-benchmarksrtd_vs_mlmpy"),
    ("The full hour: 2 × 128 on 128-dimensional word2vec", "the-full-hour-2--128-on-128-dimensional-word2vec"),
    ("安装与两条命令", "安装与两条命令"),
    ("TensorFlow / Keras 3（`electra.tf`）", "tensorflow--keras-3electratf"),
])
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_link_parser_skips_code_and_external_links(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("see [a](a.md#b) and ![img](p.png) and [web](https://x.org) `[no](code.md)`\n"
                  "```\n[no](fenced.md)\n```\n", encoding="utf-8")
    assert list(relative_links(md)) == [(1, "a.md#b"), (1, "p.png")]
