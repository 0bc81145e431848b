"""The config schema is package data: a wheel carries it, and `instructmining validate-config` from
a non-editable install (no repository on the path, another working directory) finds it."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest


@pytest.fixture(scope="module")
def wheel(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes src/*.egg-info and build/ next to the sources.
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(repo / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, tree / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(out), str(tree)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whl,) = out.glob("instructmining-*.whl")
    return whl


def test_wheel_ships_one_schema(wheel, repo):
    names = zipfile.ZipFile(wheel).namelist()
    assert "instructmining/schemas/config.schema.yaml" in names
    shipped = zipfile.ZipFile(wheel).read("instructmining/schemas/config.schema.yaml")
    assert shipped == (repo / "src" / "instructmining" / "schemas" / "config.schema.yaml").read_bytes()
    # One copy: the workflow has no schema of its own that could drift from the package's.
    assert not list((repo / "workflow").rglob("*.schema.yaml"))


def test_validate_config_from_a_non_editable_install(wheel, repo, data_root, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-t", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not the repository's src/
    cfg = elsewhere / "ci.yaml"
    cfg.write_text((repo / "config" / "ci.yaml").read_text())
    code = ("import instructmining, sys; from instructmining.cli import main; "
            "print(instructmining.__file__, file=sys.stderr); sys.exit(main(sys.argv[1:]))")
    ok = subprocess.run([sys.executable, "-c", code, "validate-config", str(cfg), "--base", str(repo)],
                        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert ok.stderr.splitlines()[0].startswith(str(target)), ok.stderr[:500]
    assert f"{cfg}: ok" in ok.stdout
    # The schema is really consulted: an unknown key is named.
    cfg.write_text(cfg.read_text() + "\nnot_a_key: 1\n")
    bad = subprocess.run([sys.executable, "-c", code, "validate-config", str(cfg), "--base", str(repo)],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "not_a_key" in bad.stderr, bad.stderr[-2000:]
