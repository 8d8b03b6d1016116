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
    """.env.example shows every variable project.yml substitutes (optional ones commented out;
    scripts/deploy sends those as `unset`: see tests/unit/test_env_contract.py)."""
    code = "\n".join(ln.split("#")[0] for ln in (ROOT / "project.yml").read_text().splitlines())
    used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", code))
    documented = set(re.findall(r"^#? ?([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = used - documented
    assert not missing, f"project.yml uses variables .env.example does not show: {sorted(missing)}"


def test_handlers_are_thin() -> None:
    for main in (ROOT / "packages" / "dr").glob("*/__main__.py"):
        code = [ln for ln in main.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith(("#", '"""'))]
        assert len(code) <= 15, f"{main}: keep logic in lib/drkit"


def test_the_do_api_spec_copy_matches_shared() -> None:
    """The fake DO API's spec travels with the project; where shared/ lies beside it (CI), they agree."""
    import hashlib

    import pytest

    ours = ROOT / "lib" / "drkit_dev" / "data" / "do-openapi" / "digitalocean-public.v2.yaml"
    assert ours.is_file() and (ours.parent / "README.md").is_file()
    shared = ROOT.parent / "shared" / "do-openapi" / "digitalocean-public.v2.yaml"
    if not shared.is_file():
        pytest.skip("../shared/do-openapi is not beside this checkout (CI has it): the copy is not compared")
    assert hashlib.sha256(ours.read_bytes()).digest() == hashlib.sha256(shared.read_bytes()).digest(), \
        "shared/ has a newer DigitalOcean spec: copy it to lib/drkit_dev/data/do-openapi/"
