"""Reading raw records from local files, pip packages and the hub, with errors that name the
file and line (jsonl) or record (json array, parquet, hub) at fault. Lines and records are both
counted from 1, so a number in an error is the one an editor or `sed -n Np` shows."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataError

Record = dict[str, Any]


def decode_utf8(raw: bytes, path: Path, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if line is None:  # whole-file decode: turn the byte offset into a line number
            line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise DataError(path, f"line {line}", None, f"not valid UTF-8 (byte 0x{bad}); re-save the file as UTF-8 "
                        "(e.g. iconv -f latin1 -t utf-8)") from None


def _bad(error: DataError, bad: list[DataError] | None) -> None:
    """Raise a per-record error, or collect it when the caller skips bad records (`bad` a list)."""
    if bad is None:
        raise error
    bad.append(error)


def read_jsonl(path: Path, bad: list[DataError] | None = None) -> Iterator[tuple[str, Record]]:
    """Yield ("line N", record) for each non-blank line; malformed lines raise naming file:line
    (or are appended to `bad` and skipped when a list is given)."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                text = decode_utf8(raw, path, n).strip()
                if not text:
                    continue
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(path, f"line {n}", None, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(rec, dict):
                    raise DataError(path, f"line {n}", None, f"expected a JSON object, got {type(rec).__name__}")
            except DataError as exc:
                _bad(exc, bad)
                continue
            yield f"line {n}", rec


def read_csv(path: Path, bad: list[DataError] | None = None) -> Iterator[tuple[str, Record]]:
    """Yield ("line N", record) per CSV row (N: the line the row starts on, the header is line 1);
    every value is a string, an empty cell is "". A row with more cells than the header is bad."""
    text = decode_utf8(path.read_bytes(), path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, None, None, "empty CSV file (expected a header line)") from None
    except csv.Error as exc:
        raise DataError(path, "line 1", None, f"malformed CSV header: {exc}") from None
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DataError(path, "line 1", dup, "column name appears twice in the header")
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(path, f"line {start}", None, f"malformed CSV: {exc}") from None
        where, start = f"line {start}", reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            _bad(DataError(path, where, None, f"{len(row)} cells but the header has {len(header)} columns "
                           "(quote cells that contain commas)"), bad)
            continue
        yield where, dict(zip(header, row + [""] * (len(header) - len(row)), strict=True))


def read_json_array(path: Path, bad: list[DataError] | None = None) -> Iterator[tuple[str, Record]]:
    """Yield ("record i", record) from a JSON array file (i from 1)."""
    text = decode_utf8(path.read_bytes(), path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"line {exc.lineno}", None, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, list):
        raise DataError(path, None, None, f"expected a JSON array of records, got {type(data).__name__}")
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            _bad(DataError(path, f"record {i}", None, f"expected a JSON object, got {type(rec).__name__}"), bad)
            continue
        yield f"record {i}", rec


def read_json_stream(path: Path) -> Iterator[tuple[str, Record]]:
    """A JSON array that may be truncated at the end (ShareGPT V3 as shipped): decode record by
    record and stop at the first incomplete one."""
    text = decode_utf8(path.read_bytes(), path)
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    i = 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            rec, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # truncated tail: the documented end of the shipped file
        if isinstance(rec, dict):
            yield f"record {i}", rec
        i += 1


def read_parquet(path: Path) -> Iterator[tuple[str, Record]]:
    """Yield ("record i", record) per row (i from 1); nested columns stay lists/dicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(path, None, None, f"not a readable parquet file ({exc})") from None
    for i, rec in enumerate(table.to_pylist(), start=1):
        yield f"record {i}", rec


def read_hub(hub: str, config: str | None, split: str, revision: str | None) -> Iterator[tuple[str, Record]]:
    """A hub dataset through datasets.load_dataset (cached; HF_HUB_OFFLINE=1 reads the cache)."""
    from datasets import load_dataset

    try:
        ds = load_dataset(hub, config, split=split, revision=revision)
    except Exception as exc:  # datasets raises many types; the message must name the id
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("HF_DATASETS_OFFLINE", "") not in ("", "0")
        hint = ("HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set, so only a dataset already in the cache loads: fetch it "
                "on a machine with network (the workflow's `fetch` target), or unset it" if offline else
                "check the id and split; on offline nodes run the workflow's `fetch` target first")
        raise DataError(f"hub:{hub}", None, None, f"cannot load hub dataset ({type(exc).__name__}: {exc}); {hint}") from exc
    for i, rec in enumerate(ds, start=1):
        yield f"record {i}", dict(rec)


def package_path(package: str, rel: str) -> Path:
    """A file inside an installed pip package (found without importing it)."""
    from .model_spec import package_dir

    return package_dir(package) / rel


def local_path(rel: str, data_root: str | None) -> Path:
    """Where a local data file named in config lies: relative to data_root unless absolute."""
    path = Path(rel)
    if path.is_absolute():
        return path
    if not data_root:
        raise DataError(path, None, None, "relative path but data_root is not set")
    return Path(data_root) / path


def data_file(rel: str, data_root: str | None) -> Path:
    """A local data file named in config (see local_path); must exist."""
    path = local_path(rel, data_root)
    if not path.is_file():
        raise DataError(path, None, None, "file not found (check data_root and the configured path)")
    return path


def iter_source(src: dict[str, Any], data_root: str | None) -> tuple[str, Iterator[tuple[str, Record]]]:
    """(display name, records) for a configured source."""
    if src.get("hub"):
        return f"hub:{src['hub']}", read_hub(src["hub"], src.get("hub_config"), src.get("split", "train"),
                                            src.get("revision"))
    if src.get("package"):
        path = package_path(src["package"], src["path"])
        if not path.is_file():
            raise DataError(path, None, None, "file not found in the pip package (check the source's path)")
    else:
        path = data_file(src["path"], data_root)
    return str(path), read_file(path, src.get("format", "auto"))


def read_file(path: Path, fmt: str = "auto", bad: list[DataError] | None = None) -> Iterator[tuple[str, Record]]:
    """The records of a local file, by format (`auto`: by extension; anything that is neither
    .parquet, .jsonl nor .csv is read as a JSON array). The one reader path of the pool and
    `select`. With `bad` a list, a malformed line/record is appended to it and skipped instead
    of raised (a file that cannot be parsed at all still raises)."""
    suffix = path.suffix.lower()
    if fmt == "sharegpt":
        return read_json_stream(path)
    if fmt == "parquet" or suffix == ".parquet":
        return read_parquet(path)
    if fmt == "jsonl" or suffix == ".jsonl":
        return read_jsonl(path, bad)
    if fmt == "csv" or suffix == ".csv":
        return read_csv(path, bad)
    return read_json_array(path, bad)
