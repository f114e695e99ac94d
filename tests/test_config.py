"""The configuration parser, fuzzed: any TOML file gives a valid Config or a VaelabError."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab import Config, VaelabError
from vaelab.config import FIELD_TYPES, make_config, read_toml

_values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.integers(-5, 1000), max_size=4),
)
_keys = st.one_of(st.sampled_from(sorted(FIELD_TYPES)), st.text(min_size=1, max_size=10))


def _toml(table: dict) -> str:
    lines = []
    for key, value in table.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
        else:
            text = json.dumps(value)  # strings and lists of ints are valid TOML this way
        lines.append(f"{json.dumps(key)} = {text}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(table=st.dictionaries(_keys, _values, max_size=6), noise=st.binary(max_size=40))
def test_any_toml_file_gives_a_config_or_a_vaelab_error(tmp_path_factory, table, noise):
    folder = tmp_path_factory.mktemp("cfg")
    for name, content in (("table.toml", _toml(table).encode()), ("noise.toml", noise)):
        path = folder / name
        path.write_bytes(content)
        try:
            config = make_config(read_toml(path))
        except VaelabError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert isinstance(config, Config)
            config.validate()  # what was accepted is valid
