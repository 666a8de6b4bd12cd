"""The command line of a ``pretrain`` call, rebuilt from its parsed values: to relaunch it
in several processes under torchrun, or to print the command that resumes it."""

from __future__ import annotations

import os
import shlex
import sys
from enum import Enum

import typer


def relaunch_args(ctx: typer.Context, given_only: bool = False,
                  keep_nproc: bool = False) -> list[str]:
    """The command line of this call, rebuilt from its parsed values, without --nproc;
    ``given_only``: the arguments and the options given on the command line only."""
    args: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if (param.name == "nproc" and not keep_nproc) or value is None:
            continue
        if given_only and param.param_type_name != "argument" and getattr(
                ctx.get_parameter_source(param.name), "name", None) != "COMMANDLINE":
            continue
        value = value.value if isinstance(value, Enum) else value
        if param.param_type_name == "argument":
            args.append(str(value))
        elif getattr(param, "is_flag", False):
            names = param.opts if value else param.secondary_opts
            args += names[:1]
        else:
            args += [param.opts[0], str(value)]
    return args


def resume_command(ctx: typer.Context) -> str:
    """The command that continues this run: the options given, and --resume."""
    args = relaunch_args(ctx, given_only=True, keep_nproc=True)
    # folders of images may be named after a patient: placeholders, not their paths
    args[0] = "DATA_DIR"
    if "--monitor" in args:
        args[args.index("--monitor") + 1] = "LABELLED_DIR"
    workers = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # a torchrun worker: --nproc N
    if workers > 1 and "--nproc" not in args:
        args += ["--nproc", str(workers)]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["cossl-edge", "pretrain", *args])


def launch_torchrun(nproc: int, ctx: typer.Context) -> None:
    """Replace this process by torchrun on this machine, running the same command in
    ``nproc`` processes. exec (not a child process) so that Ctrl-C and SIGTERM reach
    torchrun, which passes them to every worker: each stops at the same batch and rank 0
    writes the checkpoint."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", str(nproc), "-m", "cossl_edge", "pretrain",
           *relaunch_args(ctx)]
    typer.echo(f"launching {nproc} processes: torchrun --standalone --nproc_per_node {nproc} "
               "-m cossl_edge pretrain …", err=True)
    sys.stderr.flush()
    sys.stdout.flush()
    os.execv(sys.executable, cmd)
