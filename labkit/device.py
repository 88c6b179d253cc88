"""Which device to compute on: CUDA, then Apple MPS, then the CPU — and why."""
from __future__ import annotations

import os

import torch

__all__ = ["get_device", "device_reason", "supports_bf16"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device_reason(prefer: str | None = None) -> tuple[torch.device, str]:
    """The device `get_device` picks and a sentence saying why.

    `prefer` (or the environment variable ``LABKIT_DEVICE``) forces a device such as
    ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``.
    """
    prefer = prefer or os.environ.get("LABKIT_DEVICE") or None
    if prefer:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise ValueError(
                f"unknown device {prefer!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {prefer!r} was asked for, but PyTorch sees no CUDA GPU here; "
                "use 'cpu', or unset LABKIT_DEVICE"
            )
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"device {prefer!r} was asked for, but Apple MPS is not available here")
        return device, f"asked for {prefer!r}"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
    if _mps_available():
        return torch.device("mps"), "Apple GPU (MPS) found"
    return torch.device("cpu"), "no CUDA or MPS GPU found, so the CPU is used"


def get_device(prefer: str | None = None) -> torch.device:
    """The device to train on: CUDA if present, then Apple MPS, then the CPU.

    >>> get_device("cpu")
    device(type='cpu')

    Chapter 00 introduces it; every chapter that trains uses it.
    """
    return device_reason(prefer)[0]


def supports_bf16(device: torch.device) -> bool:
    """Whether bfloat16 math runs on `device` at all. On CPUs without native bf16 instructions it
    runs but slowly: `labkit.doctor()` measures both and says which is faster."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type in ("cpu", "mps")
