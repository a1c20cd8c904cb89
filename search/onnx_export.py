"""ONNX export of a (condensed) network and its onnxruntime parity check.

``export_onnx(model, input_shape, path)`` writes an ONNX graph whose batch axis is dynamic
(input ``input`` of shape ``(batch, C, H, W)``, output ``logits`` of shape ``(batch, K)``).
It uses the TorchScript exporter (``dynamo=False``: ~0.1 s per model here, where the
``torch.export`` one takes seconds and needs the same result) and falls back to the
``torch.export`` exporter when the TorchScript one refuses a model.

``check_parity(model, path, input_shape)`` runs the PyTorch model (eval mode) and the ONNX graph
in onnxruntime on the same seeded random batches of several sizes and requires
``|onnx - torch| <= ATOL + RTOL * |torch|`` element-wise (``numpy.allclose``), with
``ATOL = 1e-4``, ``RTOL = 1e-3``. ``OnnxParityError`` otherwise.

``export_onnx``, ``ort_session`` and ``ort_providers`` live in ``evaluators.onnx_runtime`` (the
latency timer needs them; evaluators never import search) and are re-exported here.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from evaluators.onnx_runtime import INPUT, OPSET, OUTPUT, export_onnx, ort_providers, ort_session

__all__ = ["ATOL", "RTOL", "OPSET", "INPUT", "OUTPUT", "OnnxParityError", "ParityResult", "export_onnx",
           "check_parity", "ort_session", "ort_providers"]

ATOL = 1e-4
RTOL = 1e-3


class OnnxParityError(RuntimeError):
    """The ONNX graph's outputs differ from the PyTorch model's beyond the tolerance."""


@dataclass(frozen=True)
class ParityResult:
    """Largest absolute difference and largest ``|diff| / (ATOL + RTOL |ref|)`` ratio (<= 1 passes)."""

    max_abs_diff: float
    worst_ratio: float
    batches: tuple[int, ...]
    atol: float
    rtol: float
    ok: bool
    exporter: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batches"] = list(self.batches)
        return d


def check_parity(model: nn.Module, path: str | Path, input_shape: Sequence[int],
                 batches: Sequence[int] = (1, 3), atol: float = ATOL, rtol: float = RTOL, seed: int = 0,
                 raise_on_fail: bool = True) -> ParityResult:
    """Compare the ONNX graph at ``path`` with ``model`` on seeded random inputs (see module doc)."""
    work = copy.deepcopy(model).cpu().eval()
    session = ort_session(path, threads=1)
    gen = torch.Generator().manual_seed(seed)
    max_abs, worst = 0.0, 0.0
    details: dict[str, Any] = {}
    for b in batches:
        x = torch.randn((int(b), *input_shape), generator=gen)
        with torch.inference_mode():
            ref = work(x).numpy()
        out = session.run([OUTPUT], {INPUT: x.numpy()})[0]
        if out.shape != ref.shape:
            raise OnnxParityError(f"ONNX output shape {out.shape} != PyTorch output shape {ref.shape} "
                                  f"at batch {b}")
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        ratio = diff / (atol + rtol * np.abs(ref.astype(np.float64)))
        max_abs = max(max_abs, float(diff.max()))
        worst = max(worst, float(ratio.max()))
        details[str(b)] = float(diff.max())
    result = ParityResult(max_abs, worst, tuple(int(b) for b in batches), atol, rtol, worst <= 1.0,
                          details={"max_abs_diff_per_batch": details})
    if raise_on_fail and not result.ok:
        raise OnnxParityError(f"ONNX outputs differ from PyTorch: max |diff| {max_abs:.3g}, "
                              f"{worst:.3g} x the tolerance (atol {atol}, rtol {rtol})")
    return result
