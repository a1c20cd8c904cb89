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
from spaces import BACKBONES, build_model, condense_model, get_backbone

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
    ("shufflenet_v1", {"groups": 1}, IMAGENET, 1000, None, "143",
     "Zhang et al. CVPR 2018 Table 1, complexity row: 1x g=1 143 M"),
    ("shufflenet_v1", {"groups": 2}, IMAGENET, 1000, None, "140", "Table 1: 1x g=2 140 M"),
    ("shufflenet_v1", {"groups": 3}, IMAGENET, 1000, None, "137", "Table 1: 1x g=3 137 M"),
    ("shufflenet_v1", {"groups": 4}, IMAGENET, 1000, None, "133", "Table 1: 1x g=4 133 M"),
    ("shufflenet_v1", {"groups": 8}, IMAGENET, 1000, None, "137", "Table 1: 1x g=8 137 M"),
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


# (L, M, grow, params (M) as printed, which params it counts, MACs (G) as printed)
IGC_ROWS = [(100, 2, "L", "8.61", "all", "1.3"), (4, 32, "M", "11.205", "convs", "1.9"),
            (16, 16, "M", "11.329", "convs", "2.2")]


@pytest.mark.parametrize("L, M, grow, params, counts, macs", IGC_ROWS, ids=[f"L{r[0]}M{r[1]}" for r in IGC_ROWS])
def test_igc_resnet18_matches_the_imagenet_table(L, M, grow, params, counts, macs):
    """Zhang et al. ICCV 2017 (IGC), the ImageNet table (ResNet-18 layout; layouts of the authors'
    released models): IGC-L100M2+Ident. 8.61 M, 1.3 x 10^9 FLOPs (the default); IGC-L4M32+Ident.
    11.205 M, 1.9 x 10^9; IGC-L16M16+Ident. 11.329 M, 2.2 x 10^9. The L100M2 row counts the whole
    net (8.608 M without BN, 8.638 M with it: compared); the two others leave out the classifier
    (1024 or 2048 x 1000 + 1000) and BN, so for them count_params minus those is compared
    (11.207 M, 11.441 M). MACs: count_macs of the whole net against the table's rounded figure."""
    model = build_model(get_backbone("igc_resnet18", IMAGENET, 1000, L=L, M=M, grow=grow))
    counted = count_params(model)
    if counts == "convs":
        counted -= sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
        counted -= sum(p.numel() for p in model.head.fc.parameters())
    assert _close(counted / 1e6, params), counted
    assert _close(count_macs(model, IMAGENET) / 1e9, macs)


def authors_ops(model: nn.Module, shape) -> tuple[int, int]:
    """(params, ops) of a condensed CondenseNet as the authors' ``utils.measure_model`` counts its
    converted model: our ``count_params`` / ``count_macs``, the classifier on half of its inputs
    (their converted net's ``CondenseLinear(..., 0.5)``; our head keeps all, so half of its
    weights and their MACs come off), its bias adds, and one op per input element of every ReLU
    and pool (their counter counts those; ``count_macs`` does not)."""
    extra = [0]

    def hook(module, inputs, output):
        extra[0] += inputs[0].numel()
    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, (nn.ReLU, nn.AvgPool2d, nn.AdaptiveAvgPool2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    fc = model.head.fc
    half = fc.weight.numel() // 2
    return count_params(model) - half, count_macs(model, shape) - half + fc.out_features + extra[0]


@pytest.mark.parametrize("c, params, ops", [(4, "4.8", "529"), (8, "2.9", "274")])
def test_condensenet74_condensed_matches_table_5(c, params, ops):
    """Huang et al. CVPR 2018, Table 5: CondenseNet-74 (C = G = 4) 4.8 M params, 529 M FLOPs;
    (C = G = 8) 2.9 M, 274 M. Compared: the condensed network (``condense_model``: what inference
    runs), counted as the authors do (``authors_ops``). Without their extras, count_macs gives
    517.7 M and 262.6 M (the convolutions and the full classifier)."""
    model = condense_model(build_model(get_backbone("condensenet74", IMAGENET, 1000, groups=c, condense_factor=c)))
    assert count_params(model) == count_params(build_model(get_backbone(
        "condensenet74", IMAGENET, 1000, groups=c, condense_factor=c)))  # learned ops report condensed cost
    counted_params, counted_ops = authors_ops(model, IMAGENET)
    assert _close(counted_params / 1e6, params), counted_params
    assert _close(counted_ops / 1e6, ops), counted_ops


def test_condensenet74_layout():
    """Stages of 4, 6, 8, 10, 8 dense layers with growth 8, 16, 32, 64, 128 from a 16-channel
    stem: 16 + 32 + 96 + 256 + 640 + 1024 = 2064 channels at 7x7; each layer a learned 1x1 to 4 x
    growth and a G-group 3x3, both pre-activation; average pools between stages."""
    arch = get_backbone("condensenet74", IMAGENET, 1000)
    assert [len(s) for s in arch.stages] == [4, 6, 8, 10, 8]
    assert arch.feature_shapes()[0] == (16, 112, 112) and arch.feature_shapes()[-1] == (2064, 7, 7)
    assert 2 * len(arch.blocks) + 2 == 74
    for stage, k in zip(arch.stages, (8, 16, 32, 64, 128)):
        for b in stage:
            one, three = b.layers
            assert (one.op, one.out_channels, one.kernel_size, one.p) == (
                "condense", 4 * k, 1, {"groups": 4, "condense_factor": 4})
            assert (three.op, three.out_channels, three.kernel_size, three.p["groups"]) == ("group", k, 3, 4)
            assert one.preact and three.preact and (b.shortcut, b.combine) == ("identity", "concat")
    assert [s[-1].pool for s in arch.stages] == ["avg"] * 4 + ["none"]
    assert (arch.blocks[-1].norm, arch.blocks[-1].act) == ("bn", "relu")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_count_macs_matches_flop_counter_and_numel_at_cifar_size(name):
    """On the condensed network (learned ops as inference runs them; no-op for the others)."""
    shape = (3, 32, 32)
    model = condense_model(build_model(get_backbone(name, shape, 10))).train()
    assert count_macs(model, shape) == flop_counter_macs(model, shape)
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2", "resnext50", "condensenet74", "igc_resnet18"])
def test_count_macs_matches_flop_counter_at_imagenet_size(name):
    model = condense_model(build_model(get_backbone(name, IMAGENET, 1000)))
    assert count_macs(model, IMAGENET) == flop_counter_macs(model, IMAGENET)


def test_cifar_adaptations_end_where_the_papers_say():
    """ResNet-20 ends at 8x8 with 64 channels (He et al. Sec. 4.2); the ImageNet nets keep their
    strides after a stride-1 stem without pool: 4x4 for ResNet / ShuffleNet / MobileNetV2, 2x2 v1."""
    ends = {"resnet20": (64, 8, 8), "resnet18": (512, 4, 4), "resnet50": (2048, 4, 4), "resnext50": (2048, 4, 4),
            "mobilenet_v1": (1024, 2, 2), "mobilenet_v2": (1280, 4, 4), "shufflenet_v1": (960, 4, 4),
            "shufflenet_v2": (1024, 4, 4), "mobilefacenet": (512, 4, 4), "igc_resnet18": (1600, 4, 4),
            "condensenet74": (2064, 2, 2)}  # CondenseNet: stride-1 stem, four 2x2 average pools
    for name, end in ends.items():
        assert get_backbone(name, (3, 32, 32), 10).feature_shapes()[-1] == end, name
    assert get_backbone("resnet50", IMAGENET, 1000).feature_shapes()[0] == (64, 56, 56)  # 7x7 s2 + max pool
    assert get_backbone("igc_resnet18", IMAGENET, 1000).feature_shapes()[0] == (100, 56, 56)
    assert get_backbone("condensenet74", (3, 32, 32), 10).stem.stride == 1


def test_igc_resnet18_layout():
    """IGC-L100M2 (the authors' released model): a 100-channel stem, stages of 200, 400, 800, 1600
    channels with L = 100, 200, 400, 800 and M = 2; every 3x3 an IGC; a projection with L groups
    where the width changes (also at stage 1's entry, 100 -> 200). grow="M": L4M32 keeps L = 4."""
    arch = get_backbone("igc_resnet18", IMAGENET, 1000)
    assert [s[0].layers[0].p for s in arch.stages] == [{"L": 100 << i, "M": 2} for i in range(4)]
    assert [(b.shortcut, b.proj_groups) for b in arch.blocks] == [("projection", 100 << i // 2) if i % 2 == 0
                                                                  else ("identity", 1) for i in range(8)]
    assert all(l.op == "igc" and l.kernel_size == 3 for l in arch.layers)
    m = get_backbone("igc_resnet18", IMAGENET, 1000, L=4, M=32, grow="M")
    assert m.stem.out_channels == 128 and [b.shortcut for b in m.blocks][:2] == ["identity", "identity"]
    assert [s[0].layers[0].p for s in m.stages] == [{"L": 4, "M": 32 << i} for i in range(4)]
    assert m.stages[1][0].proj_groups == 4


def test_widths_and_options():
    assert get_backbone("resnet20", (3, 32, 32), 10, n=5).layers.__len__() == 30  # ResNet-32: 6n + 2
    narrow = get_backbone("mobilenet_v2", (3, 32, 32), 10, width=0.5)
    assert all(l.out_channels % 8 == 0 for l in narrow.layers)
    assert get_backbone("shufflenet_v2", IMAGENET, 1000, width=0.5).feature_shapes()[-1][0] == 1024
    with pytest.raises(ValueError, match="has no option 'grops'.*groups"):
        get_backbone("shufflenet_v1", grops=3)
    with pytest.raises(ValueError, match="groups"):
        get_backbone("shufflenet_v1", groups=5)
    assert get_backbone("igc_resnet18", (3, 32, 32), 10, width=0.5).stages[0][0].layers[0].p == {"L": 50, "M": 2}
    assert get_backbone("condensenet74", (3, 32, 32), 10, width=0.5).feature_shapes()[0] == (8, 32, 32)
    with pytest.raises(ValueError, match="grow"):
        get_backbone("igc_resnet18", grow="N")
    with pytest.raises(ValueError, match="condense_factor"):
        get_backbone("condensenet74", condense_factor=0)
    with pytest.raises(ValueError, match="multiples of groups=16"):
        get_backbone("condensenet74", groups=16)


@pytest.mark.parametrize("name", ["shufflenet_v1", "shufflenet_v2", "mobilefacenet", "resnet20", "condensenet74",
                                  "igc_resnet18"])
def test_blocks_export_to_onnx_with_parity(name):
    """Split, concat, the average-pooled shortcut, shuffles, PReLU, GDC, dense blocks with block
    pools and norms, and grouped projections export and agree under onnxruntime."""
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
