"""project.yml follows the deployer's rules (see shared reference do-functions.md §1)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_KEYS = {"name", "runtime", "main", "binary", "web", "webSecure", "parameters", "environment",
                 "annotations", "limits", "remoteBuild", "localBuild", "triggers"}


def test_project_yml_is_deployable() -> None:
    text = (ROOT / "project.yml").read_text()
    assert "\t" not in text, "the deployer rejects tabs"
    project = yaml.safe_load(text)
    assert set(project) <= {"packages", "targetNamespace", "parameters", "environment"}
    assert all(isinstance(v, str) for v in project.get("environment", {}).values())
    (package,) = project["packages"]
    assert package["name"] == "dr"
    names = set()
    for fn in package["functions"]:
        names.add(fn["name"])
        assert set(fn) <= FUNCTION_KEYS, set(fn) - FUNCTION_KEYS
        assert fn["runtime"] == "python:3.11"
        assert "web" in fn, f"{fn['name']}: web defaults to true (a public URL); say it"
        assert set(fn["limits"]) <= {"timeout", "memory", "logs"}
        assert fn["limits"]["timeout"] <= 900_000 and 128 <= fn["limits"]["memory"] <= 1024
        assert all(isinstance(v, str) for v in fn.get("environment", {}).values())
        for trigger in fn.get("triggers", []):
            assert fn["web"] is False
            cron = trigger["sourceDetails"]["cron"]
            assert len(cron.split()) == 5
            from croniter import croniter

            assert croniter.is_valid(cron)
        folder = ROOT / "packages" / "dr" / fn["name"]
        assert (folder / "__main__.py").exists() and (folder / ".include").exists()
        include = (folder / ".include").read_text().split()
        assert "virtualenv" in include and "." not in include
    on_disk = {p.parent.name for p in (ROOT / "packages" / "dr").glob("*/__main__.py")}
    assert names == on_disk


def test_every_substituted_variable_is_documented() -> None:
    code = "\n".join(ln.split("#")[0] for ln in (ROOT / "project.yml").read_text().splitlines())
    used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", code))
    documented = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^([A-Z0-9_]+)=(\S*)", line)
        if m:
            documented[m.group(1)] = m.group(2)
    missing = used - set(documented)
    assert not missing, f"project.yml uses undocumented variables: {missing}"
    empty = [v for v in used if not documented[v]]
    assert not empty, f"empty values would be unresolved substitutions at deploy time: {empty}"


def test_handlers_are_thin() -> None:
    for main in (ROOT / "packages" / "dr").glob("*/__main__.py"):
        code = [ln for ln in main.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith(("#", '"""'))]
        assert len(code) <= 15, f"{main}: keep logic in lib/drkit"
