"""`instructmining --help` (issue #13): user commands listed first, every option of every
command has help text, and `select --help` shows examples."""

import argparse
import subprocess
import sys

from instructmining.cli import USER_COMMANDS, build_parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    missing = [f"instructmining {name} {a.option_strings[0] if a.option_strings else a.dest}"
               for name, sp in _commands(parser).items() for a in sp._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    missing += [f"instructmining {a.option_strings[0]}" for a in parser._actions
                if a.option_strings and not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []
    assert all((sp.description or _help_of(parser, name)) for name, sp in _commands(parser).items())


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a.help for a in sub._choices_actions if a.dest == name)


def test_help_lists_user_commands_first_then_every_workflow_step():
    text = build_parser().format_help()
    users, steps = text.split("commands for users:")[1].split("examples:")[0].split("workflow steps")
    assert [line.split()[0] for line in users.strip().splitlines()] == USER_COMMANDS
    listed = [line.split()[0] for line in steps.splitlines()[1:] if line.startswith("  ")]
    assert sorted(USER_COMMANDS + listed) == sorted(_commands(build_parser()))


def test_select_help_has_examples_and_is_fast():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "instructmining.cli", "select", "--help"],
                         capture_output=True, text=True, check=True)
    assert "examples:" in out.stdout and "--on-invalid skip" in out.stdout and "--n 0.1" in out.stdout
    heavy = [m for m in ("torch", "pandas", "transformers", "datasets") if f"| {m}\n" in out.stderr]
    assert heavy == []  # --help never imports the heavy stack
