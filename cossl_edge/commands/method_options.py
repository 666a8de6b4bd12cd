"""``pretrain``'s method options, made from the method list (``training/method_list.py``):
``--method`` with every listed method, and one option per setting a method declares, its
type and default taken from the configuration field of that name."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from enum import Enum

import typer

from cossl_edge.commands.common import choices, plain

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
# Method settings with a closed set of values, offered as choices. They are checked in
# training/methods.py (torch), so the lists are written here; tests/test_cli_choices.py
# compares them with the checks.
CHOICES = {"local_target": ("g2", "g1", "online")}


def _field_type(annotation: str) -> tuple[type, bool]:
    """'float | None' → (float, optional)."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    names = [p for p in parts if p != "None"]
    return _TYPES.get(names[0], str) if len(names) == 1 else str, optional


def _config_fields() -> dict:
    from cossl_edge.training.config import PretrainConfig

    return {f.name: f for f in fields(PretrainConfig)}


def _parameters() -> list[inspect.Parameter]:
    from cossl_edge.training.method_list import (
        DEFAULT_METHOD,
        all_options,
        method_info,
        method_names,
    )

    names = method_names()
    described = "; ".join(f"{n}: {method_info(n).summary}" for n in names)
    method_enum = Enum("Method", {n: n for n in names}, type=str)
    params = [inspect.Parameter(
        "method", inspect.Parameter.KEYWORD_ONLY, annotation=method_enum,
        default=typer.Option(method_enum(DEFAULT_METHOD), help=described + "."))]
    config_fields = _config_fields()
    for name, (opt, methods) in all_options().items():
        field = config_fields.get(name)
        if field is not None:
            kind, optional = _field_type(str(field.type))
            default = field.default if field.default is not MISSING else None
        else:
            default = opt.default
            kind, optional = (type(default), False) if default is not None else (str, True)
        if name in CHOICES:
            kind = choices("".join(w.title() for w in name.split("_")), CHOICES[name])
            default = kind(default) if default is not None else None
        flag = "--" + name.replace("_", "-")
        decls = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
        applies = "all methods" if len(methods) == len(names) else ", ".join(methods)
        annotation = typing.Optional[kind] if optional else kind  # noqa: UP045 (a runtime type)
        params.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
            default=typer.Option(default, *decls, help=f"{opt.help} ({applies})")))
    return params


def with_method_options(func: Callable) -> Callable:
    """``func(…, **method_settings)`` with ``--method`` and the method settings as options."""
    sig = inspect.signature(func)
    fixed = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in _parameters()]
    func.__signature__ = sig.replace(parameters=fixed + extra)
    func.__annotations__ = {**func.__annotations__,
                            **{p.name: p.annotation for p in extra}}
    return func


def method_fields(method: str, settings: dict, explicit: set[str]) -> dict:
    """PretrainConfig keyword arguments from the parsed method options: each field by name
    (a field another method uses is kept, unused, as before), and the settings new to the
    configuration in ``method_options``; such a setting given on the command line for a
    method that does not have it is an error."""
    from cossl_edge.training.method_list import method_info

    own = {o.name for o in method_info(method).options}
    config_fields = _config_fields()
    stray = sorted(n for n in settings
                   if n in explicit and n not in own and n not in config_fields)
    if stray:
        flags = ", ".join("--" + n.replace("_", "-") for n in stray)
        raise ValueError(f"{flags}: not a setting of {method} (its settings: "
                         f"{', '.join('--' + n.replace('_', '-') for n in sorted(own))})")
    settings = {n: plain(v) for n, v in settings.items()}
    out = {n: v for n, v in settings.items() if n in config_fields}
    out["method_options"] = {n: v for n, v in settings.items()
                             if n not in config_fields and n in own}
    return out
