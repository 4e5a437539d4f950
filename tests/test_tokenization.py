"""WordPiece tokenizers: trained and from-vocab directories load in transformers and encode identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from electra.cli import main
from electra.errors import ElectraError
from electra.tokenization import (
    SPECIAL_TOKENS,
    load_tokenizer,
    new_tokenizer,
    tokenizer_from_vocab,
    tokenizer_hash,
    train_tokenizer,
)

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def python_bert_tokenizer(vocab: Path, lowercase: bool = True):
    """transformers' pure-Python BERT tokenizer (an independent reference; the legacy class in v5)."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:  # transformers 4: BertTokenizer is the Python one
        from transformers import BertTokenizer as Slow
    return Slow(str(vocab), do_lower_case=lowercase)


def python_basic_tokenizer():
    try:
        from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer
    except ImportError:
        from transformers.models.bert.tokenization_bert import BasicTokenizer
    return BasicTokenizer(do_lower_case=True, tokenize_chinese_chars=True)


def lines_of(path: Path, n: int | None = None) -> list[str]:
    lines = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return lines[:n]


@pytest.fixture(scope="module")
def en_lines() -> list[str]:
    sample = DATA / "corpus" / "en-sample.txt"
    if not sample.is_file():
        pytest.skip("../shared/data not present")
    return lines_of(sample, 3000)


@pytest.fixture(scope="module")
def en_tok(en_lines, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("en-tok")
    train_tokenizer(en_lines, out, vocab_size=6000, show_progress=False)
    return out


@pytest.fixture(scope="module")
def zh_lines() -> list[str]:
    zh = DATA / "corpus" / "zh"
    if not zh.is_dir():
        pytest.skip("../shared/data not present")
    return lines_of(zh / "zhwiki_00.txt", 400) + lines_of(zh / "xiyouji.txt", 300)


@pytest.fixture(scope="module")
def small_tok(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small-tok")
    train_tokenizer(lines_of(FIXTURES / "tiny-en.txt") + lines_of(FIXTURES / "tiny-zh.txt"), out,
                    vocab_size=1500, show_progress=False)
    return out


def test_trained_directory_has_the_four_files_and_special_ids_0_to_4(small_tok):
    assert {p.name for p in small_tok.iterdir()} == {"tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                                     "special_tokens_map.json"}
    vocab = (small_tok / "vocab.txt").read_text().splitlines()
    assert tuple(vocab[:5]) == SPECIAL_TOKENS
    config = json.loads((small_tok / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "ElectraTokenizer" and config["do_lower_case"] is True


def test_vocab_txt_with_bert_tokenizer_fast_gives_the_same_ids_as_tokenizer_json(en_tok, en_lines):
    ours = load_tokenizer(en_tok / "tokenizer.json")
    ref = transformers.BertTokenizerFast(str(en_tok / "vocab.txt"), do_lower_case=True)
    assert len(en_lines) == 3000
    expected = ref(en_lines, add_special_tokens=True)["input_ids"]
    got = [e.ids for e in ours.encode_batch(en_lines)]
    assert got == expected
    pair = ours.encode("first part", "second part")
    ref_pair = ref("first part", "second part")
    assert pair.ids == ref_pair["input_ids"] and pair.type_ids == ref_pair["token_type_ids"]


def test_python_bert_tokenizer_agrees_on_real_text(en_tok, en_lines):
    ours = load_tokenizer(en_tok)
    slow = python_bert_tokenizer(en_tok / "vocab.txt")
    lines = en_lines[:300]
    assert [e.ids for e in ours.encode_batch(lines)] == [slow.encode(x) for x in lines]


def test_auto_tokenizer_loads_the_directory(small_tok):
    auto = transformers.AutoTokenizer.from_pretrained(str(small_tok))
    assert isinstance(auto, transformers.ElectraTokenizerFast)
    text = "Héllo Wörld, this is ELECTRA. 数学是利用符号"
    assert auto(text)["input_ids"] == load_tokenizer(small_tok).encode(text).ids
    assert auto.pad_token_id == 0 and auto.mask_token == "[MASK]"


def test_lowercase_strips_accents_and_cased_keeps_them(tmp_path):
    lines = lines_of(FIXTURES / "tiny-en.txt") + ["Héllo Wörld Café"] * 5
    lower = train_tokenizer(lines, tmp_path / "lower", vocab_size=900, show_progress=False)
    cased = train_tokenizer(lines, tmp_path / "cased", vocab_size=900, lowercase=False, show_progress=False)
    assert lower.encode("Héllo", add_special_tokens=False).tokens == ["hello"]
    assert "".join(cased.encode("Héllo", add_special_tokens=False).tokens).replace("##", "") == "Héllo"
    assert json.loads((tmp_path / "cased" / "tokenizer_config.json").read_text())["do_lower_case"] is False
    ref = transformers.BertTokenizerFast(str(tmp_path / "cased" / "vocab.txt"), do_lower_case=False)
    assert ref("Héllo Wörld")["input_ids"] == load_tokenizer(tmp_path / "cased").encode("Héllo Wörld").ids


def test_pre_tokenization_matches_bert_basic_tokenizer_on_chinese_and_english(zh_lines, en_lines):
    tok = new_tokenizer(lowercase=True)
    basic = python_basic_tokenizer()
    for line in zh_lines + en_lines[:300]:
        words = [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(line))]
        assert words == basic.tokenize(line), line[:80]


def test_chinese_text_becomes_single_characters_like_bert_chinese(zh_lines, tmp_path):
    tok = train_tokenizer(zh_lines, tmp_path / "zh", vocab_size=5000, show_progress=False)
    text = "数学是利用符号语言研究数量结构变化以及空间等概念的一门学科"
    tokens = tok.encode(text, add_special_tokens=False).tokens
    assert tokens == [c if tok.token_to_id(c) is not None else "[UNK]" for c in text]
    assert tokens.count("[UNK]") == 0
    ref = python_bert_tokenizer(tmp_path / "zh" / "vocab.txt")
    for line in zh_lines[:200]:
        assert tok.encode(line).ids == ref.encode(line), line[:40]


def test_from_vocab_keeps_bert_ids(tmp_path):
    # BERT's layout: [PAD]=0, [unusedN], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, then tokens
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += ["the", "cat", "sat", "on", "mat", "##s", ".", "a"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = tokenizer_from_vocab(tmp_path / "vocab.txt", tmp_path / "out")
    ref = transformers.BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=True)
    text = "The cats sat on a mat. dog"
    assert tok.encode(text).ids == ref(text)["input_ids"]
    assert (tmp_path / "out" / "vocab.txt").read_text().splitlines() == vocab


def test_vocab_without_special_tokens_is_an_error(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\n")
    with pytest.raises(ElectraError, match=r"missing special token\(s\) \[CLS\] \[SEP\] \[MASK\]"):
        tokenizer_from_vocab(tmp_path / "vocab.txt")


def test_missing_tokenizer_directory_is_an_error(tmp_path):
    with pytest.raises(ElectraError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(ElectraError, match="no tokenizer.json or vocab.txt"):
        load_tokenizer(tmp_path)


def test_hash_follows_vocabulary_and_case(small_tok, tmp_path):
    tok = load_tokenizer(small_tok)
    assert tokenizer_hash(tok) == tokenizer_hash(load_tokenizer(small_tok / "vocab.txt"))
    cased = tokenizer_from_vocab(small_tok / "vocab.txt", lowercase=False)
    assert tokenizer_hash(cased) != tokenizer_hash(tok)


def test_cli_tokenizer_train_and_from_vocab(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["tokenizer", "train", "--input", str(FIXTURES), "--out", str(tmp_path / "t"),
              "--vocab-size", "700", "--cased"])
    assert e.value.code == 0
    assert "700 tokens" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["tokenizer", "from-vocab", "--vocab", str(tmp_path / "t" / "vocab.txt"),
              "--out", str(tmp_path / "v"), "--cased"])
    assert e.value.code == 0
    assert tokenizer_hash(load_tokenizer(tmp_path / "v")) == tokenizer_hash(load_tokenizer(tmp_path / "t"))


def test_cli_train_on_missing_input_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["tokenizer", "train", "--input", str(tmp_path / "none"), "--out", str(tmp_path / "t")])
    assert e.value.code == 2
    assert "input not found" in capsys.readouterr().err


def test_a_tokenizer_json_without_registered_special_tokens_still_reads_mask(tmp_path):
    from tokenizers import Tokenizer as RawTokenizer

    from electra.tokenization import load_tokenizer, new_tokenizer

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "[", "]", "mask"])}
    spec = json.loads(new_tokenizer(vocab).to_str())
    spec["added_tokens"] = []  # as tokenizer.json files written from a vocab.txt by older versions
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    assert RawTokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("the [MASK]").tokens != [
        "[CLS]", "the", "[MASK]", "[SEP]"]
    assert load_tokenizer(tmp_path).encode("the [MASK]").tokens == ["[CLS]", "the", "[MASK]", "[SEP]"]


def test_cli_tokenizer_train_defaults_to_uncased_wordpiece_with_bert_ids(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["tokenizer", "train", "--input", str(FIXTURES), "--out", str(tmp_path / "t"), "--vocab-size", "700"])
    assert e.value.code == 0
    assert "wordpiece uncased, 700 tokens" in capsys.readouterr().out
    assert tuple((tmp_path / "t" / "vocab.txt").read_text().splitlines()[:5]) == SPECIAL_TOKENS
    config = json.loads((tmp_path / "t" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "ElectraTokenizer" and config["do_lower_case"] is True
    assert load_tokenizer(tmp_path / "t").encode("Héllo").ids == load_tokenizer(tmp_path / "t").encode("hello").ids
