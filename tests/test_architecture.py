"""The package's import graph, checked by import-linter (``lint-imports``; the contracts are in
pyproject.toml): every import points down the layers, no two sibling modules import each other
in a cycle, only the command line imports the command line, and the record never depends on
the trainer.

Layers, low to high (a module may import its own layer and the ones below): the foundation
(errors, io, numbers, config, datadirs, imagefolder, identity, effects, history, runtime,
distributed, gpu_lock, progress, train_result: no knowledge of models, runs or reports) <
components and the reading side (data/, model, cifar_net, lsuv, diagnostics, parallel/,
telemetry/, metrics, checkpoint, runrecord, collect, claims, study) < one run (record, train,
launch) < features built on runs (figure1/, calibration) < views (reports/, versus/, plan/) < entry points
(cli and every package's cli, reports/__main__: they may import anything, nothing imports
them). ``exhaustive = true``: a new top-level module must be given a layer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the repository's contracts, on the package importable from ``cwd``."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "lint-imports"),
            "--config",
            str(REPO / "pyproject.toml"),
            "--no-cache",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(cwd)},
    )


def test_the_package_keeps_its_import_contracts() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("figure1/analysis.py", "from ..reports import tables", "points down the layers"),
        ("study.py", "def f():\n    from .reports import claims", "points down the layers"),
        ("reports/tables.py", "from .cli import main", "Only the command line"),
        ("record.py", "from .train import Trainer", "not from the trainer"),
        ("config.py", "from . import newmodule", "points down the layers"),
    ],
)
def test_the_contracts_catch_what_this_package_used_to_do(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """A copy of the package with one bad import of a kind it once had breaks a contract."""
    copy = tmp_path / "alexnet_bench"
    shutil.copytree(REPO / "alexnet_bench", copy, ignore=shutil.ignore_patterns("__pycache__"))
    if "newmodule" in line:
        (copy / "newmodule.py").write_text("")  # in no layer: the contract is exhaustive
    with open(copy / module, "a") as fh:
        fh.write(f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, broken[-3000:]
