"""The tree is the architecture: layers and cycles (import-linter), module size, the generated map."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from drkit_dev import archdoc

LINT = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 400


def lint_imports(lib: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(lib)}, timeout=300)


def test_the_import_contracts_hold() -> None:
    proc = lint_imports(ROOT / "lib")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "5 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, broken", [
    # a lower layer reaching up (and, with it, a cycle)
    ("core/log.py", "from drkit.cli import common", ("Layers", "No import cycles")),
    # one function calling another instead of the domain they share
    ("functions/health_probe.py", "from drkit.functions import dns_failover", ("Functions do not call each other",)),
    # two domains coupled outside the declared seams
    ("postgres/restore.py", "from drkit.failover import plans", ("Layers",)),
    # pure policy doing I/O
    ("policy/retention.py", "import boto3", ("Pure policy",)),
    # the shipped library importing the development kit
    ("storage/store.py", "from drkit_dev import keys", ("development kit",)),
])
def test_each_contract_catches_its_violation(tmp_path: Path, module: str, line: str, broken: tuple[str, ...]) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(ROOT / "lib", lib, ignore=shutil.ignore_patterns("__pycache__", "build"))
    target = lib / "drkit" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    proc = lint_imports(lib)
    assert proc.returncode != 0, proc.stdout[-2000:]
    for name in broken:
        assert any(name in row and "BROKEN" in row for row in proc.stdout.splitlines()), proc.stdout[-3000:]


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "lib" / "drkit").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by job: {long}"


def test_every_module_opens_with_one_sentence_saying_its_job() -> None:
    assert not archdoc.missing_docstrings()
    loose = [p for p in (ROOT / "lib" / "drkit").rglob("*.py") if "__pycache__" not in p.parts
             and not archdoc.summary(p).endswith(".")]
    assert not loose, [str(p) for p in loose]


def test_every_package_sits_in_a_layer() -> None:
    assert not archdoc.unplaced(), "add it to the layers contract in pyproject.toml"


def test_the_architecture_doc_maps_every_module() -> None:
    doc = archdoc.DOC.read_text()
    assert doc == archdoc.render(doc), "docs/architecture.md is stale: run python -m drkit_dev.archdoc"
    for package in [p for layer in archdoc.layers() for p in layer]:
        for path in archdoc.modules(package):
            assert f"`{path.stem}`" in doc


def test_a_module_missing_from_the_doc_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "drkit"
    shutil.copytree(archdoc.LIB, lib, ignore=shutil.ignore_patterns("__pycache__"))
    (lib / "storage" / "newcomer.py").write_text('"""A module nobody mapped yet."""\n')
    monkeypatch.setattr(archdoc, "LIB", lib)
    doc = archdoc.DOC.read_text()
    assert archdoc.render(doc) != doc
    assert "`newcomer` | A module nobody mapped yet." in archdoc.render(doc)


def test_the_vendored_tools_are_looked_for_beside_the_drkit_package() -> None:
    """A built function is <root>/{drkit,pgbin}: moving binaries.py deeper must not move where it looks."""
    import drkit
    from drkit.postgres import binaries

    assert binaries.VENDORED_BIN == Path(drkit.__file__).resolve().parents[1] / "pgbin" / "bin"
