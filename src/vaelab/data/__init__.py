"""Data sources -> tensors with fixed train / valid / test splits; binarization.

Every source returns a :class:`Dataset`: images as float32 ``(N, C, H, W)`` in [0, 1], other
arrays as ``(N, ...)``, tables as standardized rows ``(N, P)``; integer labels ``(N,)``
where the source has them.

Sources:

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), scaled by 1/16, split
  1,437 / 180 / 180 with a fixed permutation. Embedded: needs no files.
- ``shapes``: generated binary 64x64 (or ``--image-size``) images of a square, an ellipse or
  a heart with the dSprites factors (:mod:`~vaelab.data.shapes`); a fixed random 20,000 /
  2,000 / 2,000 of the 737,280 combinations, labelled by shape.
- ``mnist``: the four standard IDX files (``.gz`` or not). Training file -> 50,000 train and
  the last 10,000 valid; test file -> 10,000 test. Looked up in ``--data-dir``, else in
  ``$VAELAB_DATA``, else in the cache folder, where missing files are downloaded from the
  standard mirrors and checked against their SHA-256.
- a folder holding IDX files named like MNIST's (Fashion-MNIST, KMNIST ...), with their split.
- a folder of images (PNG, JPEG, BMP), flat or one sub-folder per class;
- a ``.npy`` (memory-mapped; streamed from disk when larger than memory) or ``.npz``
  (``x``, optional ``y``) array of any shape ``(N, ...)``, uint8 (scaled by 1/255) or float;
  real values outside [0, 1] are standardized per feature with the training split's
  statistics (not when streamed);
- a CSV or Parquet table of numeric columns (optional label column), standardized with the
  training split's statistics.

Class names (an image folder's class folders, a table's label strings) are kept in
``Dataset.label_names``, and a run stores them, with any standardization, in ``RUN/data.json``.

Data handed to ``vaelab.train(config, data=...)`` in memory (an array, a tensor, an ``(x, y)``
pair or a torch ``Dataset``) is kept in the run as ``RUN/data.npz`` (:mod:`~vaelab.data.memory`).

Your own data is split ``--split`` (default 0.8,0.1,0.1) by a fixed permutation, or given
as three files or folders (``--data``, ``--valid-data``, ``--test-data``).
"""

from .batches import epoch_batches
from .binarization import binarize
from .choose import Choice, bernoulli_on_grey, choose, choose_likelihood
from .dataset import Dataset, valid_stored
from .eval_split import eval_split
from .memory import IN_RUN, RUN_DATA, npz_bytes
from .sources import existing_path, from_config, load, read_source

__all__ = [
    "Choice",
    "IN_RUN",
    "RUN_DATA",
    "Dataset",
    "bernoulli_on_grey",
    "binarize",
    "choose",
    "choose_likelihood",
    "epoch_batches",
    "eval_split",
    "existing_path",
    "from_config",
    "load",
    "npz_bytes",
    "read_source",
    "valid_stored",
]
