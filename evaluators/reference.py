"""The fixed reference network that every latency is timed against (``evaluators.interleave``).

A plain, deterministic, fully convolutional CNN of the same op mix and depth as the search
spaces' small backbone (3x3 convs with BatchNorm and ReLU, two stride-2 stages, a 1x1 and a
depthwise conv, global average pooling, a linear head): its cost scales with the input size
like the candidates' do, so ``t_candidate / t_reference`` stays near 1 at every size and both
see the same kind of interference. It is built from plain ``torch.nn`` (never from
``spaces``), so a change of the search spaces never changes the yardstick;
``REFERENCE_NAME`` names its version and is part of every calibration key.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["REFERENCE_NAME", "reference_network"]

REFERENCE_NAME = "ref-v1"


def _cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def reference_network(input_shape: tuple[int, int, int], num_classes: int = 10) -> nn.Module:
    """The reference for inputs of ``input_shape`` (C, H, W), eval mode, weights from seed 0."""
    c = int(input_shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(
            *_cbr(c, 16, 3), *_cbr(16, 32, 3, 2), *_cbr(32, 32, 3), *_cbr(32, 64, 3, 2),
            *_cbr(64, 64, 1), *_cbr(64, 64, 3, groups=64),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
        for m in net.modules():  # non-trivial BN statistics, as a trained net has
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()
