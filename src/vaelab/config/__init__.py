"""Run configuration: one flat dataclass <- preset <- TOML file <- command-line flags.

``schema`` holds :class:`Config` (its fields, the choice tables, the checks, its TOML form);
``presets`` the named set-ups; ``loading`` reads a TOML file and assembles a ``Config`` from
a preset, a file and flags, in that order of precedence. The resolved configuration is
written to ``RUN/config.toml``; ``vaelab train --config RUN/config.toml`` re-runs it.
"""

from .loading import FIELD_TYPES, assemble, make_config, read_toml
from .presets import PRESETS, preset
from .schema import (
    CHOICES,
    CONV_ARCHS,
    DEFAULT_SPLIT,
    LIMITS,
    Config,
    binarization_for,
    default,
    parse_split,
)

__all__ = [
    "CHOICES",
    "CONV_ARCHS",
    "DEFAULT_SPLIT",
    "FIELD_TYPES",
    "LIMITS",
    "PRESETS",
    "Config",
    "assemble",
    "binarization_for",
    "default",
    "make_config",
    "parse_split",
    "preset",
    "read_toml",
]
