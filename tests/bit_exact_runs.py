"""Train short runs with fixed seeds through ``vaelab train`` and print a SHA-256 of each
run's final weights: ``python tests/bit_exact_runs.py OUT_DIR [NAME ...]`` prints one JSON
object (all runs, or those named).

On one thread, so the figures do not depend on the machine's core count. The hashes of the
code before the restructuring into layers are recorded in tests/data/bit_exact.json;
tests/test_bit_exact.py trains the same runs and compares.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from vaelab.cli import main

SMALL = ["--data", "digits", "--hidden", "32", "--epochs", "2", "--batch-size", "64"]
RUNS = {
    "default": ["--latent-dim", "2"],
    "vamp-iwae": ["--prior", "vamp", "--prior-components", "20", "--objective", "iwae",
                  "--k", "3"],
    "dreg": ["--objective", "iwae", "--k", "4", "--iwae-grad", "dreg"],
    "hvae2": ["--arch", "hvae2", "--latent-dim", "4"],
    "local": ["--inference", "local"],
    "semi-amortized": ["--inference", "semi-amortized", "--refine-steps", "2"],
    "tc": ["--tc-beta", "4"],
    "factor": ["--factor-gamma", "5"],
    "free-bits": ["--free-bits", "0.5"],
    "gaussian": ["--likelihood", "gaussian", "--learn-sigma"],
    "mog": ["--prior", "mog"],
    "tricks": [
        "--kl-warmup", "1", "--lr-schedule", "cosine", "--decoder-bias", "data",
        "--activation", "gated", "--binarize", "static",
    ],
    "cyclical": ["--kl-schedule", "cyclical", "--kl-cycles", "2", "--likelihood",
                 "continuous-bernoulli"],
}  # fmt: skip
CONV = ["--arch", "conv", "--hidden", "16", "--epochs", "2", "--batch-size", "50"]


def weights_hash(path: Path) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in sorted name order (so
    it does not depend on the file's header layout)."""
    digest = hashlib.sha256()
    with safe_open(str(path), framework="pt") as fh:
        for key in sorted(fh.keys()):
            t = fh.get_tensor(key).contiguous()
            digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def conv_data(folder: Path) -> Path:
    """300 grey 28x28 images, the same on every machine (numpy's PCG64 stream)."""
    path = folder / "grey28.npy"
    x = np.random.default_rng(0).random((300, 1, 28, 28)).astype(np.float32)
    np.save(path, x)
    return path


NAMES = [*RUNS, "conv"]


def run_all(out: Path, names: list[str] = NAMES) -> dict[str, dict]:
    torch.set_num_threads(1)
    hashes = {}
    runs = {name: SMALL + flags for name, flags in RUNS.items()}
    runs["conv"] = ["--data", str(conv_data(out)), *CONV]
    for name, flags in ((n, runs[n]) for n in names):
        run = out / name
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["train", *flags, "--out", str(run), "--quiet", "--device", "cpu"])
        if code != 0:
            raise SystemExit(f"run {name} failed with exit status {code}")
        test = json.loads((run / "summary.json").read_text())["test"]
        hashes[name] = {
            "weights": weights_hash(run / "model.safetensors"),
            "test_elbo": test["elbo"],
        }
    return hashes


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    names = sys.argv[2:] or NAMES
    hashes = run_all(out, names)
    result = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "hashes": hashes}
    print(json.dumps(result, indent=2))
