"""One lock, constraints.txt: what the tests run on is what make, CI and the image install."""

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from greenery_orchestration.settings import REPO_DIR


def _pins() -> dict[str, str]:
    lines = (REPO_DIR / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


# What a venv holds besides the lock: the installers, and this project itself.
NOT_LOCKED = {"pip", "setuptools", "wheel", "greenery-orchestration"}


def test_the_venv_is_exactly_the_lock():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    pins = _pins()
    differ = {
        name: (pins.get(name), installed.get(name))
        for name in (set(pins) | set(installed)) - NOT_LOCKED
        if installed.get(name) != pins.get(name)
    }
    assert differ == {}, "the venv differs from constraints.txt: `make clean test`, or `make lock` to move"


def test_every_dependency_is_locked():
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _pins()
    for requirement in map(Requirement, declared):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt: `make lock`"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} breaks {requirement}"


def test_make_and_the_image_install_from_the_lock():
    makefile = (REPO_DIR / "Makefile").read_text()
    dockerfile = (REPO_DIR / "Dockerfile").read_text()
    assert re.search(r"pip install .*--constraint constraints.txt .*\.\[dev\]", makefile)
    assert "COPY pyproject.toml constraints.txt" in dockerfile
    assert re.search(r"pip install .*--constraint constraints.txt -r", dockerfile)
