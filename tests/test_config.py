"""The configuration parser, fuzzed: any TOML file gives a valid Config or a VaelabError."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab import Config, VaelabError
from vaelab.config import FIELD_TYPES, make_config, read_toml

_values = st.one_of(
    # past every limit of Config (LIMITS) and past what torch's seeds take
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.integers(-5, 2**40), max_size=4),
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
            written = folder / "written.toml"  # and its config.toml reads back as the same
            written.write_text(config.to_toml())
            assert make_config(read_toml(written)) == config


UNREAD = [
    ({"latent_dim_2": 4}, "--latent-dim-2 and --hidden-2 are for --arch hvae2"),
    ({"hidden_2": [16]}, "--latent-dim-2 and --hidden-2 are for --arch hvae2"),
    ({"prior_components": 5}, "--prior-components is for --prior mog or vamp"),
    ({"logistic_components": 3}, "--logistic-components is for --likelihood logistic"),
    (
        {"logistic_components": 3, "likelihood": "bernoulli"},
        "--logistic-components is for --likelihood logistic",
    ),
    ({"kl_warmup": 5, "kl_schedule": "cyclical"}, "ignores --kl-warmup"),
]


@pytest.mark.parametrize("values, message", UNREAD)
def test_options_the_run_would_ignore_are_refused_in_one_line(values, message):
    with pytest.raises(VaelabError, match=re.escape(message)) as info:
        Config(**values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "values",
    [
        {"arch": "hvae2", "latent_dim_2": 4, "hidden_2": [16]},
        {"prior": "mog", "prior_components": 5},
        {"prior": "vamp", "prior_components": 5},
        {"likelihood": "logistic", "logistic_components": 3, "binarize": "none"},
        {"kl_warmup": 5},
        {"kl_schedule": "cyclical", "kl_cycles": 2},
    ],
)
def test_the_same_options_with_the_setting_that_reads_them_survive_a_saved_config(
    tmp_path, values
):
    config = Config(**values)
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())  # a finished run's config.toml: every field, defaults too
    assert make_config(read_toml(path)) == config


def test_an_array_as_data_is_one_short_line_saying_what_to_do():
    """train(Config(data=array)) printed the whole array in its message."""
    with pytest.raises(VaelabError) as raised:
        Config(data=np.zeros((5000, 784)))
    message = str(raised.value)
    assert "train(config, data=x)" in message and len(message) < 250 and "\n" not in message
    with pytest.raises(VaelabError, match=r"latent_dim must be of type int \(got a ndarray\)"):
        Config(latent_dim=np.arange(1000))
