"""Data handed to :func:`vaelab.train` in memory: a NumPy array, a torch tensor, an ``(x, y)``
pair of them, or a map-style ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, y)``.

``x`` has the shape of an array file's, ``(N, ...)``: ``(N, H, W)`` and ``(N, C, H, W)`` are
images in [0, 1] (or uint8), other shapes vectors of real values; ``y``, integer labels
``(N,)``. A run keeps such data as ``RUN/data.npz`` and names it :data:`IN_RUN` in its
configuration, so that it is resumed, scored and explored from its folder alone, read by the
same reader as any ``.npz`` a user gives.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from ..errors import VaelabError

RUN_DATA = "data.npz"  # the file in the run folder
IN_RUN = "run:" + RUN_DATA  # Config.data of a run whose data came in memory

ACCEPTED = "a NumPy array, a torch tensor, an (x, y) pair of them, or a torch Dataset"


def npz_bytes(data) -> bytes:
    """``data`` as the bytes of an ``.npz`` archive holding ``x`` (and ``y`` when labelled)."""
    x, y = _arrays(data)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, **({} if y is None else {"y": y}))
    return buffer.getvalue()


def _arrays(data) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(data, torch.utils.data.Dataset):
        return _from_dataset(data)
    if isinstance(data, tuple) and len(data) == 2:
        return _array(data[0], "x"), _array(data[1], "y")
    return _array(data, "x"), None


def _array(value, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise VaelabError(f"train(data=...) takes {ACCEPTED}; its {what} is a {type(value).__name__}")


def _from_dataset(dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """Every item of a map-style dataset, stacked: ``x`` items as they are, ``(x, y)`` items
    split into examples and labels."""
    try:
        n = len(dataset)
    except TypeError:
        raise VaelabError(
            "train(data=...) takes a map-style torch Dataset (with __len__); collect an "
            "iterable dataset into a tensor first"
        ) from None
    items = [dataset[i] for i in range(n)]
    if not items:
        raise VaelabError("the torch Dataset given to train(data=...) is empty")
    pairs = [isinstance(item, (tuple, list)) for item in items]
    if any(pairs) and not all(p and len(item) == 2 for p, item in zip(pairs, items, strict=True)):
        raise VaelabError(
            "a torch Dataset's items must all be x, or all be (x, y) pairs with an integer "
            "label y; return one of the two from __getitem__"
        )
    if not any(pairs):
        return np.stack([_array(item, "x") for item in items]), None
    x = np.stack([_array(item[0], "x") for item in items])
    y = np.array([_scalar(item[1]) for item in items])  # its integers are checked on reading
    return x, y


def _scalar(label):
    value = np.asarray(_array(label, "y") if isinstance(label, torch.Tensor) else label)
    if value.size != 1:
        raise VaelabError(
            f"a torch Dataset's label y must be one number per example, got shape {value.shape}"
        )
    return value.reshape(()).item()
