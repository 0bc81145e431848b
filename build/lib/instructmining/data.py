"""The pool: configured sources normalized to {id, source, role, instruction, input, output},
exact duplicates removed, eval instructions removed (leakage guard), capped per source.

Multi-turn rule (config `pool.multiturn`), applied to records with earlier turns (a `history`
field, a ShareGPT conversation, an OASST "### Human:/### Assistant:" transcript, a LIMA list):
  last_turn  (default) the final user turn is the instruction, the final reply the output, and the
             earlier turns become the input as a transcript ("User: ...\\nAssistant: ...");
  first_turn only the opening exchange is kept;
  drop       multi-turn records are skipped.
Every count (read, filtered, multi-turn, duplicates, leaked, capped) goes to stats.json."""

from __future__ import annotations

import argparse
import json
import logging
import re
import unicodedata
from collections import Counter
from typing import Any

from .errors import DataError, InstructMiningError
from .io import derive_seed, sha256_text, write_json, write_parquet
from .records import iter_source

LOG = logging.getLogger("instructmining.data")
COLUMNS = ["id", "source", "role", "instruction", "input", "output"]
_TURN_RE = re.compile(r"###\s*(Human|Assistant)\s*:", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """NFC, LF line ends, trimmed: the form ids and duplicate checks are computed on."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def match_key(text: str) -> str:
    """Loose form for the leakage guard: case, whitespace and edge punctuation do not hide a match."""
    return re.sub(r"\s+", " ", normalize_text(text).lower()).strip(" .?!:;\"'")


def sample_id(instruction: str, input_: str, output: str) -> str:
    """sha256 of the normalized text: the same sample from two sources gets the same id."""
    return sha256_text(instruction, input_, output)


def _text(rec: dict[str, Any], field: str | None, path: str, where: str, required: bool = True) -> str:
    if not field:
        return ""
    if field not in rec or rec[field] is None:
        if required:
            raise DataError(path, where, field, "missing")
        return ""
    value = rec[field]
    if isinstance(value, list):  # S-NI style: a list of references, the first is canonical
        if not value:
            raise DataError(path, where, field, "empty list")
        value = value[0]
    if not isinstance(value, str):
        raise DataError(path, where, field, f"expected a string, got {type(value).__name__}")
    return value


def _transcript_turns(text: str) -> list[tuple[str, str]]:
    parts = _TURN_RE.split(text)
    return [(parts[i].lower(), parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def _content(value: Any) -> str:
    """An OpenAI message's content: a string, or a list of parts whose text parts are joined."""
    if isinstance(value, list):
        return "".join(p.get("text") or "" for p in value if isinstance(p, dict) and p.get("type", "text") == "text")
    return value if isinstance(value, str) else ""


def _message_pairs(rec: dict[str, Any], path: str, where: str) -> list[tuple[str, str]]:
    """OpenAI chat `messages` [{role, content}, ...] as (user, assistant) pairs. System messages
    carry no instruction of their own and are left out; a user turn pairs with the reply after it."""
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
        raise DataError(path, where, "messages", "missing or not a list of {role, content} objects")
    turns = [(m.get("role"), _content(m.get("content"))) for m in msgs if m.get("role") in ("user", "assistant")]
    pairs = [(turns[i][1], turns[i + 1][1]) for i in range(len(turns) - 1)
             if turns[i][0] == "user" and turns[i + 1][0] == "assistant"]
    if not pairs:
        raise DataError(path, where, "messages", "no user message followed by an assistant message")
    return pairs


# Record layouts a file can be in, and the keys that identify each (`detect_format`).
LAYOUTS = {
    "alpaca": "instruction + output (+ input); Dolly's instruction/context/response too",
    "sharegpt": "conversations: [{from: human|gpt, value}]",
    "messages": "messages: [{role: system|user|assistant, content}] (OpenAI chat)",
    "prompt_completion": "prompt + completion",
}
_DOLLY = {"input": "context", "output": "response"}


def detect_format(rec: dict[str, Any], path: str, where: str) -> tuple[str, dict[str, str]]:
    """(layout, fields) of a record from its keys, for sources and files with format auto; an
    error naming the record when no layout or more than one fits (then --format decides)."""
    keys = set(rec)
    found = []
    if "conversations" in keys:
        found.append(("sharegpt", {}))
    if "messages" in keys:
        found.append(("messages", {}))
    if {"prompt", "completion"} <= keys:
        found.append(("prompt_completion", {}))
    if {"instruction", "response"} <= keys and "output" not in keys:
        found.append(("alpaca", {k: v for k, v in _DOLLY.items() if v in keys or k == "output"}))
    elif "instruction" in keys:  # a missing output is then reported as such
        found.append(("alpaca", {}))
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(path, where, None, f"the record fits more than one layout ({', '.join(f for f, _ in found)}); "
                        "pass --format to say which")
    raise DataError(path, where, None, f"no known record layout in its keys {sorted(keys)[:8]}: pass --format "
                    f"({', '.join(LAYOUTS)}) and/or --fields (e.g. instruction=question,output=answer)")


def extract_turns(rec: dict[str, Any], src: dict[str, Any], path: str, where: str) -> list[tuple[str, str]]:
    """The record as [(user, assistant), ...] plus an optional input context in turns[0]."""
    fmt, fields = src.get("format", "auto"), src.get("fields") or {}
    f_ins, f_in, f_out = fields.get("instruction", "instruction"), fields.get("input", "input"), fields.get("output", "output")
    if fmt == "prompt_completion":
        out = _text(rec, "completion", path, where).replace("<|endoftext|>", "")
        return [(_text(rec, "prompt", path, where), out)]
    if fmt == "sharegpt":
        conv = rec.get("conversations")
        if not isinstance(conv, list):
            raise DataError(path, where, "conversations", "missing or not a list")
        msgs = [(m.get("from"), m.get("value") or "") for m in conv if isinstance(m, dict)]
        while msgs and msgs[0][0] != "human":
            msgs.pop(0)
        pairs = [(msgs[i][1], msgs[i + 1][1]) for i in range(0, len(msgs) - 1, 2)
                 if msgs[i][0] == "human" and msgs[i + 1][0] == "gpt"]
        if not pairs:
            if src.get("on_empty") == "skip":
                return [("", "")]  # counted as skipped_empty by load_source
            raise DataError(path, where, "conversations", "no human/gpt exchange")
        return pairs
    if fmt == "messages":
        return _message_pairs(rec, path, where)
    if fmt == "conversations":
        conv = rec.get(f_ins)
        if not isinstance(conv, list) or len(conv) < 2:
            raise DataError(path, where, f_ins, "expected a list of alternating user/assistant strings")
        return [(conv[i], conv[i + 1]) for i in range(0, len(conv) - 1, 2)]
    if fmt == "oasst_transcript":
        turns = _transcript_turns(_text(rec, f_ins, path, where))
        has_output = f_out in rec and rec[f_out] is not None
        if has_output and turns and turns[-1][0] == "assistant" and not turns[-1][1]:
            turns = turns[:-1]
        users = [t for r, t in turns if r == "human"]
        replies = [t for r, t in turns if r == "assistant"]
        if has_output:
            replies.append(_text(rec, f_out, path, where))
        if not users or len(users) != len(replies):
            raise DataError(path, where, f_ins, "transcript does not alternate ### Human / ### Assistant turns")
        return list(zip(users, replies, strict=True))
    pairs = []
    if fields.get("history"):
        hist = rec.get(fields["history"]) or []
        if not isinstance(hist, list) or any(not isinstance(h, list) or len(h) != 2 for h in hist):
            raise DataError(path, where, fields["history"], "expected a list of [user, assistant] pairs")
        pairs = [(str(u), str(a)) for u, a in hist]
    instruction = _text(rec, f_ins, path, where)
    input_ = _text(rec, f_in, path, where, required=False)
    if input_.strip():
        instruction = instruction + "\x00" + input_  # split back into instruction/input below
    return pairs + [(instruction, _text(rec, f_out, path, where))]


def to_sample(turns: list[tuple[str, str]], multiturn: str) -> tuple[str, str, str] | None:
    """Apply the multi-turn rule; None means the record is dropped (multiturn: drop)."""
    if len(turns) > 1:
        if multiturn == "drop":
            return None
        if multiturn == "first_turn":
            turns = turns[:1]
    *earlier, (user, reply) = turns
    instruction, _, input_ = user.partition("\x00")
    if earlier:
        transcript = "\n".join(f"User: {u.partition(chr(0))[0]}\nAssistant: {a}" for u, a in earlier)
        input_ = transcript + ("\n" + input_ if input_ else "")
    return instruction, input_, reply


def load_source(src: dict[str, Any], data_root: str | None, multiturn: str, stats: Counter) -> list[dict[str, str]]:
    """Normalized samples of one source (errors name file, line/record and field)."""
    path, records = iter_source(src, data_root)
    filters = src.get("filters") or {}
    equals, rows = filters.get("equals") or {}, filters.get("rows")
    out = []
    for index, (where, rec) in enumerate(records):
        stats["read"] += 1
        if rows and not rows[0] <= index < rows[1]:
            stats["filtered"] += 1
            continue
        if any(rec.get(k) != v for k, v in equals.items()):
            stats["filtered"] += 1
            continue
        sample = normalize_record(rec, src, path, where, multiturn, stats)
        if sample is not None:
            out.append(sample)
    return out


def normalize_record(rec: dict[str, Any], src: dict[str, Any], path: str, where: str, multiturn: str,
                     stats: Counter, skip_hint: str = "set the source's on_empty: skip") -> dict[str, str] | None:
    """One raw record as a pool sample {id, source, role, instruction, input, output}, or None
    when the multi-turn rule or on_empty: skip drops it (counted in `stats`). A blank instruction
    or output is an error naming the record unless skipping was asked for (`skip_hint` says how)."""
    turns = extract_turns(rec, src, path, where)
    stats["multi_turn"] += len(turns) > 1
    sample = to_sample(turns, multiturn)
    if sample is None:
        stats["dropped_multi_turn"] += 1
        return None
    instruction, input_, output = (normalize_text(t) for t in sample)
    fields = src.get("fields") or {}
    if (not instruction or not output) and src.get("on_empty") == "skip":
        stats["skipped_empty"] += 1  # counted in stats.json: a documented skip, not a silent one
        return None
    for field, text in (("instruction", instruction), ("output", output)):
        if not text:
            raise DataError(path, where, fields.get(field, field), f"empty {field} (blank after trimming "
                            f"whitespace): fill it in or remove the record, or {skip_hint} to skip such records")
    return {"id": sample_id(instruction, input_, output), "source": src["label"],
            "role": src.get("role", "train"), "instruction": instruction, "input": input_, "output": output}


def eval_keys(eval_df: Any) -> set[str]:
    """Match keys of every eval instruction, alone and with its input appended."""
    keys = set()
    for ins, inp in zip(eval_df["instruction"], eval_df["input"], strict=True):
        keys.add(match_key(ins))
        if inp:
            keys.add(match_key(ins + "\n\n" + inp))
    return keys


def build_pool(sources: list[dict[str, Any]], data_root: str | None, eval_df: Any, multiturn: str, seed: int) -> tuple[Any, dict]:
    """The deduplicated, leakage-free, capped pool (sorted by source order, then id) and its stats."""
    import numpy as np
    import pandas as pd

    guard = eval_keys(eval_df)
    seen: set[str] = set()
    frames, stats = [], {}
    for src in sources:
        st: Counter = Counter()
        kept = []
        for s in load_source(src, data_root, multiturn, st):
            if s["id"] in seen:
                st["duplicates"] += 1
                continue
            seen.add(s["id"])
            if match_key(s["instruction"]) in guard or (s["input"] and match_key(s["instruction"] + "\n\n" + s["input"]) in guard):
                st["leaked_eval"] += 1
                continue
            kept.append(s)
        kept.sort(key=lambda s: s["id"])
        cap = src.get("max_samples")
        if cap is not None and len(kept) > cap:
            rng = np.random.default_rng(derive_seed(seed, "pool", src["label"]))
            idx = np.sort(rng.choice(len(kept), size=cap, replace=False))
            st["capped"] = len(kept) - cap
            kept = [kept[i] for i in idx]
        if not kept:
            raise InstructMiningError(f"source {src['label']!r}: no samples left after filters "
                                      f"(read {st['read']}, filtered {st['filtered']})")
        st["kept"] = len(kept)
        stats[src["label"]] = {k: int(st[k]) for k in ("read", "filtered", "multi_turn", "dropped_multi_turn",
                                                        "skipped_empty", "duplicates", "leaked_eval", "capped", "kept")}
        LOG.info("source %s: %s", src["label"], stats[src["label"]])
        frames.append(pd.DataFrame(kept, columns=COLUMNS))
    return pd.concat(frames, ignore_index=True), stats


def _cmd_build_pool(args: argparse.Namespace) -> int:
    import pandas as pd

    sources = json.loads(args.sources)
    data_root = None if args.data_root == "none" else args.data_root
    eval_df = pd.read_parquet(args.eval)
    pool, stats = build_pool(sources, data_root, eval_df, args.multiturn, args.seed)
    write_json({"sources": stats, "total": len(pool), "multiturn": args.multiturn, "seed": args.seed}, args.stats)
    write_parquet(pool, args.out)
    LOG.info("pool: %d samples from %d sources -> %s", len(pool), len(sources), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-pool", help="normalize the configured sources into results/pool/pool.parquet")
    p.add_argument("--sources", required=True, help="JSON list of source blocks (config pool.sources)")
    p.add_argument("--data-root", required=True, help="folder of local data files, or 'none'")
    p.add_argument("--eval", required=True, help="eval_all.parquet: instructions the guard removes from the pool")
    p.add_argument("--multiturn", choices=["last_turn", "first_turn", "drop"], default="last_turn",
                   help="multi-turn records: keep the last turn (earlier turns as input), the first, or drop them")
    p.add_argument("--seed", type=int, required=True, help="config seed (per-source caps draw with it)")
    p.add_argument("--out", required=True, help="results/pool/pool.parquet")
    p.add_argument("--stats", required=True, help="stats.json: per-source counts (read, skipped, duplicates, ...)")
    p.set_defaults(func=_cmd_build_pool)
