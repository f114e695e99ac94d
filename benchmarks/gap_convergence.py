"""How far q* is from converged after a fixed number of steps: ``vaelab gap`` with Cremer,
Li & Duvenaud (2018)'s stopping rule, on a trained run.

    python benchmarks/gap_convergence.py RUN --n 20

Fits q* to the first ``--n`` test images of RUN from the encoder's output (Adam, learning
rate 1e-3, 100 samples of z per step) until the mean ELBO over a window of 100 steps has not
improved for more than 10 windows, then prints the decomposition of ``vaelab gap`` (JSON
keys as there) and the fit's mean ELBO (the optimisation's own estimate, 100 samples, mean
over the window of 100 steps ending there) at 500, 1,000, 2,000, 5,000, 10,000 ... steps: what
stopping at a fixed step count leaves on the table.
"""

from __future__ import annotations

import argparse
import json

from vaelab import VaelabError, load
from vaelab import data as data_mod
from vaelab.checkpoint import load_config
from vaelab.evaluate.gap import measure_gap

CHECKPOINTS = (500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--ais-chains", type=int, default=8)
    args = parser.parse_args()
    try:  # a wrong run folder, or data moved since training: one line, exit status 2
        config = load_config(args.run)
        model = load(args.run, "cpu")
        x = data_mod.eval_split(data_mod.from_config(config), "test", config.resolved_binarize)
    except VaelabError as error:
        parser.error(str(error))
    result = measure_gap(model, x[: args.n], steps=None, ais_chains=args.ais_chains)
    trace = result.pop("trace")
    window = {
        step: sum(trace[step - 100 : step]) / 100 for step in CHECKPOINTS if step <= len(trace)
    }
    print(json.dumps({"run": args.run, **result}))
    print(f"q* fit: {result['local_steps']} steps, converged: {result['local_converged']}")
    print("| Adam steps | mean ELBO of the fit (last 100 steps) |")
    print("| --- | --- |")
    for step, value in window.items():
        print(f"| {step:,} | {value:.3f} |")
    print(f"| {len(trace):,} (stop) | {sum(trace[-100:]) / 100:.3f} |")


if __name__ == "__main__":
    main()
