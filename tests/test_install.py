"""The locked install: what runs is exactly ``requirements/lock.txt``, which honours pyproject's floors,
and the conda files are generated from it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_locked_package_is_installed_at_its_locked_version():
    wrong = {}
    for name, version in _pins(LOCK).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, None)
            continue
        if installed.split("+", 1)[0] != version:  # torch 2.14.1+cu130 is the wheel of 2.14.1
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from {LOCK} (locked, installed): {wrong}; run `make install`"


def test_the_lock_honours_every_floor_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += [r for r in extra if not r.startswith("cam-compendium")]
    pins = _pins(LOCK)
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not in {LOCK}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{LOCK} has {name}=={pins[name]}, outside {text}"
    for name, version in _pins(REPO / "requirements" / "pins.txt").items():
        assert pins[name] == version, f"{LOCK} has {name}=={pins[name]}, requirements/pins.txt {version}"
    assert pins["torch"] != "2.13.0"


def test_the_conda_files_are_generated_from_the_lock():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "sync_envs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
