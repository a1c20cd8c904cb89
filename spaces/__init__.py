"""Search spaces over grouping configurations of CNN layers, and the ops they draw from."""

from .ops import OPS, LearnedOp, OpConfigError, make_op, validate_op
from .arch import Arch, ArchError, BlockSpec, HeadSpec, LayerSpec, load_arch, save_arch
from .limits import DEFAULT_LIMITS, check_arch_limits
from .build import build_model, condense_model
from .backbones import BACKBONES, get_backbone
from .space import Space, SpaceError, Family
from .catalog import SPACES, get_space, register_space
from .inference import INFERENCE_FORM_VERSION, inference_model

__all__ = [
    "OPS", "LearnedOp", "OpConfigError", "make_op", "validate_op",
    "Arch", "ArchError", "BlockSpec", "HeadSpec", "LayerSpec", "load_arch", "save_arch",
    "DEFAULT_LIMITS", "check_arch_limits", "build_model", "condense_model", "inference_model", "INFERENCE_FORM_VERSION",
    "BACKBONES", "get_backbone",
    "Space", "SpaceError", "Family", "SPACES", "get_space", "register_space",
]
