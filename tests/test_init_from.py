"""pretrain --init-from: continued RTD from an existing checkpoint (ours or an imported BERT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from electra.checkpoint import load_checkpoint, resolve_checkpoint
from electra.cli import main as cli
from electra.config import PretrainConfig
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.modeling import Electra
from electra.tokenization import load_tokenizer, train_tokenizer, vocab_tokens
from electra.training.pretrainer import load_init_weights, pretrain, resolve_model_config

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"


def make_data(root: Path, vocab_size: int = 600, tokenizer: Path | None = None) -> Path:
    if tokenizer is None:
        tokenizer = root / "tok"
        lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
        train_tokenizer(lines, tokenizer, vocab_size=vocab_size, show_progress=False)
    prepare([FIXTURES / "tiny-en.txt"], tokenizer, root / "data", max_seq_len=64, seed=0, progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> tuple[Path, Path]:
    """Prepared data and a 6-step tiny run on it (the checkpoint to start from)."""
    root = tmp_path_factory.mktemp("src")
    data = make_data(root)
    run = pretrain(config(data, root / "run", max_steps=6), progress=False)
    return data, run


def config(data: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=4, batch_size=4, warmup_steps=2, log_every=1, save_every=2,
                precision="fp32", device="cpu")
    return PretrainConfig.for_preset(kw.pop("preset", "tiny"), **{**base, **kw})


def test_init_from_copies_every_weight_of_the_checkpoint(source_run):
    data, run = source_run
    ckpt = resolve_checkpoint(run)
    source = load_checkpoint(ckpt)
    model = Electra(source.config)
    load_init_weights(model, str(run), Path(data) / "tokenizer")
    for (name, a), (_, b) in zip(model.state_dict().items(), source.state_dict().items()):
        assert torch.equal(a, b), name


def test_init_from_starts_optimizer_step_and_schedule_fresh(source_run, tmp_path):
    data, run = source_run
    out = pretrain(config(data, tmp_path / "cont", preset="continue", init_from=str(run), lr=1e-4, max_steps=2),
                   progress=False)
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step-00000002"]  # counted from 0, not from the source run's step 6
    with open(out / "metrics.csv") as f:
        rows = f.read().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]
    state = load_file(str(out / "checkpoints" / "step-00000002" / "optimizer.safetensors"))
    steps = {float(v) for k, v in state.items() if k.endswith("/step")}
    assert steps == {2.0}
    record = json.loads((out / "run.json").read_text())
    assert record["model"] == load_checkpoint(resolve_checkpoint(run)).config.to_dict()
    assert record["pretrain"]["lr"] == 1e-4 and record["pretrain"]["bias_correction"] is True


def test_init_from_refuses_data_prepared_with_another_vocabulary(source_run, tmp_path):
    _, run = source_run
    other = make_data(tmp_path, vocab_size=400)
    with pytest.raises(ElectraError, match="vocabulary.*prepare the data with the checkpoint's tokenizer"):
        pretrain(config(other, tmp_path / "x", init_from=str(run)), progress=False)


def test_init_from_refuses_another_tokenizer_of_the_same_size(source_run, tmp_path):
    data, run = source_run
    tok = load_tokenizer(Path(data) / "tokenizer")
    tokens = vocab_tokens(tok)
    tokens[10], tokens[11] = tokens[11], tokens[10]  # same size, two ids swapped
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("".join(t + "\n" for t in tokens))
    other = make_data(tmp_path, tokenizer=tmp_path / "tok")
    with pytest.raises(ElectraError, match="tokenizer .*differs"):
        pretrain(config(other, tmp_path / "x", init_from=str(run)), progress=False)


def test_init_from_refuses_shape_overrides(source_run):
    data, run = source_run
    with pytest.raises(ElectraError, match="shape from the checkpoint"):
        resolve_model_config(config(data, "x", init_from=str(run)), 600, overrides={"generator_size": 0.5})


def test_continue_preset_needs_init_from(source_run):
    data, _ = source_run
    with pytest.raises(ElectraError, match="recipe for --init-from"):
        resolve_model_config(config(data, "x", preset="continue"), 600)


def import_tiny_bert(tmp_path: Path, generator_init: str = "new") -> Path:
    """A random 2 x 32 transformers BertModel with a tokenizer of the fixture corpus, imported (a new generator
    unless ``generator_init`` says otherwise)."""
    transformers = pytest.importorskip("transformers")
    from electra.interop.hf_bert import import_bert
    from hf_models import randomize

    tok_dir = tmp_path / "tok"
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    tok = train_tokenizer(lines, tok_dir, vocab_size=500, show_progress=False)
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64))
    randomize(bert, 0)
    bert.save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "vocab.txt").write_text((tok_dir / "vocab.txt").read_text())
    return import_bert(tmp_path / "bert", tmp_path / "ckpt", generator_init=generator_init)[0]


def test_init_from_an_imported_bert_continues_rtd(tmp_path, capsys):
    ckpt = import_tiny_bert(tmp_path)
    data = make_data(tmp_path, tokenizer=ckpt / "tokenizer")
    with pytest.raises(SystemExit) as e:
        cli(["pretrain", "--data", str(data), "--out", str(tmp_path / "run"), "--init-from", str(ckpt),
             "--max-steps", "3", "--batch-size", "4", "--precision", "fp32", "--device", "cpu", "--no-progress",
             "--log-every", "1"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "init-from:" in out and "generator from the checkpoint" in out and "vocabulary checked" in out
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["pretrain"]["preset"] == "continue" and record["model"]["hidden_size"] == 32
    assert (tmp_path / "run" / "detection.json").is_file()


def test_a_resumed_init_from_run_continues_exactly(source_run, tmp_path, capsys):
    data, run = source_run
    straight = pretrain(config(data, tmp_path / "straight", init_from=str(run)), progress=False)
    cut = pretrain(config(data, tmp_path / "cut", init_from=str(run), max_minutes=1e-6), progress=False)
    capsys.readouterr()
    pretrain(config(data, tmp_path / "cut", init_from=str(run)), resume=True, progress=False)
    assert "init-from:" not in capsys.readouterr().out  # the run's own checkpoint, not the source's weights
    a, b = (load_checkpoint(resolve_checkpoint(r)).state_dict() for r in (straight, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_freeze_body_steps_holds_the_discriminator_body_while_the_new_parts_learn(tmp_path):
    ckpt = import_tiny_bert(tmp_path)
    data = make_data(tmp_path, tokenizer=ckpt / "tokenizer")
    out = pretrain(config(data, tmp_path / "frozen", preset="continue", init_from=str(ckpt), max_steps=6,
                          stop_step=3, freeze_body_steps=3), progress=False)
    before, now = load_checkpoint(ckpt).state_dict(), load_checkpoint(resolve_checkpoint(out)).state_dict()
    body = [k for k in now if k.startswith("discriminator.encoder.")]
    new_parts = [k for k in now if k.startswith(("discriminator.head.", "generator.encoder.layers."))]
    assert body and new_parts
    assert all(torch.equal(before[k], now[k]) for k in body)  # embeddings (shared with the generator) included
    assert all(not torch.equal(before[k], now[k]) for k in new_parts if k.endswith(".weight"))


def test_nothing_is_frozen_when_the_checkpoint_has_no_untrained_parts(source_run, tmp_path):
    data, run = source_run
    out = pretrain(config(data, tmp_path / "own", preset="continue", init_from=str(run), max_steps=2,
                          freeze_body_steps=200), progress=False)
    before = load_checkpoint(resolve_checkpoint(run)).state_dict()
    now = load_checkpoint(resolve_checkpoint(out)).state_dict()
    assert not torch.equal(before["discriminator.encoder.layers.0.ffn_in.weight"],
                           now["discriminator.encoder.layers.0.ffn_in.weight"])


def test_freeze_body_lr_warms_up_after_the_frozen_steps():
    from electra.training.pretrainer import body_lr_factor

    assert [body_lr_factor(s, 3, 4) for s in range(9)] == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert body_lr_factor(0, 0, 4) == 0.25 and body_lr_factor(5, 0, 0) == 1.0


def test_new_parts_of_an_imported_bert_are_its_detection_head_and_new_generator(source_run, tmp_path):
    from electra.training.pretrainer import new_parameter_ids

    ckpt = import_tiny_bert(tmp_path)
    model = load_checkpoint(ckpt)
    new = new_parameter_ids(model, str(ckpt))
    names = {n for n, p in model.named_parameters() if id(p) in new}
    assert names == {n for n, _ in model.named_parameters() if n.startswith(("discriminator.head.", "generator."))}
    assert not any("embeddings" in n for n in names)  # shared with the pre-trained body
    assert new_parameter_ids(load_checkpoint(resolve_checkpoint(source_run[1])), str(source_run[1])) == set()


def test_new_parts_of_a_truncated_import_are_the_detection_head_and_the_generator_head(tmp_path):
    from electra.training.pretrainer import new_parameter_ids

    ckpt = import_tiny_bert(tmp_path, "truncate")  # a BertModel: no MLM head to copy
    model = load_checkpoint(ckpt)
    names = {n for n, p in model.named_parameters() if id(p) in new_parameter_ids(model, str(ckpt))}
    assert names == {n for n, _ in model.named_parameters()
                     if n.startswith(("discriminator.head.", "generator.head."))}


def test_position_init_with_init_from_is_a_one_line_error():
    with pytest.raises(ElectraError, match="position_init = 'sinusoidal': not with init_from"):
        PretrainConfig.for_preset("continue", data="d", out="o", init_from="ckpt", position_init="sinusoidal")


def test_continue_preset_trains_everything_at_one_lr_from_the_first_step():
    cfg = PretrainConfig.for_preset("continue", data="d", out="o")
    assert cfg.freeze_body_steps == 0 and cfg.new_parts_lr == 0 and cfg.lr == 1e-4


def test_new_parts_lr_trains_the_new_parts_at_their_own_lr(tmp_path, capsys):
    ckpt = import_tiny_bert(tmp_path)
    data = make_data(tmp_path, tokenizer=ckpt / "tokenizer")
    pretrain(config(data, tmp_path / "run", preset="continue", init_from=str(ckpt), max_steps=2, new_parts_lr=1e-3),
             progress=False)
    assert "untrained parts of" in capsys.readouterr().out
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000002" / "optimizer.json").read_text())
    assert sorted({g["base_lr"] for g in state["param_groups"]}) == [1e-4, 1e-3]
