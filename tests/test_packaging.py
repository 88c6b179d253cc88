"""The package lists agree: pyproject.toml, environment.yml and the exact pins in constraints.txt."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda's name → PyPI's name


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return {Requirement(s).name.lower(): Requirement(s) for s in specs}


def conda_requirements() -> dict[str, SpecifierSet]:
    """environment.yml's packages (PyPI names) and ranges, leaving out python, pip and `pip:`."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for spec in env["dependencies"]:
        if not isinstance(spec, str) or spec == "pip" or spec.startswith("python="):
            continue
        requirement = Requirement(spec)
        found[CONDA_NAMES.get(requirement.name.lower(), requirement.name.lower())] = requirement.specifier
    return found


def pinned() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints.txt must pin exactly: {line}"
            pins[requirement.name.lower().replace("_", "-")] = Version(spec.version)
    return pins


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert set(conda_requirements()) == set(pyproject_requirements())


def test_environment_yml_uses_the_same_version_ranges():
    pyproject = pyproject_requirements()
    for name, specifier in conda_requirements().items():
        assert specifier == pyproject[name].specifier, f"{name}: environment.yml {specifier} vs pyproject {pyproject[name].specifier}"


def test_environment_yml_pins_python_311():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]


def test_every_dependency_is_pinned_and_the_pin_satisfies_its_range():
    pins = pinned()
    for name, requirement in pyproject_requirements().items():
        key = name.replace("_", "-")
        assert key in pins, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[key], prereleases=True), f"{name}=={pins[key]} is outside {requirement.specifier}"


def test_torch_and_torchvision_are_pinned_together():
    pins = pinned()
    assert (str(pins["torch"]), str(pins["torchvision"])) == ("2.14.1", "0.29.2")
