"""Embedding sharing between generator and discriminator: es (ELECTRA), nes, and DeBERTa-v3's GDES."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from electra.checkpoint import _shared_keys, convert_sharing, load_checkpoint, resolve_checkpoint, save_checkpoint
from electra.cli import main as cli
from electra.config import ModelConfig, PretrainConfig
from electra.data.prepare import prepare
from electra.errors import ElectraError
from electra.interop.hf_models import export_hf
from electra.modeling import DeltaEmbedding, Electra
from electra.tokenization import train_tokenizer
from electra.training.pretrainer import load_init_weights, pretrain

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
VOCAB = 120


def model(sharing: str, seed: int = 0) -> Electra:
    torch.manual_seed(seed)
    return Electra(ModelConfig.preset("tiny", vocab_size=VOCAB, embedding_sharing=sharing)).eval()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return ids, mask


def load(m: Electra, tensors: dict[str, torch.Tensor]) -> Electra:
    """Load as a checkpoint does: the generator's aliases of shared tensors are not stored."""
    missing, unexpected = m.load_state_dict(tensors, strict=False)
    assert not unexpected and set(missing) <= _shared_keys(m)
    return m


def trained_a_little(m: Electra) -> Electra:
    """A few SGD steps on both losses, so that E_delta is no longer zero."""
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    ids, mask = batch()
    for _ in range(3):
        loss = m.discriminator(ids, mask).square().mean() + m.generator(ids, mask).logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def test_gdes_discriminator_loss_sends_no_gradient_into_the_generator_tables():
    m = model("gdes").train()
    ids, mask = batch()
    m.discriminator(ids, mask).square().mean().backward()
    gen = m.generator.encoder.embeddings
    disc = m.discriminator.encoder.embeddings
    assert gen.word_embeddings.weight.grad is None and gen.position_embeddings.weight.grad is None
    assert disc.word_embeddings.delta.grad.abs().sum() > 0 and disc.position_embeddings.delta.grad.abs().sum() > 0


def test_gdes_generator_loss_moves_the_generator_tables_and_not_the_delta():
    m = model("gdes").train()
    ids, mask = batch()
    m.generator(ids, mask).logsumexp(-1).mean().backward()
    assert m.generator.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert m.discriminator.encoder.embeddings.word_embeddings.delta.grad is None


def test_gdes_delta_starts_at_zero_so_the_discriminator_table_is_the_generators():
    m = model("gdes")
    disc, gen = m.discriminator.encoder.embeddings, m.generator.encoder.embeddings
    assert isinstance(disc.word_embeddings, DeltaEmbedding)
    assert torch.equal(disc.word_embeddings.weight, gen.word_embeddings.weight)
    assert torch.equal(disc.position_embeddings.weight, gen.position_embeddings.weight)
    assert disc.token_type_embeddings is not gen.token_type_embeddings  # its own, as DeBERTa's


def test_gdes_at_step_zero_computes_what_es_computes_on_the_same_weights():
    gdes = model("gdes")
    tensors, _ = convert_sharing(gdes.state_dict(), "gdes", ModelConfig.preset("tiny", vocab_size=VOCAB))
    es = model("es", seed=7)
    load(es, tensors)
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(gdes.discriminator(ids, mask), es.discriminator(ids, mask))


def test_gdes_checkpoint_keeps_the_delta_and_not_the_discriminator_tables(tmp_path):
    save_checkpoint(trained_a_little(model("gdes").train()), tmp_path / "ckpt")
    keys = set(load_file(str(tmp_path / "ckpt" / "model.safetensors")))
    assert "discriminator.encoder.embeddings.word_embeddings.delta" in keys
    assert "discriminator.encoder.embeddings.position_embeddings.delta" in keys
    assert "discriminator.encoder.embeddings.word_embeddings.weight" not in keys
    assert "generator.encoder.embeddings.word_embeddings.weight" in keys


def test_gdes_checkpoint_loads_merged_with_the_same_outputs(tmp_path):
    m = trained_a_little(model("gdes").train())
    save_checkpoint(m, tmp_path / "ckpt")
    merged = load_checkpoint(tmp_path / "ckpt").eval()
    kept = load_checkpoint(tmp_path / "ckpt", keep_gdes=True).eval()
    assert merged.config.embedding_sharing == "nes" and kept.config.embedding_sharing == "gdes"
    ids, mask = batch()
    with torch.no_grad():
        assert torch.allclose(merged.discriminator(ids, mask), m.discriminator(ids, mask), atol=1e-6)
        assert torch.equal(kept.discriminator(ids, mask), m.discriminator(ids, mask))


def test_hf_export_of_gdes_writes_the_generator_table_plus_the_delta(tmp_path):
    m = trained_a_little(model("gdes").train())
    delta = m.discriminator.encoder.embeddings.word_embeddings.delta.detach()
    assert delta.abs().sum() > 0
    save_checkpoint(m, tmp_path / "ckpt")
    export_hf(tmp_path / "ckpt", tmp_path / "hf")
    disc = load_file(str(tmp_path / "hf" / "discriminator" / "model.safetensors"))
    gen = load_file(str(tmp_path / "hf" / "generator" / "model.safetensors"))
    e_g = m.generator.encoder.embeddings.word_embeddings.weight.detach()
    assert torch.allclose(disc["electra.embeddings.word_embeddings.weight"], e_g + delta, atol=0, rtol=0)
    assert torch.equal(gen["electra.embeddings.word_embeddings.weight"], e_g)


@pytest.mark.parametrize("source,target", [("es", "gdes"), ("nes", "gdes"), ("gdes", "nes"), ("gdes", "es"),
                                           ("es", "nes"), ("nes", "es")])
def test_converting_sharing_keeps_the_discriminator_outputs(source, target):
    src = trained_a_little(model(source).train())
    tensors, _ = convert_sharing(src.state_dict(), source, ModelConfig.preset("tiny", vocab_size=VOCAB,
                                                                            embedding_sharing=target))
    dst = model(target, seed=3)
    load(dst, tensors)
    ids, mask = batch()
    with torch.no_grad():
        assert torch.allclose(dst.discriminator(ids, mask), src.discriminator(ids, mask), atol=1e-5)
        if target != "es":  # es has one table: the generator then reads the discriminator's
            assert torch.allclose(dst.generator(ids, mask), src.generator(ids, mask), atol=1e-5)


def test_nes_to_es_says_it_drops_the_generator_tables():
    src = model("nes")
    _, note = convert_sharing(src.state_dict(), "nes", ModelConfig.preset("tiny", vocab_size=VOCAB))
    assert "dropped" in note


def test_legacy_tie_embeddings_reads_as_es_or_nes():
    assert ModelConfig.preset("tiny", tie_embeddings=False).embedding_sharing == "nes"
    assert ModelConfig.from_dict({**ModelConfig.preset("tiny").to_dict(), "tie_embeddings": True},
                                 ).embedding_sharing == "es"


def test_tie_embeddings_contradicting_embedding_sharing_is_one_line_error():
    with pytest.raises(ElectraError, match="contradicts embedding_sharing"):
        ModelConfig.preset("tiny", tie_embeddings=True, embedding_sharing="gdes")


def test_unknown_embedding_sharing_is_refused():
    with pytest.raises(ElectraError, match="embedding_sharing"):
        ModelConfig.preset("tiny", embedding_sharing="shared")


# ---- through the pre-training loop --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    tok = tmp_path_factory.mktemp("tok")
    lines = [x for x in (FIXTURES / "tiny-en.txt").read_text().splitlines() if x.strip()]
    train_tokenizer(lines, tok, vocab_size=600, show_progress=False)
    out = tmp_path_factory.mktemp("data") / "en"
    prepare([FIXTURES / "tiny-en.txt"], tok, out, max_seq_len=64, seed=0, progress=False)
    return out


def config(data_dir: Path, out: Path, preset: str = "tiny", **kw) -> PretrainConfig:
    base = dict(data=str(data_dir), out=str(out), max_steps=6, batch_size=4, warmup_steps=2, log_every=1,
                save_every=3, precision="fp32", device="cpu")
    return PretrainConfig.for_preset(preset, **{**base, **kw})


def losses(run: Path) -> list[str]:
    return [line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]]


def test_gdes_run_resumes_exactly(data_dir, tmp_path):
    gdes = {"embedding_sharing": "gdes"}
    full = pretrain(config(data_dir, tmp_path / "full"), model_overrides=gdes, progress=False)
    part = pretrain(config(data_dir, tmp_path / "part", stop_step=3), model_overrides=gdes, progress=False)
    pretrain(config(data_dir, part), model_overrides=gdes, resume=True, progress=False)
    assert losses(part) == losses(full)
    record = json.loads((full / "run.json").read_text())
    assert record["model"]["embedding_sharing"] == "gdes"


def test_init_from_converts_an_es_checkpoint_to_gdes(data_dir, tmp_path):
    es = pretrain(config(data_dir, tmp_path / "es", max_steps=3), progress=False)
    before = load_checkpoint(resolve_checkpoint(es)).eval()
    after = Electra(before.config.replace(embedding_sharing="gdes")).eval()
    summary = load_init_weights(after, str(es), data_dir / "tokenizer")
    assert "embedding sharing es -> gdes" in summary
    assert not after.discriminator.encoder.embeddings.word_embeddings.delta.any()
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(after.discriminator(ids, mask), before.discriminator(ids, mask))
        assert torch.equal(after.generator(ids, mask), before.generator(ids, mask))


def test_continued_pretraining_with_gdes_from_an_es_run_trains(data_dir, tmp_path):
    es = pretrain(config(data_dir, tmp_path / "es", max_steps=2, save_every=2), progress=False)
    run = pretrain(config(data_dir, tmp_path / "gdes", preset="continue", init_from=str(es), max_steps=2,
                          save_every=2), model_overrides={"embedding_sharing": "gdes"}, progress=False)
    kept = load_checkpoint(resolve_checkpoint(run), keep_gdes=True)
    assert kept.config.embedding_sharing == "gdes"
    assert kept.discriminator.encoder.embeddings.word_embeddings.delta.abs().sum() > 0


@pytest.mark.parametrize("kw,match", [({"objective": "mlm"}, "trains no discriminator"),
                                      ({"generator_training": "two-stage"}, "freezes the generator")])
def test_gdes_with_an_objective_that_cannot_use_it_is_one_line_error(data_dir, tmp_path, kw, match):
    overrides = {"embedding_sharing": "gdes", **({"generator_size": 1.0} if "generator_training" in kw else {})}
    with pytest.raises(ElectraError, match=match):
        pretrain(config(data_dir, tmp_path / "run", **kw), model_overrides=overrides, progress=False)


def cli_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--data", str(data_dir), "--out", str(out), "--preset", "tiny", "--batch-size", "4",
            "--warmup-steps", "2", "--log-every", "1", "--precision", "fp32", "--device", "cpu", "--no-progress",
            "--max-steps", "2", "--save-every", "2", *extra]


def test_cli_embedding_sharing_gdes_trains_and_the_detect_command_reads_it(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(cli_args(data_dir, tmp_path / "run", "--embedding-sharing", "gdes"))
    assert e.value.code == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["embedding_sharing"] == "gdes"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli(["detect", "--model", str(tmp_path / "run"), "--json", "the city is on the river"])
    assert e.value.code == 0 and len(json.loads(capsys.readouterr().out)["tokens"]) > 0


def test_cli_gdes_with_framework_tf_is_one_line_error(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(cli_args(data_dir, tmp_path / "run", "--embedding-sharing", "gdes", "--framework", "tf"))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "gdes: PyTorch only" in err and len(err.splitlines()) == 1


def test_onnx_export_of_a_gdes_checkpoint_reads_the_merged_tables(tmp_path):
    pytest.importorskip("onnxruntime")
    from electra.export.onnx import export_onnx
    from electra.inference import OnnxRunner

    m = trained_a_little(model("gdes").train())
    save_checkpoint(m, tmp_path / "ckpt")
    folder = export_onnx(tmp_path / "ckpt", tmp_path / "onnx")[0]
    ids, mask = batch()
    got = OnnxRunner(folder, threads=1)({"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                          "token_type_ids": torch.zeros_like(ids).numpy()})
    with torch.no_grad():
        want = m.discriminator(ids, mask)
    name = next(iter(got))
    assert torch.allclose(torch.as_tensor(got[name])[mask.bool()], want[mask.bool()], atol=1e-4)


@pytest.mark.parametrize("target", ["gdes", "nes"])
def test_converting_a_narrow_deberta_generator_from_es_copies_the_shared_tables_only(target):
    v3 = dict(architecture="deberta-v2", relative_attention=True, position_buckets=8, max_relative_positions=16,
              position_biased_input=False, pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", share_att_key=True,
              type_vocab_size=0)
    torch.manual_seed(0)
    src = Electra(ModelConfig.preset("tiny", vocab_size=VOCAB, **v3)).eval()  # generator 32 wide, tables shared
    stored = {k: v for k, v in src.state_dict().items() if k not in _shared_keys(src)}
    dst = Electra(src.config.replace(embedding_sharing=target)).eval()
    tensors, _ = convert_sharing(stored, "es", dst.config)
    load(dst, tensors)
    ids, mask = batch()
    with torch.no_grad():
        assert torch.allclose(dst.discriminator(ids, mask), src.discriminator(ids, mask), atol=1e-6)
        assert torch.allclose(dst.generator(ids, mask), src.generator(ids, mask), atol=1e-6)
