"""Raw text to token shards: exact tokens and boundaries, input formats, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from electra.cli import main
from electra.data.corpus import Corpus
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.tokenization import load_tokenizer, tokenizer_from_vocab, train_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    text = (FIXTURES / "tiny-en.txt").read_text() + (FIXTURES / "tiny-zh.txt").read_text()
    train_tokenizer([x for x in text.splitlines() if x.strip()], out, vocab_size=1200, show_progress=False)
    return out


def read_docs(path: Path) -> list[list[str]]:
    docs = path.read_text().split("\n\n")
    return [[x.strip() for x in d.split("\n") if x.strip()] for d in docs if d.strip()]


def stored(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all tokens, sentence offsets, document offsets) of a prepared directory."""
    meta = json.loads((out / "meta.json").read_text())
    tokens = np.concatenate([np.fromfile(out / s["file"], dtype=meta["dtype"]) for s in meta["shards"]])
    return (tokens, np.fromfile(out / "sentence_offsets.bin", np.int64),
            np.fromfile(out / "document_offsets.bin", np.int64))


def sentences_by_doc(out: Path) -> list[list[list[int]]]:
    tokens, sent, docs = stored(out)
    return [[tokens[sent[s]:sent[s + 1]].tolist() for s in range(docs[d], docs[d + 1])]
            for d in range(len(docs) - 1)]


def expected_docs(tok_dir: Path, docs: list[list[str]]) -> list[list[list[int]]]:
    tok = load_tokenizer(tok_dir)
    return [[tok.encode(line, add_special_tokens=False).ids for line in doc] for doc in docs]


def run(tmp_path, tok_dir, inputs, **kw):
    kw.setdefault("progress", False)
    return prepare(inputs, tok_dir, tmp_path / "out", max_seq_len=32, **kw)


# ---- what is written -------------------------------------------------------------------------------------
def test_shards_hold_every_line_tokenized_with_document_boundaries(tmp_path, tok_dir):
    summary = run(tmp_path, tok_dir, [FIXTURES / "tiny-en.txt"])
    docs = read_docs(FIXTURES / "tiny-en.txt")
    assert sentences_by_doc(tmp_path / "out") == expected_docs(tok_dir, docs)
    assert summary.documents == len(docs) == 46
    assert summary.sentences == sum(map(len, docs))
    assert summary.skipped == {} and summary.altered == {}


def test_meta_and_tokenizer_copy(tmp_path, tok_dir):
    summary = run(tmp_path, tok_dir, [FIXTURES / "tiny-en.txt"], seed=7)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 1200
    assert (meta["seed"], meta["max_seq_len"]) == (7, 32)
    assert meta["counts"]["tokens"] == summary.tokens
    assert meta["counts"]["examples_epoch0"] == summary.examples > 0
    assert sorted(p.name for p in (tmp_path / "out" / "tokenizer").iterdir()) == \
        ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert (tmp_path / "out" / "tokenizer" / "vocab.txt").read_text() == (tok_dir / "vocab.txt").read_text()


def test_large_vocabulary_uses_uint32(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(70000)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer_from_vocab(tmp_path / "vocab.txt", tmp_path / "tok")
    (tmp_path / "in.txt").write_text("w69999 w1 w70000\n")
    run(tmp_path, tmp_path / "tok", [tmp_path / "in.txt"])
    tokens, _, _ = stored(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["dtype"] == "uint32"
    assert tokens.tolist() == [70004, 6, 1]


def test_gzip_and_jsonl_inputs_give_the_same_tokens_as_text(tmp_path, tok_dir):
    docs = read_docs(FIXTURES / "tiny-en.txt")
    with gzip.open(tmp_path / "a.txt.gz", "wt") as f:
        f.write((FIXTURES / "tiny-en.txt").read_text())
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"body": "\n".join(d), "id": i}) + "\n"
                                              for i, d in enumerate(docs)))
    run(tmp_path, tok_dir, [tmp_path / "a.txt.gz"])
    from_gz = sentences_by_doc(tmp_path / "out")
    run(tmp_path, tok_dir, [tmp_path / "b.jsonl"], text_field="body")
    assert from_gz == sentences_by_doc(tmp_path / "out") == expected_docs(tok_dir, docs)


def test_folders_are_read_recursively_in_sorted_order(tmp_path, tok_dir):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "b.txt").write_text("beta\n")
    (tmp_path / "in" / "sub" / "a.txt").write_text("alpha\n")
    (tmp_path / "in" / "notes.md").write_text("ignored\n")
    summary = run(tmp_path, tok_dir, [tmp_path / "in"])
    assert summary.documents == 2 and summary.skipped == {"unsupported file type in folder": 1}
    assert sentences_by_doc(tmp_path / "out") == expected_docs(tok_dir, [["beta"], ["alpha"]])


def test_worker_processes_write_identical_shards(tmp_path, tok_dir):
    a = prepare([FIXTURES], tok_dir, tmp_path / "a", progress=False, batch_chars=2000)
    b = prepare([FIXTURES], tok_dir, tmp_path / "b", progress=False, batch_chars=2000, workers=2)
    assert a.tokens == b.tokens and a.documents == b.documents
    for x, y in zip(stored(tmp_path / "a"), stored(tmp_path / "b")):
        assert np.array_equal(x, y)


def test_shards_roll_over_at_document_ends(tmp_path, tok_dir):
    run(tmp_path, tok_dir, [FIXTURES / "tiny-en.txt"], shard_tokens=1000, batch_chars=3000)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    _, sent, docs = stored(tmp_path / "out")
    doc_starts = set(sent[docs].tolist())
    assert len(meta["shards"]) > 3
    assert all(s["start"] in doc_starts for s in meta["shards"])
    assert sentences_by_doc(tmp_path / "out") == expected_docs(tok_dir, read_docs(FIXTURES / "tiny-en.txt"))


def test_real_english_sample(tmp_path, tok_dir):
    sample = DATA / "corpus" / "en-sample.txt"
    if not sample.is_file():
        pytest.skip("../shared/data not present")
    summary = run(tmp_path, tok_dir, [sample])
    assert (summary.documents, summary.sentences) == (658, 6393)  # as corpus/README.md counts them
    assert sentences_by_doc(tmp_path / "out") == expected_docs(tok_dir, read_docs(sample))


@pytest.mark.slow
def test_real_chinese_folder(tmp_path, tok_dir):
    zh = DATA / "corpus" / "zh"
    if not zh.is_dir():
        pytest.skip("../shared/data not present")
    summary = run(tmp_path, tok_dir, [zh])
    assert summary.files == 4 and summary.documents == 64 + 120 + 121 + 100
    assert summary.tokens > 2_000_000  # about one token per Chinese character
    first = read_docs(zh / "sanguoyanyi.txt")[:3]
    assert sentences_by_doc(tmp_path / "out")[:3] == expected_docs(tok_dir, first)


# ---- bad input ---------------------------------------------------------------------------------------------
def test_invalid_utf8_names_file_and_byte_offset(tmp_path, tok_dir):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\n\ncaf\xe9 au lait\n")
    with pytest.raises(ElectraError, match=r"bad\.txt: byte 14: not valid UTF-8 \(use --errors replace"):
        run(tmp_path, tok_dir, [bad])


def test_invalid_utf8_replace_and_skip_carry_on_and_count(tmp_path, tok_dir):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\n\ncaf\xe9 au lait\n")
    summary = run(tmp_path, tok_dir, [bad], errors="replace")
    assert summary.altered == {"line with invalid UTF-8 replaced": 1} and summary.sentences == 2
    assert "bad.txt: byte 14" in summary.notes["line with invalid UTF-8 replaced"][0]
    summary = run(tmp_path, tok_dir, [bad], errors="skip")
    assert summary.skipped == {"line with invalid UTF-8": 1} and summary.sentences == 1


def test_empty_file_is_skipped_and_counted(tmp_path, tok_dir):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "one.txt").write_text("hello world\n")
    summary = run(tmp_path, tok_dir, [tmp_path / "empty.txt", tmp_path / "one.txt"])
    assert summary.skipped == {"empty file": 1} and summary.files == 1
    assert "empty file" in summary.format()


def test_empty_folder_and_no_text_are_errors(tmp_path, tok_dir):
    (tmp_path / "none").mkdir()
    with pytest.raises(ElectraError, match="no input files"):
        run(tmp_path, tok_dir, [tmp_path / "none"])
    (tmp_path / "blank.txt").write_text("\n   \n\n")
    with pytest.raises(ElectraError, match="no text found"):
        run(tmp_path, tok_dir, [tmp_path / "blank.txt"])
    assert not (tmp_path / "out").exists()


def test_binary_file_is_skipped_and_counted(tmp_path, tok_dir):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    (tmp_path / "in" / "text.txt").write_text("hello world\n")
    summary = run(tmp_path, tok_dir, [tmp_path / "in"])
    assert summary.skipped == {"binary file (NUL bytes)": 1} and summary.documents == 1


def test_long_lines_are_cut_at_spaces_and_utf8_boundaries_without_changing_tokens(tmp_path, tok_dir):
    tok = load_tokenizer(tok_dir)
    english = " ".join(["the history of the city"] * 200)  # 4.8 KB
    chinese = "数学是利用符号语言研究数量" * 100  # 3-byte characters, no spaces
    (tmp_path / "long.txt").write_text(f"short\n{english}\n{chinese}\n")
    summary = run(tmp_path, tok_dir, [tmp_path / "long.txt"], max_line_bytes=256)
    assert summary.altered == {"line over 256 bytes split": 2}
    (doc,) = sentences_by_doc(tmp_path / "out")
    assert len(doc) > 20
    assert sum(doc[1:], []) == tok.encode(english + " " + chinese, add_special_tokens=False).ids


@pytest.mark.slow
def test_a_single_100_mb_line_is_chunked_with_flat_memory(tmp_path, tok_dir):
    def peak_mb(path: Path) -> float:
        code = textwrap.dedent(f"""
            import resource
            from electra.data.prepare import prepare
            s = prepare([{str(path)!r}], {str(tok_dir)!r}, {str(path) + '.out'!r}, progress=False)
            print(s.altered, s.tokens, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, check=True).stdout
        assert "line over 1048576 bytes split" in out
        return float(out.split()[-1])

    word = b"x" * 50_000 + b" "  # over-long words become one [UNK] each: cheap to tokenize
    with open(tmp_path / "small.txt", "wb") as f:
        f.write(word * 40 + b"\n")  # 2 MB
    with open(tmp_path / "huge.txt", "wb") as f:
        for _ in range(2000):  # 100 MB, one line
            f.write(word)
        f.write(b"\n")
    assert (tmp_path / "huge.txt").stat().st_size > 100_000_000
    small, huge = peak_mb(tmp_path / "small.txt"), peak_mb(tmp_path / "huge.txt")
    print(f"peak RSS: 2 MB line {small:.0f} MB, 100 MB line {huge:.0f} MB")
    assert huge - small < 64, (small, huge)


def test_truncated_gzip_stops_or_is_counted(tmp_path, tok_dir):
    data = gzip.compress(("hello world\n" * 5000).encode())
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ElectraError, match=r"cut\.txt\.gz: read error"):
        run(tmp_path, tok_dir, [tmp_path / "cut.txt.gz"])
    summary = run(tmp_path, tok_dir, [tmp_path / "cut.txt.gz"], errors="skip")
    assert summary.skipped == {"unreadable file (rest skipped)": 1} and summary.sentences > 0


def test_gzipped_jsonl_and_byte_order_marks_are_read(tmp_path, tok_dir):
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b'\xef\xbb\xbf{"text": "alpha"}\n'))
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfbeta\n")
    run(tmp_path, tok_dir, [tmp_path / "a.jsonl.gz", tmp_path / "b.txt"])
    assert sentences_by_doc(tmp_path / "out") == expected_docs(tok_dir, [["alpha"], ["beta"]])


def test_jsonl_line_that_is_not_json_names_file_and_line(tmp_path, tok_dir):
    (tmp_path / "d.jsonl").write_text('{"text": "fine"}\n\n{"text": "also fine"\n')
    with pytest.raises(ElectraError, match=r"d\.jsonl:3: not valid JSON"):
        run(tmp_path, tok_dir, [tmp_path / "d.jsonl"])


def test_jsonl_record_without_the_field_names_file_and_line(tmp_path, tok_dir):
    (tmp_path / "d.jsonl").write_text('{"text": "fine"}\n{"body": "wrong field"}\n')
    with pytest.raises(ElectraError, match=r"d\.jsonl:2: field 'text' missing \(use --text-field\)"):
        run(tmp_path, tok_dir, [tmp_path / "d.jsonl"])


def test_bad_jsonl_records_are_counted_when_skipping(tmp_path, tok_dir):
    (tmp_path / "d.jsonl").write_text('{"text": "fine"}\nnot json\n{"body": "x"}\n{"text": 3}\n[1]\n')
    summary = run(tmp_path, tok_dir, [tmp_path / "d.jsonl"], errors="skip")
    assert summary.documents == 1
    assert summary.skipped == {"JSON line not valid JSON": 1, "JSON record without a string 'text' field": 3}
    assert summary.notes["JSON line not valid JSON"] == [f"{tmp_path / 'd.jsonl'}:2"]


def test_missing_tokenizer_is_an_error(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    with pytest.raises(ElectraError, match="tokenizer directory not found"):
        prepare([tmp_path / "in.txt"], tmp_path / "no-tok", tmp_path / "out", progress=False)


def test_existing_output_from_another_vocabulary_is_refused(tmp_path, tok_dir):
    (tmp_path / "in.txt").write_text("hello world\n")
    run(tmp_path, tok_dir, [tmp_path / "in.txt"])
    other = tmp_path / "other-tok"
    train_tokenizer(["completely different words here"] * 3, other, vocab_size=100, show_progress=False)
    with pytest.raises(ElectraError, match="different tokenizer vocabulary"):
        run(tmp_path, other, [tmp_path / "in.txt"])
    run(tmp_path, tok_dir, [tmp_path / "in.txt"])  # same tokenizer: rebuilt in place
    run(tmp_path, other, [tmp_path / "in.txt"], overwrite=True)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["vocab_size"] == load_tokenizer(other).get_vocab_size() != 1200


def test_non_empty_output_folder_that_is_not_ours_is_refused(tmp_path, tok_dir):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    (tmp_path / "in.txt").write_text("hello\n")
    with pytest.raises(ElectraError, match="not a prepared data directory"):
        run(tmp_path, tok_dir, [tmp_path / "in.txt"], overwrite=True)
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_corpus_counts_documents_and_lines():
    corpus = Corpus([FIXTURES / "tiny-zh.txt"])
    items = list(corpus.lines())
    assert items.count(None) == corpus.stats.documents == 2
    assert len(items) - 2 == corpus.stats.lines


# ---- command line ------------------------------------------------------------------------------------------
def test_cli_prepare_prints_the_summary(tmp_path, tok_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--tokenizer", str(tok_dir), "--input", str(FIXTURES), "--out", str(tmp_path / "d"),
              "--max-seq-len", "64", "--quiet"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("documents", "sentences", "tokens", "examples / epoch", "MB/s", "skipped"):
        assert word in out


def test_cli_bad_utf8_exits_2_with_the_location(tmp_path, tok_dir, capsys):
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe oops\n")
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--tokenizer", str(tok_dir), "--input", str(tmp_path / "bad.txt"), "--out",
              str(tmp_path / "d"), "--quiet"])
    assert e.value.code == 2
    assert "bad.txt: byte 0: not valid UTF-8" in capsys.readouterr().err
