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
    one random permutation; a split the caller keeps on the GPU is binarized there.
    Streamed: blocks and windows (:meth:`StreamSplit.batches`), and
    ``index`` is None.
    """
    if isinstance(x_train, StreamSplit):
        for x in x_train.batches(batch_size, generator, dynamic):
            yield None, x.to(device)
        return
    if dynamic and x_train.device.type != "cpu":  # the data live on the GPU: drawn there,
        # from a generator of that device seeded by the run's own, which a checkpoint keeps
        seed = int(torch.randint(1 << 62, (1,), generator=generator))
        on_device = torch.Generator(x_train.device).manual_seed(seed)
        epoch_x = binarize(x_train, on_device, buffer)
    else:
        epoch_x = binarize(x_train, generator, buffer) if dynamic else x_train
    epoch_x = epoch_x.to(device)
    order = torch.randperm(len(x_train), generator=generator).to(device)
    for start in range(0, len(x_train), batch_size):
        index = order[start : start + batch_size]
        # whole rows copied one by one (index_select), rather than indexing's general kernel
        yield index, epoch_x.index_select(0, index)
