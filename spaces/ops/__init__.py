"""Operator families, one module each, all built through ``make_op``."""

from .registry import OPS, OpConfigError, make_op, op_param_schema, register_op, validate_op
from . import conv  # noqa: F401  (registers "conv")
from .base import LearnedOp

__all__ = ["OPS", "OpConfigError", "make_op", "op_param_schema", "register_op", "validate_op", "LearnedOp"]
