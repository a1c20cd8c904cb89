"""``python -m search.train ARCH.json``: train a chosen architecture fully, save weights and ONNX.

The training is the proxy trainer (``evaluators.train_proxy.train``: SGD + Nesterov, weight
decay, one-cycle learning rate -- linear warm-up then cosine decay --, the learned-op hook:
``loss += sum(op.regularizer())``, ``op.schedule(e / E)`` after each epoch, learned ops condensed
by ``spaces.condense_model`` at the end) run for more epochs on augmented inputs:

- ``digits``: random shifts of up to 2 pixels (zero-padded crop of the 32x32 image), no flips
  (a flipped digit is another digit or none);
- ``cifar10``: random crop with 4 pixels of padding and horizontal flips (He et al. 2016);
- ``npz``: random shifts of up to H/8 pixels, no flips (we cannot know whether a flip keeps the
  label).

The validation split is scored after every epoch (progress line with ETA); the held-out test
split is scored once, at the end, on the condensed model. Outputs in ``--out DIR`` (default:
``<folder of ARCH.json>/<stem of ARCH.json>-trained/``):

- ``weights.pt``: ``state_dict()`` of the condensed model, a plain dict of tensors
  (``torch.load(path, weights_only=True)`` reads it);
- ``arch.json``: the architecture (canonical JSON);
- ``metrics.json``: accuracies, params, MACs, latency, epochs, seconds, versions, the ONNX parity
  figures, and how to rebuild the model (``load_trained(DIR)``);
- ``model.onnx``: the condensed model with a dynamic batch axis, checked against PyTorch with
  onnxruntime (``search.onnx_export``: atol 1e-4, rtol 1e-3).

A learned arch (condense / flgc / dgc) condenses to index selections + real group convs whose
index buffers (and, for DGC, group count) come from training, so ``build_model(arch)`` alone
does not have the right structure: ``load_trained(DIR)`` rebuilds it from the state dict's
shapes. For an arch without learned ops, ``build_model(arch).load_state_dict(sd)`` is enough.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor, nn

from .cli_errors import CliError, run_cli
from .options import DEFAULT_RUNTIME, latency_shape
from .settings import RUNTIMES, Settings

if TYPE_CHECKING:
    from evaluators.data import Images

__all__ = ["main", "build_parser", "ShiftAugmented", "augmentation_for", "load_trained", "rebuild_condensed",
           "DEFAULT_EPOCHS"]

DEFAULT_EPOCHS = 30
AUGMENT = ("auto", "none", "shift", "shift-flip")


# ----------------------------------------------------------------------------- augmentation

class ShiftAugmented:
    """The training inputs, indexed like a tensor, returning randomly shifted (and flipped) copies.

    ``view[idx]`` = ``x[idx]`` zero-padded by ``pad`` pixels on each side, then cropped back to
    H x W at a random offset per example (a shift of up to ``pad`` pixels; inputs are normalised,
    so zero is the mean), and flipped left-right with probability 1/2 when ``flip``. Draws come
    from its own ``torch.Generator`` seeded with ``seed``: the same seed gives the same run.
    """

    def __init__(self, x: Images, pad: int, flip: bool, seed: int = 0) -> None:
        self.x, self.pad, self.flip = x, int(pad), bool(flip)
        self.gen = torch.Generator().manual_seed(seed + 104729)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape

    def __getitem__(self, idx: Any) -> Tensor:
        xb = self.x[idx]
        n, _, h, w = xb.shape
        if self.pad > 0:
            padded = torch.nn.functional.pad(xb, (self.pad,) * 4)
            offs = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=self.gen)
            xb = torch.stack([padded[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(offs.tolist())])
        if self.flip:
            flip = torch.rand(n, generator=self.gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        return xb


def augmentation_for(data_name: str, input_shape: Sequence[int], choice: str) -> tuple[int, bool]:
    """(shift pad in pixels, flip) for ``--augment choice`` on this data (see module doc)."""
    h = int(input_shape[1])
    shift = {"digits": 2, "cifar10": 4}.get(data_name, max(1, h // 8))
    if choice == "none":
        return 0, False
    if choice == "shift":
        return shift, False
    if choice == "shift-flip":
        return shift, True
    return shift, data_name == "cifar10"  # auto


# ----------------------------------------------------------------------------- rebuilding

def rebuild_condensed(arch: Any, state_dict: dict[str, Tensor]) -> nn.Module:
    """The condensed model of ``arch`` with the structure that ``state_dict`` was saved from.

    ``condense_model(build_model(arch))``, then every ``IndexedGroupConv`` (the inference form of
    a learned op) is rebuilt from the saved shapes: its ``in_index`` / ``out_index`` buffers and
    the group count of its conv (``len(in_index) / weight.shape[1]``). Weights are not loaded.
    """
    from spaces.build import build_model, condense_model
    from spaces.ops.condense import IndexedGroupConv

    model = condense_model(build_model(arch))
    for name, module in list(model.named_modules()):
        if not isinstance(module, IndexedGroupConv):
            continue
        key = f"{name}." if name else ""
        in_index = state_dict.get(key + "in_index")
        weight = state_dict.get(key + "conv.weight")
        if in_index is None or weight is None:
            raise CliError(f"the weights lack {key}in_index / {key}conv.weight: they were not saved from "
                           "this architecture's condensed model")
        old = module.conv
        groups = len(in_index) // int(weight.shape[1])
        conv = nn.Conv2d(len(in_index), int(weight.shape[0]), old.kernel_size, old.stride,  # type: ignore[arg-type]
                         old.padding,  # type: ignore[arg-type]
                         groups=max(1, groups), bias=old.bias is not None)
        out_index = state_dict.get(key + "out_index")
        new = IndexedGroupConv(conv, in_index.clone(), None if out_index is None else out_index.clone(),
                               in_channels=module.in_channels)
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        setattr(parent, name.rsplit(".", 1)[-1], new)
    return model


def load_trained(out_dir: str | Path) -> nn.Module:
    """The trained condensed model saved by ``search.train`` in ``out_dir`` (eval mode)."""
    from spaces.arch import load_arch

    out = Path(out_dir)
    arch = load_arch(out / "arch.json")
    state = torch.load(out / "weights.pt", weights_only=True, map_location="cpu")
    model = rebuild_condensed(arch, state)
    model.load_state_dict(state)
    return model.eval()


# ----------------------------------------------------------------------------- command

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.train",
        description="Train an architecture (Arch JSON, e.g. from search.export) fully; save weights, "
                    "metrics and ONNX.",
        epilog="Writes DIR/weights.pt (state dict of the condensed model; torch.load(..., weights_only=True)), "
               "DIR/arch.json, DIR/metrics.json, DIR/model.onnx (dynamic batch; checked with onnxruntime, "
               "atol 1e-4 rtol 1e-3). Rebuild in Python: from search.train import load_trained; "
               "model = load_trained(DIR).")
    p.add_argument("arch", help="architecture JSON file (spaces.save_arch / search.export)")
    p.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (default, as search.run), digits (built in), cifar10, npz or folder")
    p.add_argument("--data-dir", default=None,
                   help="fashion-mnist idx folder, cifar-10-batches-py folder, the .npz file, or the image folder")
    p.add_argument("--data-limit", type=int, default=None, help="use at most this many examples (quick runs)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the one-cycle schedule (default 0.1)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size (default 64)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default 0)")
    p.add_argument("--augment", default="auto", choices=AUGMENT,
                   help="auto (default): shifts of 2 px for digits, crop+flip for cifar10, shifts of H/8 px "
                        "for npz; none; shift; shift-flip")
    p.add_argument("--out", default=None,
                   help="output folder (default: <folder of ARCH>/<ARCH stem>-trained, e.g. best.json -> "
                        "best-trained/)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier training in --out")
    p.add_argument("--seed", type=int, default=0, help="seed for the data split, weights and shuffling (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    p.add_argument("--latency-threads", type=int, default=1, help="threads for the latency figure (default 1)")
    p.add_argument("--latency-shape", default=None, metavar="CxHxW",
                   help="input the latency is timed at (default, as search.run: the data's channels x 224x224)")
    p.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=RUNTIMES,
                   help=f"latency runtime (default {DEFAULT_RUNTIME}, as search.run)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    return p


def _positive(name: str, value: Any) -> None:
    if value is not None and not value > 0:
        raise CliError(f"{name} must be positive, got {value}")


def _out_dir(args: argparse.Namespace) -> Path:
    arch_path = Path(args.arch)
    out = Path(args.out) if args.out else arch_path.parent / f"{arch_path.stem}-trained"
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; give a folder")
    if (out / "weights.pt").exists() and not args.overwrite:
        raise CliError(f"{out} already holds a trained model (weights.pt); pass --overwrite or another --out")
    return out


def _versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _progress(epochs: int, start: float) -> Any:
    def report(epoch: int, accuracy: float) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / epoch * (epochs - epoch)
        print(f"epoch {epoch:>3}/{epochs}  val accuracy {accuracy:.4f}  elapsed {elapsed:6.1f} s  "
              f"ETA {eta:6.1f} s", flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("epochs", "lr", "batch_size", "threads", "latency_threads", "data_limit"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if not 0.0 <= args.label_smoothing < 1.0:
        raise CliError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")

    from evaluators.cost import count_macs, count_params
    from evaluators.data import check_arch_data, load_data
    from evaluators.train_proxy import TrainingDiverged, evaluate, train
    from spaces.arch import load_arch, save_arch
    from spaces.build import build_model, learned_ops
    from spaces.limits import check_arch_limits

    from .onnx_export import check_parity, export_onnx

    arch = load_arch(args.arch)                        # ArchError: missing file, bad JSON, bad arch
    check_arch_limits(arch)                            # ArchError: too large to build, before any data
    out = _out_dir(args)
    timed_shape = latency_shape(args.latency_shape, arch.input_shape[0])  # CliError: not CxHxW
    data = load_data(args.data, args.data_dir, seed=args.seed, limit=args.data_limit)  # DataError
    check_arch_data(arch, data)                        # DataError: other input shape / class count
    out.mkdir(parents=True, exist_ok=True)

    model = build_model(arch, seed=args.seed)
    learned = bool(learned_ops(model))
    pad, flip = augmentation_for(data.name, data.input_shape, args.augment)
    view = ShiftAugmented(data.train.x, pad, flip, args.seed) if (pad or flip) else data.train.x
    train_data = _TrainView(data, view)
    print(f"training {args.arch} on {data.describe()}: {args.epochs} epochs, lr {args.lr}, batch "
          f"{args.batch_size}, augmentation: shift {pad} px{', flips' if flip else ''}"
          f"{', learned ops condensed at the end' if learned else ''}", flush=True)
    start = time.perf_counter()
    try:
        result = train(model, train_data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                       seed=args.seed, report=_progress(args.epochs, start), threads=args.threads,
                       label_smoothing=args.label_smoothing)
    except TrainingDiverged as err:
        raise CliError(f"training diverged: {err}") from None
    seconds = time.perf_counter() - start
    assert result.model is not None, "train() returns the trained model"
    final = result.model.cpu().eval()
    val_acc = evaluate(final, data.val.x, data.val.y)
    test_acc = evaluate(final, data.test.x, data.test.y)
    print(f"validation accuracy {val_acc:.4f}  held-out test accuracy {test_acc:.4f}  ({seconds:.1f} s)", flush=True)

    shape = tuple(arch.input_shape)
    weights = out / "weights.pt"
    torch.save(final.state_dict(), weights)
    save_arch(arch, out / "arch.json")
    from spaces import inference_model

    exporter = export_onnx(inference_model(final), shape, out / "model.onnx")  # the form a user ships
    parity = check_parity(final, out / "model.onnx", shape)
    print(f"ONNX parity with onnxruntime: max |diff| {parity.max_abs_diff:.2e} "
          f"(atol {parity.atol}, rtol {parity.rtol}, batches {list(parity.batches)})", flush=True)

    latency: dict[str, Any] | None = None
    if not args.no_latency:
        from .objective import latency_figures

        # as a trial times it: the inference form at the deployment shape and runtime
        timing = Settings(latency_shape=timed_shape, runtime=args.runtime, threads=args.latency_threads,
                          latency_seconds=1.0, seed=args.seed)
        lat = latency_figures(final, arch, timing, learned=learned)
        latency = {"median_ms": lat["latency_ms"], "iqr_ms": lat["latency_iqr_ms"], "threads": lat["threads"],
                   "batch": 1, "shape": lat["latency_shape"], "runtime": lat["latency_runtime"],
                   "memory_format": lat["memory_format"], "device": "cpu", "node": lat["node"],
                   "ref_ratio": lat["latency_ref_ratio"], "calibration": lat["latency_calibration"]}
    metrics = {
        "arch_file": str(Path(args.arch)), "data": data.name, "data_summary": data.describe(),
        "data_limit": args.data_limit, "seed": args.seed,
        "val_accuracy": val_acc, "test_accuracy": test_acc, "val_history": result.history,
        "params": int(count_params(final)), "macs": int(count_macs(final, shape)),
        "latency": latency, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
        "label_smoothing": args.label_smoothing, "augmentation": {"shift_px": pad, "flip": flip},
        "schedule": "one-cycle: linear warm-up 15% of steps, cosine decay to 0; SGD Nesterov 0.9, wd 5e-4",
        "seconds": seconds, "learned": learned, "condensed": learned,
        "onnx": {"file": "model.onnx", "exporter": exporter, "input": "input", "output": "logits",
                 "dynamic_axes": {"input": {"0": "batch"}, "logits": {"0": "batch"}}, "parity": parity.to_dict()},
        "weights": "weights.pt",
        "load": ("from search.train import load_trained; model = load_trained(DIR)  # rebuilds the condensed "
                 "structure from arch.json + the saved shapes, loads weights.pt (weights_only=True)"
                 if learned else
                 "from spaces import load_arch, build_model; m = build_model(load_arch('DIR/arch.json')); "
                 "m.load_state_dict(torch.load('DIR/weights.pt', weights_only=True)); m.eval()  "
                 "(or: from search.train import load_trained; load_trained(DIR))"),
        "versions": _versions(), "command": " ".join(sys.argv),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    lat_s = (f", latency {latency['median_ms']:.3f} ms at {'x'.join(map(str, latency['shape']))} on "
             f"{latency['runtime']} (batch 1, {latency['threads']} thread)") if latency else ""
    print(f"{metrics['params']:,} params, {metrics['macs']:,} MACs{lat_s}")
    print(f"wrote {weights}, {out / 'arch.json'}, {out / 'metrics.json'}, {out / 'model.onnx'}")
    return 0


class _TrainView:
    """``data`` with its training inputs replaced by an augmenting view (val/test untouched)."""

    def __init__(self, data: Any, x_train: Any) -> None:
        from evaluators.data import Split

        self._data = data
        self.train = Split(x_train, data.train.y)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)


if __name__ == "__main__":
    run_cli(main, prog="search.train")
