"""`doctor()`: is this machine ready for the course? (chapter 00)

The module is named for what it checks, so that `labkit.doctor` stays the function.

Checks Python and package versions against what the course needs, says which device
training will use and why, describes the GPU if there is one, measures matrix-multiply
speed (`labkit.machine.matmul_gflops`; later chapters turn it into run-time estimates), and
verifies the shipped datasets and SmolLM2's model file (chapter 06d).
Every problem comes with a one-line fix.
"""
from __future__ import annotations

import html
import importlib.metadata as metadata
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .device import device_reason, supports_bf16
from .machine import matmul_gflops

__all__ = ["doctor", "DoctorReport"]

_FIX_INSTALL = "run `make lab` (or `pip install -e .` in the course folder) to install the pinned versions"


@dataclass
class Check:
    """One line of the report: what was checked, whether it is fine, and the fix if not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # a failed required check makes `python -m labkit doctor` exit non-zero


@dataclass
class DoctorReport:
    """The result of `doctor()`: a list of checks plus the facts later chapters use."""

    checks: list[Check] = field(default_factory=list)
    device: torch.device = torch.device("cpu")
    gflops: dict[str, float] = field(default_factory=dict)  # e.g. {"float32": 140.0, "bfloat16": 350.0}
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every required check passed."""
        return all(c.ok for c in self.checks if c.required)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def __str__(self) -> str:
        lines = ["labkit doctor", "=" * 60]
        lines += [f"{k:<24} {v}" for k, v in self.facts.items()]
        lines += ["-" * 60]
        for c in self.checks:
            mark = "✓" if c.ok else ("✗" if c.required else "!")
            lines.append(f"{mark} {c.name:<22} {c.detail}")
            if not c.ok and c.fix:
                lines.append(f"  {'':<22} {'fix' if c.required else 'note'}: {c.fix}")
        lines.append("-" * 60)
        required = [c for c in self.problems if c.required]
        lines.append("all good: ready for the course" if self.ok else f"{len(required)} problem(s) to fix (see ✗ above)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        facts = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in self.facts.items())
        rows = []
        for c in self.checks:
            colour = "#1a7f37" if c.ok else ("#cf222e" if c.required else "#9a6700")
            mark = "✓" if c.ok else ("✗" if c.required else "!")
            label = "fix" if c.required else "note"
            fix = f"<br><small>{label}: {html.escape(c.fix)}</small>" if not c.ok and c.fix else ""
            rows.append(
                f"<tr><td style='color:{colour};font-weight:bold'>{mark}</td><td style='text-align:left'>{html.escape(c.name)}</td>"
                f"<td style='text-align:left'>{html.escape(c.detail)}{fix}</td></tr>"
            )
        verdict = "all good: ready for the course" if self.ok else "problems to fix: see ✗ above"
        return (
            "<div><b>labkit doctor</b><table>" + facts + "</table><table>" + "".join(rows) + "</table>"
            f"<p><b>{verdict}</b></p></div>"
        )


def _required_packages() -> list[str]:
    """The dependency specifications of labkit (from its installed metadata, else pyproject.toml)."""
    try:
        return [r for r in (metadata.requires("labkit") or []) if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["dependencies"]


def _package_checks() -> list[Check]:
    from packaging.requirements import Requirement

    checks = []
    for spec in _required_packages():
        req = Requirement(spec)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            checks.append(Check(req.name, False, f"not installed (needs {req.specifier or 'any version'})", _FIX_INSTALL))
            continue
        ok = req.specifier.contains(version, prereleases=True)
        wanted = f" (needs {req.specifier})" if not ok else ""
        checks.append(Check(req.name, ok, f"{version}{wanted}", _FIX_INSTALL))
    return checks


def _gpu_facts(device: torch.device) -> dict[str, str]:
    if device.type != "cuda":
        return {}
    props = torch.cuda.get_device_properties(device)
    free, total = torch.cuda.mem_get_info(device)
    return {
        "GPU": props.name,
        "GPU memory": f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB",
        "compute capability": f"{props.major}.{props.minor}",
        "bf16 supported": "yes" if supports_bf16(device) else "no",
    }


def doctor(benchmark: bool = True, seconds: float = 0.5) -> DoctorReport:
    """Check this machine for the course; in a notebook the report shows as a table.

    `benchmark=False` skips the ~1 s matrix-multiply measurement.

    Chapter 00 runs it first; 01 estimates training times from the speeds it measures.
    """
    report = DoctorReport()
    python_ok = sys.version_info >= (3, 11)
    report.checks.append(
        Check("Python", python_ok, platform.python_version() + ("" if python_ok else " (needs 3.11 or newer)"),
              "install Python 3.11 and run `make lab` again")
    )
    report.checks += _package_checks()

    try:
        device, why = device_reason()
        report.checks.append(Check("device", True, f"{device} — {why}"))
    except ValueError as error:
        device = torch.device("cpu")
        report.checks.append(Check("device", False, str(error), "unset LABKIT_DEVICE or set it to 'cpu'"))
    report.device = device
    report.facts.update(
        {
            "platform": f"{platform.system()} {platform.machine()}",
            "PyTorch build": f"CUDA {torch.version.cuda} (runs on CPUs too)" if torch.version.cuda else "CPU only",
            "CPU threads": f"{torch.get_num_threads()} used by torch, {os.cpu_count()} logical CPUs",
            "memory (RAM)": _ram(),
        }
    )
    report.facts.update(_gpu_facts(device))

    if benchmark:
        dtypes = [torch.float32] + ([torch.bfloat16] if supports_bf16(device) else [])
        for dtype in dtypes:
            name = str(dtype).removeprefix("torch.")
            report.gflops[name] = matmul_gflops(device, dtype, seconds=seconds)
        speed = ", ".join(f"{v:,.0f} GFLOP/s {k}" for k, v in report.gflops.items())
        report.checks.append(Check("matmul speed", True, f"{speed} on {device} (1024×1024, measured now)", required=False))
        if report.gflops.get("bfloat16", math.inf) < report.gflops["float32"]:
            report.checks.append(Check(
                "bf16", False, "bfloat16 is slower than float32 on this device (no native bf16 instructions)",
                "train in float32 here; mixed precision pays off on GPUs and newer CPUs", required=False,
            ))

    from .data import dataset_status

    for name, ok, message in dataset_status():
        report.checks.append(Check(f"dataset {name}", ok, message.split("\n")[0], "" if ok else _dataset_fix(message)))

    from .smollm2 import model_file_status

    ok, detail, fix = model_file_status()  # hashes the 98 MB file once per process (~0.3 s)
    report.checks.append(Check("model SmolLM2", ok, detail, fix))
    return report


def _ram() -> str:
    """Total memory, where the operating system tells it (Linux, macOS)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return "unknown"
    return f"{total / 2**30:.1f} GiB"


def _dataset_fix(message: str) -> str:
    for line in message.splitlines():
        if "python datasets/build.py" in line or "git checkout" in line:
            return line.strip()
    return "restore the datasets/ folder from the course repository (`git checkout -- datasets/`)"
