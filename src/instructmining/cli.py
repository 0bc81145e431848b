"""`instructmining` command line: a thin dispatcher; every Snakemake rule calls one sub-command.

Each stage module exposes `register(subparsers)` which adds its sub-commands and sets
`func=` on them. Stage modules import only the standard library at module level (torch, peft,
transformers are imported inside the functions that need them), so `--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import InstructMiningError
from .io import setup_logging
from .resources import DETERMINISTIC_EXIT, record_failure, start_attempt

# Data-flow order; each module's register() adds its sub-commands.
# Contributors: add your stage module here when it exists (one line each).
STAGE_MODULES = [
    "instructmining.config",
    "instructmining.evalset",
    "instructmining.data",
    "instructmining.mixing",
    "instructmining.indicators.cli",
    "instructmining.pretrain",
    "instructmining.finetune",
    "instructmining.evaluate",
    "instructmining.table",
    "instructmining.validity",
    "instructmining.regression",
    "instructmining.validation",
    "instructmining.compare_designs",
    "instructmining.univariate",
    "instructmining.plots",
    "instructmining.selection",
    "instructmining.selection_study",
    "instructmining.search",
    "instructmining.fetch",
    "instructmining.resume",
    "instructmining.estimate",
]

# What a user runs by hand, listed first in --help; every other command is a workflow step that a
# Snakemake rule calls (listed after, so the four a user needs are not lost among 28).
USER_COMMANDS = ["select", "validate-config", "resume", "ls", "fetch", "estimate"]

EPILOG = """examples:
  instructmining validate-config config/config.yaml
  instructmining ls indicators
  instructmining build-pool --sources '[...]' --data-root ../shared/data --eval results/eval/eval.parquet --out results/pool/pool.parquet
  instructmining select --rule paper-v1 --data my_data.jsonl --n 1000 --out selected.jsonl
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructmining",
        usage="instructmining [-h] [--version] [--log-level LEVEL] COMMAND [options]",
        description="InstructMining: find high-quality instruction data (arXiv 2307.06290).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"instructmining {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="how much the command logs to stderr (default: INFO)")
    # Set by the rules whose retries are expensive (instructmining.resources): a failure a retry
    # cannot fix is recorded next to LOG, and a retry of it exits at once instead of running again.
    parser.add_argument("--attempt", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--retry-log", default=None, help=argparse.SUPPRESS)
    # The command list is printed grouped (user commands first) in the epilog, not by argparse.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    for name in STAGE_MODULES:
        importlib.import_module(name).register(sub)
    parser.epilog = command_groups(sub) + "\n" + EPILOG
    return parser


def command_groups(sub: argparse._SubParsersAction) -> str:
    """The sub-commands as two groups: user commands (USER_COMMANDS order), then workflow steps
    (data-flow order), each with its one-line help."""
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    width = max(map(len, helps)) + 2
    user = [c for c in USER_COMMANDS if c in helps]
    steps = [c for c in helps if c not in user]
    lines = ["commands for users:"] + [f"  {c:<{width}}{helps[c]}" for c in user]
    lines += ["", "workflow steps (each Snakemake rule calls one; see `instructmining COMMAND --help`):"]
    lines += [f"  {c:<{width}}{helps[c]}" for c in steps]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    setup_logging(args.log_level)
    if args.retry_log:
        earlier = start_attempt(args.retry_log, args.attempt)
        if earlier:
            print(f"instructmining {args.command}: not retried: attempt {earlier['attempt']} failed with an error "
                  f"a retry cannot fix (exit {DETERMINISTIC_EXIT}; fix it and rerun): {earlier['error']!r}",
                  file=sys.stderr)
            return DETERMINISTIC_EXIT
    try:
        rc = args.func(args)
    except InstructMiningError as exc:
        message = f"instructmining {args.command}: error: {exc}"
        print(message, file=sys.stderr)
        if args.retry_log:
            record_failure(args.retry_log, args.attempt, args.command, message)
        return DETERMINISTIC_EXIT
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
