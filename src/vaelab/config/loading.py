"""Reading a run configuration: a flat TOML file -> dict -> :class:`Config`.

``read_toml`` reads the file (an unknown key is an error, not ignored); ``make_config`` lays
keyword overrides (``None``: not given) over those values and builds the :class:`Config`,
which validates itself; ``assemble`` does both for a preset, a file and flags.
``FIELD_TYPES`` maps each field's name to its type's name.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from ..errors import VaelabError
from .presets import preset
from .schema import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Config)}
MAX_TOML_BYTES = 1 << 20


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML file of config keys; unknown keys are an error, not ignored."""
    path = Path(path)
    if path.exists() and not path.is_file():  # /dev/zero, a FIFO, a folder: no config file
        raise VaelabError(f"config file {path} is not a regular file; give a .toml file")
    if path.is_file() and path.stat().st_size > MAX_TOML_BYTES:
        raise VaelabError(
            f"config file {path} is over 1 MiB; a run's configuration is a few lines"
        )
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise VaelabError(f"config file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VaelabError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise VaelabError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        raise VaelabError(
            f"config file {path} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(FIELD_TYPES)}"
        )
    return values


def make_config(base: dict[str, Any] | None = None, **overrides: Any) -> Config:
    """``Config`` from a dict of file values, then keyword overrides (``None`` = not given)."""
    values = dict(base or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        raise VaelabError(f"unknown configuration key(s): {', '.join(map(repr, unknown))}")
    if isinstance(values.get("lr"), int) and not isinstance(values.get("lr"), bool):
        values["lr"] = float(values["lr"])
    for key in ("beta", "sigma", "minutes", "adam_eps", "tc_beta", "factor_gamma", "free_bits"):
        if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
            values[key] = float(values[key])
    return Config(**values)


def assemble(
    preset_name: str | None = None,
    toml_path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
) -> Config:
    """The run's :class:`Config`: the preset's values, overridden by the TOML file's, overridden
    by ``flags`` (field name -> value, ``None`` for a flag not given)."""
    values = preset(preset_name) if preset_name else {}
    if toml_path:
        values.update(read_toml(toml_path))
    return make_config(values, **(flags or {}))
