"""The ``cossl-edge`` command line (Typer).

Each command lives in its own module under :mod:`cossl_edge.commands` and registers itself
on the app. Commands that need torch import it inside the command, so ``--help`` and the
edge commands work where only the base package is installed.
"""

from __future__ import annotations

import importlib
import os

import typer

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# OpenMP threads that spin while waiting make torch many times slower on a CPU shared with
# other work (seen: 11 s instead of 0.6 s per step); passive waiting costs nothing measurable
# on an idle machine. Must be set before torch loads; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="cossl-edge",
    help="CO-SSL pretraining on DICOM, image and video folders; int8 ONNX export; "
    "torch-free embedding and few-shot classification on CPUs and embedded devices.",
    no_args_is_help=True,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell).
    add_completion=True,
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    """The installed distribution's version; the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cossl-edge")
    except PackageNotFoundError:
        from cossl_edge import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cossl-edge {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """CO-SSL pretraining, export and edge inference. `cossl-edge COMMAND --help` for each."""


# One module per command (group); each defines register(app).
COMMAND_MODULES = ("pretrain", "export", "embed", "fewshot", "bench", "dicom", "evaluate",
                   "report", "serve", "demo")

for _name in COMMAND_MODULES:
    importlib.import_module(f"cossl_edge.commands.{_name}").register(app)


def main() -> None:
    app()
