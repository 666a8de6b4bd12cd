"""Which int8 target this CPU is (torch-free): what ``export --target auto`` tunes for, and
what ``embed`` and ``bench`` compare with the target recorded in an int8 model.

- ``arm``: 64- or 32-bit ARM (int8 is fast with the ARMv8.2 dot-product instructions);
- ``x86-vnni``: x86 with AVX-512 VNNI or AVX-VNNI (u8 × s8 natively);
- ``x86``: other x86 (u8 × s8 can saturate 16-bit intermediates: weights keep 7 bits).
"""

from __future__ import annotations

import platform
from pathlib import Path

KINDS = ("x86-vnni", "x86", "arm")


def cpu_kind(cpuinfo: Path = Path("/proc/cpuinfo"), machine: str | None = None) -> str:
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in ("aarch64", "arm64") or machine.startswith("arm"):
        return "arm"
    return "x86-vnni" if _cpu_flags(cpuinfo) & {"avx512_vnni", "avx_vnni"} else "x86"


def _cpu_flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def target_warning(model_name: str, target: str | None, here: str | None = None) -> str | None:
    """One line when an int8 model was tuned for another kind of CPU than this one, else
    None (fp32 models and models without the record are not judged)."""
    if not target or target not in KINDS:
        return None
    here = here or cpu_kind()
    if target == here:
        return None
    return (f"{model_name} holds int8 tuned for {target} CPUs (export --target) and this CPU "
            f"is {here}: its speed and its agreement with fp32 were measured for {target}; "
            f"export with --target {here} for this device, or bench both files here and "
            "keep the faster")
