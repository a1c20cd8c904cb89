"""Reading an ``Arch`` from parsed JSON: format 2 (stages of blocks) and format 1 (flat layers).

Every unknown or missing field is an ``ArchError`` that names where it is (``stage 1 block 2
layer 0``) and the field. Nothing here executes code from the file.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .arch import Arch, ArchError, BlockSpec, HeadSpec, LayerSpec

__all__ = ["arch_from_dict"]

_ARCH_FIELDS = {1: {"format", "input_shape", "num_classes", "stem", "layers", "head"},
                2: {"format", "input_shape", "num_classes", "stem", "stages", "head"}}


def _no_unknown(where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ArchError(f"{where}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def _object(where: str, data: Any) -> dict:
    if not isinstance(data, dict):
        raise ArchError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def _list(where: str, name: str, data: Any) -> list:
    if not isinstance(data, list):
        raise ArchError(f"{where}: field '{name}' must be a list")
    return data


def _relabel(err: ArchError, old: str, where: str) -> ArchError:
    return ArchError(str(err).replace(f"{old}:", f"{where}:", 1))


def layer_from_dict(data: Any, where: str) -> LayerSpec:
    _no_unknown(where, _object(where, data), {f.name for f in fields(LayerSpec)})
    for key in ("op", "out_channels"):
        if key not in data:
            raise ArchError(f"{where}: missing field '{key}'")
    try:
        return LayerSpec(**data)
    except ArchError as err:
        raise _relabel(err, "layer", where) from None


def block_from_dict(data: Any, where: str) -> BlockSpec:
    _no_unknown(where, _object(where, data), {f.name for f in fields(BlockSpec)})
    if "layers" not in data:
        raise ArchError(f"{where}: missing field 'layers'")
    values = dict(data)
    for name in ("layers", "branch"):
        seq = _list(where, name, values.get(name, []))
        values[name] = tuple(layer_from_dict(d, f"{where} {name[:-1] if name == 'layers' else name} {i}")
                             for i, d in enumerate(seq))
    try:
        return BlockSpec(**values)
    except ArchError as err:
        raise _relabel(err, "block", where) from None


def arch_from_dict(data: Any) -> Arch:
    """An ``Arch`` from a parsed JSON object of format 1 or 2."""
    _object("arch", data)
    fmt = data.get("format", 1 if "layers" in data else 2)
    if fmt not in _ARCH_FIELDS or isinstance(fmt, bool):
        raise ArchError(f"arch: field 'format': version {fmt!r} is not supported (1 or 2)")
    _no_unknown("arch", data, _ARCH_FIELDS[fmt])
    body = "layers" if fmt == 1 else "stages"
    for key in ("input_shape", "num_classes", "stem", body):
        if key not in data:
            raise ArchError(f"arch: missing field '{key}'")
    stem = layer_from_dict(data["stem"], "stem")
    if fmt == 1:
        layers = _list("arch", "layers", data["layers"])
        stages: Any = tuple(layer_from_dict(d, f"layer {i}") for i, d in enumerate(layers))
    else:
        stages = tuple(tuple(block_from_dict(b, f"stage {s} block {i}")
                             for i, b in enumerate(_list(f"stage {s}", "blocks", st)))
                       for s, st in enumerate(_list("arch", "stages", data["stages"])))
    head_data = _object("head", data.get("head", {}))
    _no_unknown("head", head_data, {"kind", "dropout"})
    head = HeadSpec(**head_data)
    shape = data["input_shape"]
    if not isinstance(shape, list):
        raise ArchError(f"arch: field 'input_shape' must be a list [C, H, W], got {shape!r}")
    return Arch(tuple(shape), data["num_classes"], stem, stages, head)
