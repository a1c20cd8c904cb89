"""ONNX export and onnxruntime sessions, the way latency is timed on ``runtime="onnxruntime"``.

``export_onnx(model, input_shape, path)`` writes an ONNX graph whose batch axis is dynamic
(input ``input`` of shape ``(batch, C, H, W)``, output ``logits``). It uses the TorchScript
exporter (``dynamo=False``: ~0.1 s per model here, where the ``torch.export`` one takes
seconds) and falls back to the ``torch.export`` exporter when the TorchScript one refuses.

``ort_session(path, threads)``: an ``InferenceSession`` with ``intra_op_num_threads = threads``,
one inter-op thread, sequential execution, all graph optimisations (single-thread settings are
honoured: ``threads=1`` runs on one core). ``OrtModule`` puts a session behind
``nn.Module.forward``. ``search.onnx_export`` re-exports these and adds the parity check.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

__all__ = ["OPSET", "INPUT", "OUTPUT", "export_onnx", "ort_session", "ort_providers", "OrtModule", "quiet_export"]

OPSET = 17
INPUT, OUTPUT = "input", "logits"


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
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
        with quiet_export():
            torch.onnx.export(work, (x,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                              opset_version=opset, dynamo=False)
        return "torchscript"
    except Exception as first:  # noqa: BLE001 - any exporter failure: try the other exporter
        try:
            with quiet_export():
                batch = torch.export.Dim("batch", min=1)
                program = torch.onnx.export(work, (x,), input_names=[INPUT], output_names=[OUTPUT],
                                            dynamic_shapes=({0: batch},), opset_version=max(opset, 18),
                                            dynamo=True)
                if program is None:
                    raise RuntimeError("the dynamo exporter returned no program")
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
    optimisations, sequential execution, no thread spinning after a run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # spinning worker threads would burn the core the interleaved reference runs on next
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=ort_providers(device))


class OrtModule(nn.Module):
    """An onnxruntime session behind ``nn.Module.forward`` (torch tensor in, numpy logits out).
    Not copied by ``deepcopy``."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> Any:
        return self.session.run(None, {self.input_name: x.contiguous().numpy()})[0]

    def __deepcopy__(self, memo: dict) -> OrtModule:
        return self
