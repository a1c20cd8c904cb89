"""Operator families, one module each, all built through ``make_op``."""

from .registry import OPS, OpConfigError, make_op, op_param_schema, register_op, validate_op
from . import conv  # noqa: F401  (registers "conv")
from . import group  # noqa: F401  (registers "group")
from . import dwsep  # noqa: F401  (registers "dwsep")
from . import igc  # noqa: F401  (registers "igc")
from . import hetconv  # noqa: F401  (registers "hetconv")
from . import decomp  # noqa: F401  (registers "decomp")
from . import inception  # noqa: F401  (registers "inception" and "bottleneck")
from . import condense  # noqa: F401  (registers "condense")
from . import flgc  # noqa: F401  (registers "flgc")
from . import dgc  # noqa: F401  (registers "dgc")
from .base import LearnedOp

__all__ = ["OPS", "OpConfigError", "make_op", "op_param_schema", "register_op", "validate_op", "LearnedOp"]
