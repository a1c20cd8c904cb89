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

``ort_session(path, threads)``: an ``InferenceSession`` with ``intra_op_num_threads`` fixed
(and one inter-op thread, sequential execution), the way the re-measured targets run it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["ATOL", "RTOL", "OPSET", "OnnxParityError", "ParityResult", "export_onnx", "check_parity",
           "ort_session", "ort_providers"]

ATOL = 1e-4
RTOL = 1e-3
OPSET = 17
INPUT, OUTPUT = "input", "logits"


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


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' deprecation warnings and log lines (they are not the user's)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path, opset: int = OPSET) -> str:
    """Write ``model`` (a CPU copy in eval mode) to ``path`` with a dynamic batch axis.

    Returns the exporter used: ``"torchscript"`` or ``"dynamo"``.
    """
    path = Path(path)
    work = copy.deepcopy(model).cpu().eval()
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
    try:
        with _quiet():
            torch.onnx.export(work, (x,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                              opset_version=opset, dynamo=False)
        return "torchscript"
    except Exception as first:  # noqa: BLE001 - any exporter failure: try the other exporter
        try:
            with _quiet():
                batch = torch.export.Dim("batch", min=1)
                program = torch.onnx.export(work, (x,), input_names=[INPUT], output_names=[OUTPUT],
                                            dynamic_shapes=({0: batch},), opset_version=max(opset, 18),
                                            dynamo=True)
                program.save(str(path))
            return "dynamo"
        except Exception as second:  # noqa: BLE001
            raise RuntimeError(f"ONNX export failed with both exporters: torchscript: {first}; "
                               f"dynamo: {second}") from None


def ort_providers(device: str = "cpu") -> list[str]:
    """The onnxruntime execution providers for ``device`` ("cpu" or "cuda")."""
    import onnxruntime as ort

    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu); "
                               f"available: {', '.join(ort.get_available_providers())}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def ort_session(path: str | Path, threads: int = 1, device: str = "cpu") -> Any:
    """An onnxruntime session with ``threads`` intra-op threads, 1 inter-op thread, all graph
    optimisations, sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=ort_providers(device))


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
