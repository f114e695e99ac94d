"""The KL weight's schedules: linear warm-up and cyclical annealing."""

from __future__ import annotations

import pytest

from vaelab.config import Config
from vaelab.errors import VaelabError
from vaelab.training.schedules import cyclical, kl_weight


def test_cyclical_ramps_over_the_first_half_of_each_cycle():
    values = [cyclical(t / 16, cycles=4) for t in range(16)]
    # 4 steps per cycle: 0, 0.5, 1, 1 (ramp over R = 0.5 of the cycle), four times
    assert values == [0.0, 0.5, 1.0, 1.0] * 4


def test_kl_weight_cyclical_scales_beta_over_the_run_epochs():
    config = Config(epochs=8, beta=2.0, kl_schedule="cyclical", kl_cycles=2)
    # cycle of 4 epochs, ramp over its first 2
    assert [kl_weight(config, e) for e in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)] == [
        0.0, 1.0, 2.0, 2.0, 0.0, 1.0,
    ]  # fmt: skip


def test_cyclical_with_a_time_budget_and_negative_free_bits_are_refused():
    with pytest.raises(VaelabError, match="cyclical"):
        Config(kl_schedule="cyclical", minutes=5.0)
    with pytest.raises(VaelabError, match="free_bits"):
        Config(free_bits=-1.0)
    with pytest.raises(VaelabError, match="free-bits"):
        Config(free_bits=0.5, objective="iwae")
