"""Amortized inference at work: q(z | x) for a whole data set in one pass of the encoder.

``vaelab encode RUN --data PATH --out z.npy`` writes, for every example x_n of ``PATH``, the
mean and standard deviation of q(z | x_n) and optionally K draws z ~ q(z | x_n). The data
are read and encoded a chunk at a time and the result is written as it comes, so memory
stays bounded however many examples there are.

What is written depends on q's family (``--posterior``), so that no array claims more than
the family knows:

- ``diagonal``, q = N(loc, diag scale^2): ``loc`` ``(N, D)`` the means, ``scale`` ``(N, D)``
  the standard deviations, and ``samples`` ``(N, K, D)`` when K > 0.
- ``full``, q = N(loc, L L^T): ``loc`` and ``scale`` as above (``scale`` the marginal
  standard deviations sqrt diag(L L^T)), ``scale_tril`` ``(N, D, D)`` the Cholesky factor L
  itself (lower-triangular, positive diagonal; torch's ``MultivariateNormal(loc,
  scale_tril=L)``, covariance ``L @ L.T``), and ``samples`` when K > 0.
- ``iaf``: E_q[z] has no closed form (the run's ``q.mean`` is the flow at mu, not the mean),
  so there is no ``loc`` or ``scale``; instead ``samples`` ``(N, K, D)``, K >= 2 required,
  and estimates from exactly those draws: ``mean_estimate`` ``(N, D)`` the sample mean,
  ``mean_estimate_se`` ``(N, D)`` its standard error sqrt(diag C / K), and
  ``covariance_estimate`` ``(N, D, D)`` C, the unbiased sample covariance
  (:func:`vaelab.plots.ellipses.sample_moments`).

Layouts:

- ``.npz``: the arrays above, ``y`` ``(N,)`` when the data have labels, ``label_names``
  (class ``y = i`` is ``label_names[i]``) when the labels have names (class folders, a
  table's label strings; numbered as in the run's ``data.json``), and ``files`` ``(N,)`` for
  an image folder: each example's image, relative to the folder.
- ``.npy``, the diagonal family only (one array cannot hold the others' D x D matrices): one
  float32 array ``(N, 2 + K, D)``: ``[:, 0]`` the means, ``[:, 1]`` the standard deviations,
  ``[:, 2:]`` the K samples.

Examples are encoded as they are (grey levels are not binarized); a table's rows, and a
real-valued array's examples, are standardized with the run's stored statistics (a table's
columns matched by name).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from . import data as data_mod
from .checkpoint import load_transform, open_run
from .data.arrays import check_dtype, example_shape, is_npy
from .data.dataset import recode_labels
from .data.stream import NpyFile, to_unit_float
from .data.tables import apply_transform
from .device import fork_rng
from .errors import VaelabError
from .plots.ellipses import sample_moments
from .progress import Progress, silent

CHUNK = 4096  # examples read and encoded at a time
# full and iaf encode at most 2^24 floats of D x D matrices (L, the covariance) and samples
# at a time, 64 MB: 4,096 examples up to D = 64, 64 at full's largest D = 512. (A diagonal
# q's chunks stay CHUNK long, so that its samples for a seed are what they always were.)
MATRIX_FLOATS = 2**24


def written(family: str, samples: int) -> str:
    """What ``vaelab encode`` writes for q's ``family`` and K = ``samples``, in words."""
    draws = f"{samples} samples" if samples else ""
    if family == "iaf":
        return f"{draws}, and the mean and covariance estimated from them"
    what = "means and standard deviations"
    if family == "full":
        what = "means, standard deviations, Cholesky factors L (scale_tril)"
    return what + (f", {draws}" if draws else "")


def encode(
    run: str | Path,
    data: str,
    out: str | Path,
    samples: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: Progress = silent,
) -> int:
    """Encode every example of ``data`` with the run's encoder into ``out``; return N.

    ``out`` is checked before anything is read: never the data itself, an existing file only
    with ``overwrite``, in a folder that exists and can be written. ``progress`` is told of
    every chunk encoded."""
    out = Path(out)
    _check_out(out, Path(data).expanduser(), overwrite)
    if samples < 0:
        raise VaelabError(f"--samples must be >= 0 (got {samples})")
    try:
        return _encode(run, data, out, samples, seed, device, progress)
    except OSError as exc:  # a full disk, a folder made read-only under us, ...
        raise VaelabError(
            f"cannot write {out} ({exc.strerror or exc}); nothing was written: make room or "
            "choose another --out"
        ) from None


def _check_out(out: Path, data: Path, overwrite: bool) -> None:
    if out.suffix not in (".npy", ".npz"):
        raise VaelabError(f"--out {out} must end in .npy or .npz")
    if out.is_dir():
        raise VaelabError(f"--out {out} is a folder; give the path of a .npy or .npz file")
    if out.exists() and data.exists() and out.resolve() == data.resolve():
        raise VaelabError(f"--out {out} is the data being encoded; choose another --out")
    if out.exists() and not overwrite:
        raise VaelabError(f"{out} exists; choose another --out or pass --overwrite")
    if not out.parent.is_dir():
        raise VaelabError(f"folder {out.parent} does not exist; create it or choose --out")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise VaelabError(f"folder {out.parent} cannot be written; choose another --out")


def _encode(run, data: str, out: Path, samples: int, seed: int, device, progress) -> int:
    opened = open_run(run, device)
    model = opened.model
    family = model.posterior.family
    _check_family(family, out, samples)
    source, n, labels, names = _source(opened.path, opened.config, data)
    with (
        fork_rng(torch.device(device)),
        tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp,
    ):
        tmp = Path(tmp)
        parts = _parts(family, n, samples, model.latent_dim)
        files = {key: _NpyWriter(tmp / f"{key}.npy", s) for key, s in parts.items()}
        shape = (n, 2 + samples, model.latent_dim)
        whole = _NpyWriter(tmp / "whole.npy", shape) if out.suffix == ".npy" else None
        d = model.latent_dim
        per_example = d * d + samples * d
        step = CHUNK if family == "diagonal" else max(1, min(CHUNK, MATRIX_FLOATS // per_example))
        torch.manual_seed(seed)  # the draws z ~ q(z | x)
        seen = 0
        with torch.no_grad(), progress("encoding", n, "examples") as task:
            for chunk in source:
                if tuple(chunk.shape[1:]) != model.x_shape:
                    raise VaelabError(
                        f"{data} holds examples of shape {tuple(chunk.shape[1:])} but the run "
                        f"was trained on {model.x_shape}; give data of the run's shape"
                    )
                for x in chunk.split(step):
                    rows = _rows(model.q_z(x.to(device)), family, samples)
                    for key, value in rows.items():
                        files[key].write(value.cpu().numpy())
                    if whole is not None:  # the diagonal family (_check_family)
                        stacked = [rows["loc"][:, None], rows["scale"][:, None]]
                        stacked += [rows["samples"]] if samples else []
                        whole.write(torch.cat(stacked, dim=1).cpu().numpy())
                    seen += len(x)
                    task.update(len(x))
        if out.suffix == ".npy":
            result = tmp / "whole.npy"
        else:
            if labels is not None:
                np.save(tmp / "y.npy", labels)
                files["y"] = None
            for key, values in names.items():  # label_names, files: unicode, never objects
                if values:
                    np.save(tmp / f"{key}.npy", np.asarray(values, dtype=str))
                    files[key] = None
            result = tmp / "archive.npz"
            with zipfile.ZipFile(result, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for key in files:
                    archive.write(tmp / f"{key}.npy", arcname=f"{key}.npy")
        os.replace(result, out)  # complete, or not there: never half a file
    assert seen == n
    return n


def _check_family(family: str, out: Path, samples: int) -> None:
    """Refuse, before any data are read, what q's family cannot give (module docstring)."""
    if family != "diagonal" and out.suffix == ".npy":
        matrix = "Cholesky factor L" if family == "full" else "estimated covariance"
        raise VaelabError(
            f"this run's q(z|x) is --posterior {family}, whose {matrix} (D x D per example) "
            f"one .npy cannot hold; write --out {out.with_suffix('.npz')}"
        )
    if family == "iaf" and samples < 2:
        raise VaelabError(
            "this run's q(z|x) is --posterior iaf, whose mean has no closed form; pass "
            "--samples K (K >= 2, e.g. 100) to write K draws and the mean and covariance "
            "estimated from them"
        )


def _parts(family: str, n: int, samples: int, d: int) -> dict[str, tuple[int, ...]]:
    """The arrays written for q's ``family`` and their shapes, in the order :func:`_rows`
    gives them."""
    if family == "iaf":
        return {
            "samples": (n, samples, d),
            "mean_estimate": (n, d),
            "mean_estimate_se": (n, d),
            "covariance_estimate": (n, d, d),
        }
    parts = {"loc": (n, d), "scale": (n, d)}
    if family == "full":
        parts["scale_tril"] = (n, d, d)
    if samples:
        parts["samples"] = (n, samples, d)
    return parts


def _rows(qz, family: str, samples: int) -> dict[str, torch.Tensor]:
    """The arrays of :func:`_parts` for one chunk's q(z | x), ``B`` rows each."""
    z = qz.sample((samples,)) if samples else None  # (K, B, D)
    if family == "iaf":
        estimate = sample_moments(z)
        return {
            "samples": z.transpose(0, 1),
            "mean_estimate": estimate.mean,
            "mean_estimate_se": estimate.scale / samples**0.5,
            "covariance_estimate": estimate.covariance,
        }
    rows = {"loc": qz.mean, "scale": qz.stddev}
    if family == "full":
        rows["scale_tril"] = qz.scale_tril
    if samples:
        rows["samples"] = z.transpose(0, 1)  # (B, K, D)
    return rows


class _NpyWriter:
    """A float32 ``.npy`` of a known shape written row block by row block."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path = path
        with path.open("wb") as fh:
            header = {"descr": "<f4", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_2_0(fh, header)

    def write(self, rows: np.ndarray) -> None:
        with self.path.open("ab") as fh:
            fh.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())


def _source(
    run: Path, config, data: str
) -> tuple[Iterator[torch.Tensor], int, np.ndarray | None, dict[str, list[str]]]:
    """The examples of ``data`` in chunks ``(<= CHUNK, *x_shape)``, their count, labels and
    names (``label_names``, ``files``), read as the run reads its data."""
    stored = load_transform(run) or {}
    if data in ("digits", "mnist", "shapes"):
        dataset = data_mod.load(data, config.data_dir or None, image_size=config.image_size)
        splits = [dataset.train, dataset.valid, dataset.test]
        ys = [dataset.train_labels, dataset.valid_labels, dataset.test_labels]
        x = torch.cat(splits)
        y = None if ys[0] is None else torch.cat(ys).numpy()
        return iter(x.split(CHUNK)), len(x), y, {"label_names": dataset.label_names}
    path = data_mod.existing_path(data)
    # a real-valued array run's standardization (a table's is matched by column, below)
    standardize = "mean" in stored and "columns" not in stored
    if path.suffix in (".npy", ".npz") and is_npy(path):
        file = NpyFile.open(path)
        check_dtype(path, file.dtype)
        x_shape, _ = example_shape(path, file.shape)

        def chunks():
            for start in range(0, file.shape[0], CHUNK):
                rows = to_unit_float(file.read(start, min(start + CHUNK, file.shape[0])))
                rows = rows.reshape(-1, *x_shape)
                if not np.isfinite(rows).all():
                    raise VaelabError(f"{path} contains NaN or Inf values; clean it first")
                yield torch.from_numpy(_standardized(rows, stored) if standardize else rows)

        return chunks(), file.shape[0], None, {}
    label = config.label_column  # new rows may come with or without their labels
    x, y, kind, info = data_mod.read_source(
        path, config.channels, config.image_size, label, optional_label=True
    )
    if kind == "table":
        x = _table_rows(run, path, x, info)
    elif standardize:
        x = _standardized(x, stored)
    # the run's numbers for its classes, so that y = i means what it meant in training
    y, label_names = recode_labels(y, info.get("label_names", []), stored.get("label_names", []))
    names = {"label_names": label_names if y is not None else [], "files": info.get("files", [])}
    return iter(torch.from_numpy(np.asarray(x, np.float32)).split(CHUNK)), len(x), y, names


def _standardized(x: np.ndarray, stored: dict) -> np.ndarray:
    """Examples ``(N, *x_shape)`` standardized as the run's training data were."""
    if np.shape(stored["mean"]) != x.shape[1:]:
        raise VaelabError(
            f"the data hold examples of shape {x.shape[1:]} but the run was trained on "
            f"{np.shape(stored['mean'])}; give data of the run's shape"
        )
    return apply_transform(x.astype(np.float64), stored)


def _table_rows(run: Path, path: Path, x: np.ndarray, info: dict) -> np.ndarray:
    """A table's rows reordered to the run's columns and standardized as in training."""
    transform = load_transform(run)
    if transform is None:
        raise VaelabError(f"{run} was not trained on a table (no data.json); give it its data")
    columns, have = transform["columns"], info["columns"]
    missing = [c for c in columns if c not in have]
    if missing:
        raise VaelabError(f"{path} lacks the run's column(s) {', '.join(missing[:5])}")
    extra = [c for c in have if c not in columns]
    if extra:
        raise VaelabError(
            f"{path} has column(s) the run was not trained on: {', '.join(extra[:5])}"
        )
    x = x[:, [have.index(c) for c in columns]]
    return apply_transform(x, transform)
