"""`electra import-hf` and `electra export` from the command line: success, and one-line errors with exit 2."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from electra.checkpoint import CONFIG_FILE, load_checkpoint, save_checkpoint
from electra.cli import main
from electra.config import ModelConfig
from electra.modeling import Electra
from hf_models import make_pair, random_batch, save_pair

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: these tiny batches are all per-op overhead, which extra threads on a shared,
    loaded machine multiply (12 ms per LayerNorm with 2 threads against 6 other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    disc, gen = make_pair("tiny", 300, share_embeddings=True)
    return (disc, gen, *save_pair(disc, gen, root))


def test_import_hf_then_export_round_trips_through_the_cli(hf_dirs, tmp_path, capsys):
    disc, gen, disc_dir, gen_dir = hf_dirs
    code, out, err = run(["import-hf", "--discriminator", disc_dir, "--generator", gen_dir,
                          "--out", tmp_path / "ours"], capsys)
    assert (code, err) == (0, "")
    assert str(tmp_path / "ours") in out
    ours = load_checkpoint(tmp_path / "ours").eval()
    ids, mask, types = random_batch(300)
    with torch.no_grad():
        torch.testing.assert_close(ours.discriminator(ids, mask, types),
                                   disc(input_ids=ids, attention_mask=mask, token_type_ids=types).logits,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.generator(ids, mask, types),
                                   gen(input_ids=ids, attention_mask=mask, token_type_ids=types).logits,
                                   atol=1e-5, rtol=0)

    code, out, err = run(["export", "--checkpoint", tmp_path / "ours", "--format", "hf",
                          "--out", tmp_path / "exported"], capsys)
    assert (code, err) == (0, "")
    assert "ElectraForPreTraining" in out and "ElectraForMaskedLM" in out
    for kind, original in (("discriminator", disc_dir), ("generator", gen_dir)):
        before = load_file(original / "model.safetensors")
        after = load_file(tmp_path / "exported" / kind / "model.safetensors")
        assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_export_without_generator_reports_only_the_discriminator(tmp_path, capsys):
    torch.manual_seed(0)
    save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=300)), tmp_path / "ours", has_generator=False)
    code, out, _ = run(["export", "--checkpoint", tmp_path / "ours", "--out", tmp_path / "exported"], capsys)
    assert code == 0
    assert "ElectraForPreTraining" in out and "ElectraForMaskedLM" not in out
    assert not (tmp_path / "exported" / "generator").exists()


# ---- bad input, for our checkpoints (`export --checkpoint`) and transformers directories (`import-hf`) ----
@pytest.fixture(scope="module")
def good_dirs(hf_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    save_checkpoint(Electra(ModelConfig.preset("tiny", vocab_size=300)), root / "ours")
    return {"ours": root / "ours", "hf": hf_dirs[2]}


def _bad(kind: str, case: str, good: Path, tmp: Path) -> tuple[Path, str]:
    """A broken copy of ``good`` and a piece of the message expected for it."""
    if case == "missing path":
        return tmp / "does-not-exist", "does-not-exist"
    if case == "not a checkpoint":
        (tmp / "notes").mkdir()
        (tmp / "notes" / "readme.txt").write_text("hello")
        return tmp / "notes", "config.json"
    bad = tmp / "bad"
    shutil.copytree(good, bad)
    cfg = bad / CONFIG_FILE
    if case == "missing config.json":
        cfg.unlink()
        return bad, "config.json"
    if case == "malformed config.json":
        cfg.write_text('{\n  "format": "electra-checkpoint",\n  "model": {,\n}\n')
        return bad, f"{cfg}:3:13: malformed JSON"
    if case == "shape mismatch":
        data = json.loads(cfg.read_text())
        (data["model"] if kind == "ours" else data)["intermediate_size"] = 128
        cfg.write_text(json.dumps(data))
        return bad, "has shape"
    raise AssertionError(case)


CASES = ["missing path", "not a checkpoint", "missing config.json", "malformed config.json", "shape mismatch"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", ["ours", "hf"])
def test_bad_input_exits_2_with_one_line_error(kind, case, good_dirs, tmp_path, capsys):
    path, expected = _bad(kind, case, good_dirs[kind], tmp_path)
    if kind == "ours":
        argv = ["export", "--checkpoint", path, "--out", tmp_path / "exported"]
    else:
        argv = ["import-hf", "--discriminator", path, "--out", tmp_path / "imported"]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("electra: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "exported").exists() and not (tmp_path / "imported").exists()


def test_bad_generator_directory_is_reported(good_dirs, tmp_path, capsys):
    code, _, err = run(["import-hf", "--discriminator", good_dirs["hf"], "--generator", tmp_path / "nope",
                        "--out", tmp_path / "imported"], capsys)
    assert code == 2 and err.startswith(f"electra: error: {tmp_path / 'nope'}") and err.count("\n") == 1


def test_subprocess_error_has_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-m", "electra", "import-hf", "--discriminator", tmp_path / "nope",
                           "--out", tmp_path / "out"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"electra: error: {tmp_path / 'nope'}: not a directory\n"
