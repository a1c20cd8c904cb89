"""Search spaces over grouping configurations of CNN layers, and the ops they draw from."""

from .ops import OPS, LearnedOp, OpConfigError, make_op, validate_op
from .arch import Arch, ArchError, HeadSpec, LayerSpec, load_arch, save_arch
from .build import build_model, condense_model
from .backbones import BACKBONES, get_backbone

__all__ = [
    "OPS", "LearnedOp", "OpConfigError", "make_op", "validate_op",
    "Arch", "ArchError", "HeadSpec", "LayerSpec", "load_arch", "save_arch",
    "build_model", "condense_model", "BACKBONES", "get_backbone", "inference_model",
]
from .space import Space, SpaceError, Family  # noqa: E402  (search spaces, issue 4)
from .catalog import SPACES, get_space, register_space  # noqa: E402
from .inference import inference_model  # noqa: E402  (issue 16)
