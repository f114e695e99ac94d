"""Run configuration: one flat dataclass <- TOML file <- command-line overrides.

The resolved configuration is written to ``RUN/config.toml``; passing that file back with
``vaelab train --config RUN/config.toml`` re-runs the same experiment.

The modules, in the order a configuration is made: ``schema`` (the :class:`Config` dataclass:
its fields, the choice tables, the checks and its own TOML form) and ``loading`` (a TOML file
read into a dict, then the ``Config`` built from it and the overrides). Every name is
importable from ``vaelab.config`` itself.
"""

from .loading import FIELD_TYPES, make_config, read_toml
from .schema import CHOICES, CONV_ARCHS, Config
from .schema import _check_type as _check_type
from .schema import _toml_value as _toml_value

__all__ = ["CHOICES", "CONV_ARCHS", "FIELD_TYPES", "Config", "make_config", "read_toml"]
