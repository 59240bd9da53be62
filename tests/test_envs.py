"""envs/eigsweep.yaml (used by the rules' conda: directives) matches pyproject.toml's dependencies."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def requirement(spec: str) -> tuple[str, str]:
    name, constraint = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec).groups()
    return name.lower(), constraint.replace(" ", "")


def test_conda_env_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(requirement(d) for d in project["dependencies"])   # names compared lower-case
    env = yaml.safe_load((ROOT / "envs/eigsweep.yaml").read_text())
    got = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-e") or item in ("pip",):
                continue
            name, constraint = requirement(item)
            got[name] = constraint
    got.pop("python", None)
    assert got == wanted
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ../" in pip_section   # the env installs this project itself
