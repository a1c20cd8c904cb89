"""The BN + ReLU that papers put between the parts of a composite op, and its inference form.

MobileNet (Howard et al. 2017, Fig. 3) puts BN + ReLU between the depthwise and the pointwise
conv; Inception v3 (Szegedy et al., CVPR 2016, Sec. 3.1 and Fig. 2) measured ReLU between the
factorised convs better than a linear composition and has BN after every conv; GoogLeNet
(Szegedy et al., CVPR 2015, Sec. 4 and Fig. 2b) and ResNet's bottleneck (He et al., CVPR 2016,
Fig. 5) follow every 1x1 reduction with ReLU (BN + ReLU). An op with ``linear=True`` leaves
them out (Xception, Chollet, CVPR 2017, Sec. 4.7 and Fig. 10: no intermediate activation).

``norm_act(c, linear)``: ``[BatchNorm2d(c), ReLU]``, or ``[]`` when linear. BN and ReLU count no
MACs (as in the papers and ``torch.utils.flop_counter``); a BN adds 2 c parameters.
``fold_chain(modules, bn)``: the eval-mode inference form of a chain of convs with inner BNs:
each conv + BN pair becomes one conv with bias, and ``bn`` (the layer's BN after the op, if
any) folds into the last conv. An op keeps its chain in an ``nn.Sequential``, so that
``spaces.inference`` folds the inner BNs also when the layer has no BN of its own.
"""

from __future__ import annotations

import copy
from typing import Iterable

from torch import nn

__all__ = ["norm_act", "fold_chain"]


def norm_act(channels: int, linear: bool) -> list[nn.Module]:
    """The paper's BN + ReLU between two parts of an op (none when ``linear``)."""
    return [] if linear else [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def fold_chain(modules: Iterable[nn.Module], bn: nn.BatchNorm2d | None = None) -> nn.Sequential:
    """Copies of ``modules`` with every conv + BN pair folded; ``bn`` folded into the last conv."""
    from ..fold import fold_conv_bn

    out: list[nn.Module] = []
    for m in modules:
        m = copy.deepcopy(m).requires_grad_(False)
        if isinstance(m, nn.BatchNorm2d) and out and isinstance(out[-1], nn.Conv2d):
            out[-1] = fold_conv_bn(out[-1], m)
        else:
            out.append(m)
    if bn is not None:
        if not isinstance(out[-1], nn.Conv2d):  # pragma: no cover - every op's chain ends in a conv
            raise TypeError("fold_chain: the chain must end in a convolution to take the BN")
        out[-1] = fold_conv_bn(out[-1], bn)
    return nn.Sequential(*out)
