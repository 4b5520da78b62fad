"""Which torch device to run on: the names the front ends offer, and how ``auto`` resolves.

torch is imported by the functions that need it, so that offering the names costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from histocolor.errors import HistocolorError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for missing CUDA is a user error.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    import torch

    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HistocolorError("device 'cuda' requested but no CUDA GPU is available (use --device cpu)")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise HistocolorError(f"unknown device {name!r}: use {', '.join(DEVICES)}")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise HistocolorError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) present")
    return resolved


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a stage's time is not billed to the next one."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
