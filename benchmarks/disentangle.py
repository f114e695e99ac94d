"""The disentanglement benchmark: beta-VAE (beta = 1, 4, 16), beta-TCVAE and FactorVAE on 32 x 32
shapes, each trained for the same wall-clock budget, then scored by every metric.

    python benchmarks/disentangle.py --minutes 4
    python benchmarks/disentangle.py --arch broadcast --hidden 64,32 --models beta4 --minutes 45

Protocol (docs/benchmarks.md): ``--data shapes --image-size 32`` (20,000 training images of the
dSprites factors), a 10-D latent space, the default MLP (one hidden layer of 400; ``--arch``
and ``--hidden`` choose another, e.g. the spatial broadcast decoder), batch 128, Adam 1e-3, the
kept weights those of the best validation ELBO; the metrics are ``vaelab disentangle``'s
(:func:`vaelab.evaluate.disentangle.score_run`) on the encoder means, with ``--n`` points per
metric and ``--trees`` boosting stages in DCI. Prints one Markdown table; each run stays in
``OUT/NAME`` (its traversals in ``OUT/NAME/plots/traversals.png``) and the table's numbers in
``OUT/benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vaelab import evaluate, load
from vaelab.cli.train_flags import int_list
from vaelab.config import CHOICES, make_config
from vaelab.data.shapes import load_shapes
from vaelab.evaluate.disentangle import score_run
from vaelab.runs import train

IMAGE_SIZE = 32
# name -> the config keys that make the objective
MODELS = {
    "beta1": {"beta": 1.0},
    "beta4": {"beta": 4.0},
    "beta16": {"beta": 16.0},
    "tcvae6": {"tc_beta": 6.0},  # the middle of disentanglement_lib's grid 1 ... 10
    "factor10": {"factor_gamma": 10.0},  # Kim & Mnih's gamma for dSprites, 10 ... 100
}
LABELS = {
    "beta1": "VAE (β = 1)",
    "beta4": "β-VAE, β = 4",
    "beta16": "β-VAE, β = 16",
    "tcvae6": "β-TCVAE, TC weight 6",
    "factor10": "FactorVAE, γ = 10",
}
METRICS = (
    "beta_vae",
    "factor_vae",
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "sap",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per model")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--n", type=int, default=500, help="points per metric (500)")
    parser.add_argument("--trees", type=int, default=20, help="DCI boosting stages (20)")
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--arch", default="mlp", choices=CHOICES["arch"], help="mlp (default)")
    parser.add_argument(
        "--hidden", type=int_list, default=[400], help="layer sizes, e.g. 64,32 (400)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-disentangle", help="folder of the runs")
    args = parser.parse_args()
    names = [name for name in args.models.split(",") if name]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_test = load_shapes(IMAGE_SIZE).test  # binary images: no binarization
    rows = []
    for name in names:
        config = make_config(
            data="shapes",
            image_size=IMAGE_SIZE,
            latent_dim=args.latent_dim,
            arch=args.arch,
            hidden=args.hidden,
            minutes=args.minutes,
            epochs=1000,
            seed=args.seed,
            out=str(out / name),
            **MODELS[name],
        )
        run = train(config, overwrite=True, progress=False, log=lambda _: None)
        summary = json.loads((run / "summary.json").read_text())
        model = load(run)
        means, _, kls = evaluate.posterior_stats(model, x_test)
        start = time.perf_counter()
        scores = score_run(model, IMAGE_SIZE, args.n, args.seed, args.trees)
        rows.append(
            {
                "model": name,
                **MODELS[name],
                "arch": args.arch,
                "hidden": args.hidden,
                "minutes": args.minutes,
                "epochs": summary["epochs"],
                "test_elbo": summary["test"]["elbo"],
                "test_kl": summary["test"]["kl"],
                "active_units": evaluate.active_units(means),
                "kl_per_dim": [round(v, 3) for v in kls.double().mean(0).tolist()],
                **{k: scores[k] for k in METRICS},
                "n": args.n,
                "trees": args.trees,
                "score_seconds": time.perf_counter() - start,
            }
        )
        print(f"{name}: done ({summary['epochs']} epochs)", flush=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    (out / "benchmark.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n"
    )
    print(
        "| model | epochs | test ELBO | KL | active | β-VAE | FactorVAE | MIG "
        "| DCI dis. | DCI compl. | DCI info. | SAP |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        metrics = " | ".join(f"{row[k]:.3f}" for k in METRICS)
        print(
            f"| {LABELS[row['model']]} | {row['epochs']} | {row['test_elbo']:.1f} "
            f"| {row['test_kl']:.1f} | {row['active_units']} | {metrics} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
