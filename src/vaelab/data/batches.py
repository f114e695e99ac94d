"""One epoch of shuffled training batches, on the device the model trains on."""

from __future__ import annotations

import torch

from .binarization import binarize
from .stream import StreamSplit


def epoch_batches(
    x_train, batch_size: int, generator: torch.Generator, dynamic: bool, device, buffer=None
):
    """One epoch of shuffled training batches on ``device``: ``(index, x)`` pairs, ``x`` of
    shape ``(<= batch_size, *x_shape)`` and ``index`` its rows of the training split.

    In memory: the whole split is binarized at once (with ``dynamic``; into ``buffer``, a
    tensor like ``x_train`` the caller keeps from epoch to epoch, when given), then indexed by
    one random permutation. Streamed: blocks and windows (:meth:`StreamSplit.batches`), and
    ``index`` is None.
    """
    if isinstance(x_train, StreamSplit):
        for x in x_train.batches(batch_size, generator, dynamic):
            yield None, x.to(device)
        return
    epoch_x = binarize(x_train, generator, buffer) if dynamic else x_train
    epoch_x = epoch_x.to(device)
    order = torch.randperm(len(x_train), generator=generator).to(device)
    for start in range(0, len(x_train), batch_size):
        index = order[start : start + batch_size]
        # whole rows copied one by one (index_select), rather than indexing's general kernel
        yield index, epoch_x.index_select(0, index)
