"""CondenseNet as ``Arch`` data.

- ``condensenet74`` (Huang, Liu, van der Maaten, Weinberger, CVPR 2018, Sec. 4 and Table 5:
  CondenseNet-74 with C = G = 4 has 4.8 M params and 529 M mult-adds, with C = G = 8 2.9 M and
  274 M): a 3x3 stride-2 stem with 2 x 8 channels, five dense stages of 4, 6, 8, 10, 8 layers
  with the exponentially increasing growth rates 8, 16, 32, 64, 128. Each layer is pre-activation
  BN-ReLU-learned group 1x1 (``condense`` with ``groups`` G and ``condense_factor`` C, to 4 x the
  growth rate) then BN-ReLU-3x3 group conv (G groups, to the growth rate), concatenated after its
  input. A 2x2 average pool between stages (no transition conv: the growth doubles instead), BN +
  ReLU after the last stage, global average pooling, the classifier. 74 = 2 x 36 layers + stem + fc.

Its cost is that of the condensed network (what inference runs): the learned 1x1 counts
C_out * C_in / C weights (``spaces.ops.condense``), also before it is condensed.
``width`` scales the growth rates (to multiples of G and C). For small inputs (H, W <= 64) the
CIFAR adaptation: a stride-1 stem, so 32x32 ends at 2x2.
"""

from __future__ import annotations

import math
from typing import Any

from .arch import Arch, ArchError, HeadSpec, LayerSpec
from .blocks import dense
from .widths import scale_width

__all__ = ["condensenet74", "CONDENSE_STAGES", "CONDENSE_GROWTH"]

CONDENSE_STAGES = (4, 6, 8, 10, 8)
CONDENSE_GROWTH = (8, 16, 32, 64, 128)


def condensenet74(input_shape=(3, 224, 224), num_classes=1000, width=1.0, *, groups: int = 4,
                  condense_factor: int = 4) -> Arch:
    for name, v in (("groups", groups), ("condense_factor", condense_factor)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArchError(f"condensenet74: option '{name}' must be a positive integer, got {v!r}")
    multiple = math.lcm(groups, condense_factor)
    growth = [scale_width(k, width, multiple) for k in CONDENSE_GROWTH]
    if any(k % multiple for k in growth):
        raise ArchError(f"condensenet74: growth rates {growth} must be multiples of groups={groups} and "
                        f"condense_factor={condense_factor}")
    small = max(input_shape[1:]) <= 64
    stem = LayerSpec("conv", 2 * growth[0], 3, 1 if small else 2)
    stages = []
    for i, (n, k) in enumerate(zip(CONDENSE_STAGES, growth)):
        last = i == len(CONDENSE_STAGES) - 1
        end: dict[str, Any] = {"norm": "bn", "act": "relu"} if last else {"pool": "avg"}
        stages.append(tuple(dense(k, groups, condense_factor, **(end if j == n - 1 else {})) for j in range(n)))
    return Arch(tuple(input_shape), num_classes, stem, tuple(stages), HeadSpec())
