"""The standard error every estimate here is reported with."""

from __future__ import annotations

import math

import torch


def standard_error(values: torch.Tensor) -> float:
    """The standard error of the mean of ``values`` ``(n,)``: std / sqrt(n), the unbiased
    sample standard deviation (NaN for fewer than two values)."""
    n = len(values)
    return (values.std() / math.sqrt(n)).item() if n > 1 else math.nan
