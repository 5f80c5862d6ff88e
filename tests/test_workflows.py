"""Structure of the GitHub Actions workflows and the cibuildwheel configuration (neither can run
here): validated against the upstream JSON schemas that PyPI packages ship (SchemaStore's
github-workflow schema inside check-jsonschema, cibuildwheel's own options schema), plus the
project's expectations (runners, Python versions, steps)."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LINUX_RUNNERS = {"ubuntu-24.04", "ubuntu-24.04-arm"}

# Both schema packages need Python >= 3.11 (see the "test" extra); on 3.10 only the project's own
# structural checks run, and the skip reason shows in the -ra summary.
needs_schema_packages = pytest.mark.skipif(sys.version_info < (3, 11), reason="schema packages need Python >= 3.11")


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job["steps"]


def _uses(job: dict[str, Any]) -> list[str]:
    return [s["uses"].split("@")[0] for s in _steps(job) if "uses" in s]


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in _steps(job))


@needs_schema_packages
@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.y*ml")))
def test_workflow_matches_github_schema(name: str) -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("github-workflows.json").read_text())
    jsonschema.Draft7Validator(schema).validate(_load(name))


def test_schema_check_catches_a_broken_workflow() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("schema packages need Python >= 3.11")
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("github-workflows.json").read_text())
    broken = _load("ci.yml")
    del broken["jobs"]["test"]["runs-on"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_ci_tests_every_python_on_both_architectures() -> None:
    wf = _load("ci.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    test = wf["jobs"]["test"]
    matrix = test["strategy"]["matrix"]
    assert set(matrix["os"]) == LINUX_RUNNERS
    assert matrix["python-version"] == PYTHONS
    assert test["runs-on"] == "${{ matrix.os }}"
    assert test["timeout-minutes"] <= 60
    assert _uses(test)[:2] == ["actions/checkout", "actions/setup-python"]
    runs = _runs(test)
    for needle in ("tools/setup-test-system.sh", "tools/native-tests.sh", 'pip install ".[test,bench]"', "pytest"):
        assert needle in runs
    # The same system setup as tools/test (softhsm2 and strace: without them the token and no-disk
    # tests would be skipped, which CI=true turns into failures), before any test runs.
    assert runs.index("tools/setup-test-system.sh") < runs.index("pytest")
    assert "tools/setup-test-system.sh" in (ROOT / "tools" / "test").read_text()
    assert "ruff check" in runs


def test_ci_runs_the_sanitizer_build() -> None:
    job = _load("ci.yml")["jobs"]["sanitize"]
    runs = _runs(job)
    assert runs.index("tools/setup-test-system.sh") < runs.index("tools/sanitize.sh")
    assert "tools/sanitize.sh" in (ROOT / "tools" / "test").read_text()


def test_ci_builds_wheels_for_every_platform() -> None:
    wheels = _load("ci.yml")["jobs"]["wheels"]
    pairs = {(e["os"], e["archs"]) for e in wheels["strategy"]["matrix"]["include"]}
    assert pairs == {("ubuntu-24.04", "x86_64"), ("ubuntu-24.04-arm", "aarch64"), ("macos-14", "arm64")}
    assert "pypa/cibuildwheel" in _uses(wheels) and "actions/upload-artifact" in _uses(wheels)


def test_bench_runs_on_both_architectures_and_reports() -> None:
    wf = _load("bench.yml")
    bench, report = wf["jobs"]["bench"], wf["jobs"]["report"]
    assert set(bench["strategy"]["matrix"]["os"]) == LINUX_RUNNERS
    assert "python -m edgeguard.bench" in _runs(bench) and "--output results/" in _runs(bench)
    assert "actions/upload-artifact" in _uses(bench)
    assert report["needs"] == "bench"
    assert "actions/download-artifact" in _uses(report)
    assert "edgeguard.bench report" in _runs(report) and "$GITHUB_STEP_SUMMARY" in _runs(report)


def _cibuildwheel() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]


@needs_schema_packages
def test_cibuildwheel_config_matches_its_schema() -> None:
    schema = json.loads(resources.files("cibuildwheel.resources").joinpath("cibuildwheel.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(_cibuildwheel())


def test_cibuildwheel_targets_and_tests() -> None:
    cfg = _cibuildwheel()
    assert cfg["linux"]["archs"] == ["x86_64", "aarch64"]
    assert cfg["macos"]["archs"] == ["arm64"]
    assert "openssl-devel" in cfg["linux"]["before-all"] and "openssl@3" in cfg["macos"]["before-all"]
    assert cfg["build"].split() == [f"cp{v.replace('.', '')}-*" for v in PYTHONS]
    assert "pytest" in cfg["test-command"] and "{project}/tests" in cfg["test-command"]
    assert set(cfg["test-extras"]) == {"test", "bench"}
