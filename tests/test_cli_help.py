"""Every command's --help says what its source says: Rich reads ``[...]`` in a help text as
markup and silently drops it, so no help may hold text that markup parsing changes."""

from __future__ import annotations

import re

import pytest
import typer
from rich.markup import render
from typer.testing import CliRunner

from cossl_edge.cli import app


def _commands(cmd, path: tuple[str, ...] = ()):
    yield path, cmd
    if hasattr(cmd, "commands"):  # a group
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=[" ".join(p) or "root" for p, _ in COMMANDS])
def test_help_texts_survive_markup_and_render(path, cmd):
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    lost = [t for t in texts if render(t).plain != t]
    assert not lost, f"cossl-edge {' '.join(path)}: markup would eat part of {lost}"
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    gap = re.search(r"\w \.(\s|$)", result.output)  # a word, then a lone full stop
    assert gap is None, result.output[max(0, gap.start() - 80):gap.end() + 20]
