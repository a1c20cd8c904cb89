"""Width scaling shared by the backbones."""

from __future__ import annotations

__all__ = ["scale_width"]


def scale_width(channels: int, width: float, multiple: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``multiple`` (at least one); exact when width == 1."""
    if width == 1.0:
        return channels
    return max(multiple, int(round(channels * width / multiple)) * multiple)
