"""Atomic writes leave results readable by the group, as a plain open() under the umask would."""

import os
import stat

import pytest

from instructmining.io import atomic_dir, write_json


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_atomic_outputs_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        write_json({"a": 1}, tmp_path / "out.json")
        with atomic_dir(tmp_path / "adapter") as tmp:
            (tmp / "weights.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "adapter").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "adapter" / "weights.bin").stat().st_mode) == file_mode
