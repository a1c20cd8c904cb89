"""Size limits checked before a network is built: ``check_arch_limits``.

An ``Arch`` may be valid and still take the machine down (out_channels 10^9, 10,000 layers, a
3 x 100000 x 100000 input). ``build_model`` first checks three estimates, all from the shapes
alone (nothing is allocated):

- params: at most the dense figure of every layer, sum of C_out * C_in * K^2 over the stem,
  main-path, branch and projection layers (grouped ops have fewer);
- activation bytes: float32 elements of the input and of every layer output at batch 1 (what
  one training step keeps for backward, before the batch factor);
- layers: the number of layers in the walk.

The defaults are stated here (``DEFAULT_LIMITS``) and each call may pass its own.
"""

from __future__ import annotations

from .arch import Arch, ArchError

__all__ = ["DEFAULT_LIMITS", "check_arch_limits", "estimate_params", "estimate_activation_bytes"]

DEFAULT_LIMITS = {
    "max_params": 2_000_000_000,  # 8 GB of float32 weights
    "max_activation_bytes": 8 * 1024 ** 3,  # 8 GiB at batch 1
    "max_layers": 4096,
}


def estimate_params(arch: Arch) -> int:
    """An upper bound on the params: every layer priced as a dense conv (C_out C_in K^2)."""
    return sum(cout * shape[0] * k * k for shape, cout, k in arch._walk.all_layers)


def estimate_activation_bytes(arch: Arch) -> int:
    """float32 bytes of the input and every layer output at batch 1."""
    return 4 * arch._walk.activations


def check_arch_limits(arch: Arch, *, max_params: int = DEFAULT_LIMITS["max_params"],
                      max_activation_bytes: int = DEFAULT_LIMITS["max_activation_bytes"],
                      max_layers: int = DEFAULT_LIMITS["max_layers"]) -> None:
    """``ArchError`` when an estimate exceeds its limit; the message gives both numbers."""
    if not isinstance(arch, Arch):
        raise TypeError(f"check_arch_limits expects an Arch, got {type(arch).__name__}")
    n_layers = len(arch._walk.all_layers)
    if n_layers > max_layers:
        raise ArchError(f"arch: {n_layers} layers exceed the limit of {max_layers} (max_layers)")
    params = estimate_params(arch)
    if params > max_params:
        raise ArchError(f"arch: about {params:.3g} parameters exceed the limit of {max_params:.3g} "
                        "(max_params); reduce out_channels or kernel sizes")
    act = estimate_activation_bytes(arch)
    if act > max_activation_bytes:
        raise ArchError(f"arch: about {act / 1024 ** 3:.3g} GiB of activations at batch 1 exceed the limit of "
                        f"{max_activation_bytes / 1024 ** 3:.3g} GiB (max_activation_bytes); "
                        f"reduce the input {arch.input_shape} or the widths")
