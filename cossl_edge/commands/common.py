"""Helpers shared by the CLI commands: one clear error line and a non-zero exit."""

from __future__ import annotations

import sys
from contextlib import contextmanager

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
