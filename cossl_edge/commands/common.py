"""Helpers shared by the CLI commands: one clear error line and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import contextmanager
from enum import Enum, StrEnum

import typer

# Errors a user can cause; each carries a message naming the file and the fix.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError)


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors():
    """Turn a user-caused error into one red line on stderr and exit code 2."""
    try:
        yield
    except typer.Exit:
        raise
    except USER_ERRORS as e:
        fail(str(e))
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


def choices(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A closed set of option values as a str-valued Enum: ``--help`` lists them, shell
    completion offers them, and a value outside them fails while the command line is parsed
    (click's message naming the valid ones, exit code 2), before any file is read."""
    return StrEnum(name, {v: v for v in values})


def plain(value):
    """A choice's value as the plain ``str`` the library code takes (None stays None)."""
    return value.value if isinstance(value, Enum) else value


def warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def renamed(new_value, old_value, default, old: str, new: str):
    """A renamed option's value: the new option's, else (with a warning) the hidden old
    name's, else the default."""
    if old_value is None:
        return new_value
    warn(f"{old} is deprecated and will be removed; use {new}")
    return old_value if new_value == default else new_value
