"""The backbones against their papers' tables, against ``torch.utils.flop_counter``, and at CIFAR size.

Tolerance for a paper's figure: 2 % plus half a unit of the last digit the paper prints (a
table that says 3.4 M was rounded to 0.1 M). Params are every parameter, BatchNorm included.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from evaluators.cost import count_macs, count_params
from spaces import BACKBONES, build_model, get_backbone

torch.set_num_threads(1)

IMAGENET = (3, 224, 224)

# (backbone, options, input, classes, params (M, paper's digits) or None, MACs (M) or None, source)
PAPER = [
    ("resnet20", {}, (3, 32, 32), 10, "0.27", None, "He et al. CVPR 2016, Table 6: 0.27 M"),
    ("resnet18", {}, IMAGENET, 1000, None, "1800", "He et al. Table 1: 1.8 x 10^9 FLOPs"),
    ("resnet50", {"stride_on_1x1": True}, IMAGENET, 1000, None, "3800", "He et al. Table 1: 3.8 x 10^9"),
    ("resnet50", {}, IMAGENET, 1000, "25.5", "4100", "Xie et al. CVPR 2017 (ResNeXt) Table 1: 4.1 x 10^9, 25.5 M"),
    ("resnext50", {}, IMAGENET, 1000, "25.0", "4200", "Xie et al. Table 1: 32x4d 4.2 x 10^9, 25.0 M"),
    ("mobilenet_v1", {}, IMAGENET, 1000, "4.2", "569", "Howard et al. 2017 Table 8: 569 M mult-adds, 4.2 M"),
    ("mobilenet_v2", {}, IMAGENET, 1000, "3.4", "300", "Sandler et al. CVPR 2018 Table 4: 300 M MAdds, 3.4 M"),
    ("shufflenet_v1", {"groups": 1}, IMAGENET, 1000, None, "143", "Zhang et al. CVPR 2018 Table 2: 1x g=1 143 M"),
    ("shufflenet_v1", {"groups": 2}, IMAGENET, 1000, None, "140", "Table 2: 1x g=2 140 M"),
    ("shufflenet_v1", {"groups": 3}, IMAGENET, 1000, None, "140", "Table 2: 1x g=3 140 M"),
    ("shufflenet_v1", {"groups": 4}, IMAGENET, 1000, None, "137", "Table 2: 1x g=4 137 M"),
    ("shufflenet_v2", {}, IMAGENET, 1000, "2.3", "146", "Ma et al. ECCV 2018 Table 5: 1x 146 M, 2.3 M"),
    ("mobilefacenet", {}, (3, 112, 112), 128, "0.99", "221", "Chen et al. CCBR 2018 (MobileFaceNets): 0.99 M, 221 M"),
]


def _close(value: float, paper: str) -> bool:
    digits = len(paper.split(".")[1]) if "." in paper else 0
    ref = float(paper)
    return abs(value - ref) <= 0.02 * ref + 0.5 * 10 ** -digits


def flop_counter_macs(model: nn.Module, input_shape) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name, options, shape, classes, params, macs, source", PAPER,
                         ids=[f"{p[0]}{p[1] or ''}" for p in PAPER])
def test_params_and_macs_match_the_paper(name, options, shape, classes, params, macs, source):
    model = build_model(get_backbone(name, shape, classes, **options))
    counted = count_macs(model, shape)
    if params is not None:
        assert _close(count_params(model) / 1e6, params), (source, count_params(model))
    if macs is not None:
        assert _close(counted / 1e6, macs), (source, counted)


def test_shufflenet_v1_g8_is_within_4_percent_of_table_2():
    """Table 2 gives 133 M for g = 8; the Table 1 widths (384, 768, 1536) give 138.4 M here, as in
    other re-implementations: the one figure we do not match within 2 %."""
    macs = count_macs(build_model(get_backbone("shufflenet_v1", IMAGENET, 1000, groups=8)), IMAGENET)
    assert abs(macs / 1e6 - 133) <= 0.045 * 133


@pytest.mark.parametrize("name", list(BACKBONES))
def test_count_macs_matches_flop_counter_and_numel_at_cifar_size(name):
    shape = (3, 32, 32)
    model = build_model(get_backbone(name, shape, 10)).train()
    assert count_macs(model, shape) == flop_counter_macs(model, shape)
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2", "resnext50"])
def test_count_macs_matches_flop_counter_at_imagenet_size(name):
    model = build_model(get_backbone(name, IMAGENET, 1000))
    assert count_macs(model, IMAGENET) == flop_counter_macs(model, IMAGENET)


def test_cifar_adaptations_end_where_the_papers_say():
    """ResNet-20 ends at 8x8 with 64 channels (He et al. Sec. 4.2); the ImageNet nets keep their
    strides after a stride-1 stem without pool: 4x4 for ResNet / ShuffleNet / MobileNetV2, 2x2 v1."""
    ends = {"resnet20": (64, 8, 8), "resnet18": (512, 4, 4), "resnet50": (2048, 4, 4), "resnext50": (2048, 4, 4),
            "mobilenet_v1": (1024, 2, 2), "mobilenet_v2": (1280, 4, 4), "shufflenet_v1": (960, 4, 4),
            "shufflenet_v2": (1024, 4, 4), "mobilefacenet": (512, 4, 4)}
    for name, end in ends.items():
        assert get_backbone(name, (3, 32, 32), 10).feature_shapes()[-1] == end, name
    assert get_backbone("resnet50", IMAGENET, 1000).feature_shapes()[0] == (64, 56, 56)  # 7x7 s2 + max pool


def test_widths_and_options():
    assert get_backbone("resnet20", (3, 32, 32), 10, n=5).layers.__len__() == 30  # ResNet-32: 6n + 2
    narrow = get_backbone("mobilenet_v2", (3, 32, 32), 10, width=0.5)
    assert all(l.out_channels % 8 == 0 for l in narrow.layers)
    assert get_backbone("shufflenet_v2", IMAGENET, 1000, width=0.5).feature_shapes()[-1][0] == 1024
    with pytest.raises(ValueError, match="has no option 'grops'.*groups"):
        get_backbone("shufflenet_v1", grops=3)
    with pytest.raises(ValueError, match="groups"):
        get_backbone("shufflenet_v1", groups=5)


@pytest.mark.parametrize("name", ["shufflenet_v1", "shufflenet_v2", "mobilefacenet", "resnet20"])
def test_blocks_export_to_onnx_with_parity(name):
    """Split, concat, the average-pooled shortcut, shuffles, PReLU and GDC export and agree under onnxruntime."""
    import io
    import warnings

    import onnxruntime as ort

    model = build_model(get_backbone(name, (3, 32, 32), 10)).eval()
    x = torch.randn(2, 3, 32, 32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, buf, input_names=["x"], output_names=["y"], dynamo=False)
    y = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(y), model(x), atol=1e-4)
