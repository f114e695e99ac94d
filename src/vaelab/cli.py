"""The ``vaelab`` command: it parses, calls the library, prints.

A user's mistake (a :class:`VaelabError` or a bad flag) ends with one line on stderr and
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import VaelabError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (not usage + error) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 400 or 512,256, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaelab",
        description="Train, evaluate and look at variational autoencoders.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a VAE and write a run folder")
    t.add_argument(
        "--preset",
        help="named set-up: mnist-vae or mnist-iwae (Burda et al. 2015), mnist-vamp "
        "(Tomczak & Welling 2018) or mnist-best; --config and flags "
        "override it",
    )
    t.add_argument("--config", help="TOML file of configuration keys (flags override it)")
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the unfinished run RUN from its last checkpoint (no other flags)",
    )
    t.add_argument(
        "--data",
        help="digits (embedded), mnist, shapes (generated), or a path: image or IDX folder, "
        ".npy/.npz array, .csv/.parquet table",
    )
    t.add_argument(
        "--split", help="train,valid,test fractions of your own data (default 0.8,0.1,0.1)"
    )
    t.add_argument("--valid-data", help="validation split as its own file or folder")
    t.add_argument("--test-data", help="test split as its own file or folder")
    t.add_argument("--label-column", help="tables: the column of class labels (not a feature)")
    t.add_argument(
        "--stream",
        choices=["auto", "on", "off"],
        help=".npy: read from disk in blocks (auto: when larger than 1 GiB as float32)",
    )
    t.add_argument("--data-dir", help="folder with the MNIST IDX files (default $VAELAB_DATA)")
    t.add_argument(
        "--channels", type=int, choices=[1, 3], help="image folders: 1 grayscale, 3 RGB"
    )
    t.add_argument(
        "--image-size", type=int, help="image folders: resize to N x N; shapes: draw at N x N (64)"
    )
    t.add_argument("--latent-dim", type=int, help="dimensions of z (default 10)")
    t.add_argument("--hidden", type=_int_list, help="hidden layer sizes, e.g. 512,256")
    t.add_argument(
        "--arch",
        choices=["mlp", "conv", "linear", "hvae2", "gated-conv"],
        help="linear: x = Wz + b; hvae2: two stochastic layers z2 -> z1 -> x (Burda et al.); "
        "gated-conv: conv with a gated decoder",
    )
    t.add_argument("--activation", choices=["relu", "tanh"], help="MLP hidden units (relu)")
    t.add_argument(
        "--likelihood",
        choices=["auto", "bernoulli", "gaussian", "continuous-bernoulli", "logistic"],
        help="auto (default) follows the data: Gaussian for tables and real values, "
        "Bernoulli for [0, 1] images; continuous-bernoulli for grey levels in [0, 1], "
        "logistic (discretized, 256 levels) for 8-bit images",
    )
    t.add_argument("--sigma", type=float, help="Gaussian likelihood: fixed sigma (default 0.1)")
    t.add_argument(
        "--learn-sigma",
        action="store_true",
        default=None,
        help="Gaussian likelihood: learn sigma (one per output dimension)",
    )
    t.add_argument(
        "--shared-sigma",
        action="store_true",
        default=None,
        help="with --learn-sigma: one sigma shared by all dimensions",
    )
    t.add_argument(
        "--decoder-bias",
        choices=["zero", "data"],
        help="data: start the output bias at the logit of the training pixel means",
    )
    t.add_argument("--beta", type=float, help="weight of the KL term (default 1)")
    t.add_argument(
        "--kl-warmup", type=int, help="epochs over which the KL weight ramps from 0 to beta"
    )
    t.add_argument(
        "--objective",
        choices=["elbo", "iwae"],
        help="elbo, or the K-sample importance-weighted bound (default elbo)",
    )
    t.add_argument("--k", type=int, help="samples of z per example in training (default 1)")
    t.add_argument(
        "--iwae-grad",
        choices=["standard", "dreg"],
        help="IWAE encoder gradient: standard, or doubly reparameterized (Tucker et al. 2018)",
    )
    t.add_argument(
        "--inference",
        choices=["amortized", "local", "semi-amortized"],
        help="q(z|x): the encoder (default), one Gaussian per training example, or the "
        "encoder's refined by --refine-steps Adam steps",
    )
    t.add_argument("--refine-steps", type=int, help="semi-amortized: steps per batch (5)")
    t.add_argument("--epochs", type=int, help="epochs (with --minutes: at most this many)")
    t.add_argument(
        "--minutes", type=float, help="wall-clock budget for training; 0 means none (default)"
    )
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        help="cosine: decay to 0 over the --minutes budget, or over the epochs",
    )
    t.add_argument("--adam-eps", type=float, help="Adam's epsilon (default 1e-8)")
    t.add_argument(
        "--keep-best",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the weights of the best validation ELBO (default: yes)",
    )
    t.add_argument("--seed", type=int)
    t.add_argument("--binarize", choices=["auto", "dynamic", "static", "none"])
    t.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    t.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        help="run the training objective through torch.compile; auto (default): on a CUDA "
        "device, for runs of at least 20,000 steps or 10 minutes, in one process",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        help="epochs between checkpoints for --resume; 0: none (default 1)",
    )
    t.add_argument("--out", help="run folder to write (default runs/DATA-TIMESTAMP)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--tc-beta",
        type=float,
        help="beta-TCVAE (Chen et al. 2018): weight of the total correlation, e.g. 6 (0: off)",
    )
    t.add_argument(
        "--factor-gamma",
        type=float,
        help="FactorVAE (Kim & Mnih 2018): weight of the discriminator's TC, e.g. 10 (0: off)",
    )
    t.add_argument(
        "--kl-schedule",
        choices=["linear", "cyclical"],
        help="linear: warm-up over --kl-warmup epochs; cyclical: --kl-cycles ramps over "
        "--epochs (Fu et al. 2019)",
    )
    t.add_argument("--kl-cycles", type=int, help="cyclical KL schedule: cycles (default 4)")
    t.add_argument(
        "--free-bits",
        type=float,
        metavar="LAMBDA",
        help="floor, in nats, on each latent dimension's batch-mean KL in the loss "
        "(Kingma et al. 2016)",
    )
    t.add_argument(
        "--prior",
        choices=["normal", "mog", "vamp"],
        help="p(z): standard normal (default), learned mixture of Gaussians, or VampPrior "
        "(Tomczak & Welling 2018)",
    )
    t.add_argument(
        "--prior-components",
        type=int,
        metavar="K",
        help="mixture components of --prior mog (default 10) or pseudo-inputs of vamp (500)",
    )
    t.add_argument(
        "--logistic-components",
        type=int,
        metavar="M",
        help="--likelihood logistic: mixture components per pixel (default 1)",
    )
    t.add_argument(
        "--latent-dim-2", type=int, help="--arch hvae2: units of z2 (default latent-dim / 2)"
    )
    t.add_argument(
        "--hidden-2", type=_int_list, help="--arch hvae2: layers between z1 and z2 (--hidden)"
    )

    e = sub.add_parser("eval", help="score a run on its test split")
    e.add_argument("run")
    e.add_argument("--split", choices=["test", "valid", "train"], default="test")
    e.add_argument(
        "--k",
        type=int,
        default=5000,
        help="importance samples per example for the log-likelihood estimate (default 5000)",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--exact",
        action="store_true",
        help="also the exact log p(x) (runs with --arch linear --likelihood gaussian)",
    )
    e.add_argument(
        "--ais",
        type=int,
        nargs="?",
        const=500,
        metavar="STEPS",
        help="also annealed importance sampling with HMC, STEPS intermediate targets (500)",
    )
    e.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")

    g = sub.add_parser("gap", help="approximation and amortization gaps (Cremer et al. 2018)")
    g.add_argument("run")
    g.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    g.add_argument("--steps", type=int, help="Adam steps per datapoint (default: to convergence)")
    g.add_argument("--k", type=int, default=5000, help="importance samples (default 5000)")
    g.add_argument("--samples", type=int, default=100, help="z per datapoint and step (100)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate for q* (1e-3)")
    g.add_argument("--ais-steps", type=int, default=500, help="AIS targets; 0: no AIS (500)")
    g.add_argument("--ais-chains", type=int, default=16, help="AIS chains per image (16)")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")

    s = sub.add_parser("sample", help="a PNG grid of samples from the prior")
    s.add_argument("run")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="PNG path (default RUN/plots/samples_grid.png)")

    p = sub.add_parser("plot", help="draw every plot of a run again")
    p.add_argument("run")
    p.add_argument(
        "--gap",
        action="store_true",
        help="only the posterior-gap plots (2-D latent runs; drawn by default for those)",
    )

    n = sub.add_parser(
        "encode", help="q(z|x) for every example of a data set: means, std devs, samples"
    )
    n.add_argument("run")
    n.add_argument("--data", required=True, help="data to encode (as for train --data)")
    n.add_argument("--out", required=True, help=".npy (N, 2+K, D) or .npz (loc, scale, ...)")
    n.add_argument("--samples", type=int, default=0, help="K draws z ~ q(z|x) per example")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")

    r = sub.add_parser("report", help="one self-contained HTML page of a run, or runs compared")
    r.add_argument("runs", nargs="+", metavar="RUN")
    r.add_argument("--out", help="HTML path (default RUN/report.html; several runs: compare.html)")

    x = sub.add_parser("explore", help="a local web page to explore a run's latent space")
    x.add_argument("run")
    x.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    x.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    x.add_argument("--open", action="store_true", help="open the page in the web browser")

    d = sub.add_parser("disentangle", help="β-VAE, FactorVAE, MIG, DCI, SAP of a shapes run")
    d.add_argument("run")
    d.add_argument("--n", type=int, default=10_000, help="points per metric (default 10000)")
    d.add_argument("--trees", type=int, default=100, help="DCI: boosting stages (default 100)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _train(args) -> None:
    from .config import FIELD_TYPES, make_config, read_toml
    from .presets import preset
    from .train import resume, train

    if args.resume:
        given = [key for key in FIELD_TYPES if getattr(args, key) is not None]
        given += [flag for flag in ("preset", "config", "overwrite") if getattr(args, flag)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise VaelabError(f"--resume continues a run as it was configured; drop {flag}")
        resume(args.resume, progress=not args.quiet)
        _leave_process_group()
        return
    base = preset(args.preset) if args.preset else {}
    if args.config:
        base.update(read_toml(args.config))
    # every config field has a flag of the same name; a flag not given is None
    overrides = {key: getattr(args, key) for key in FIELD_TYPES}
    config = make_config(base, **overrides)
    train(config, overwrite=args.overwrite, progress=not args.quiet)
    _leave_process_group()


def _leave_process_group() -> None:
    """The process group of a torchrun launch, if any, closed after a finished run."""
    from .distributed import close

    close()


def _eval(args) -> None:
    import math

    from . import data as data_mod
    from . import evaluate
    from .checkpoint import load, load_config, load_transform
    from .device import resolve_device

    if args.k < 1:
        raise VaelabError(f"--k must be >= 1 (got {args.k})")
    config = load_config(args.run)
    if config.inference == "local":
        raise VaelabError(
            f"{args.run} was trained with --inference local and has no encoder to score "
            "with: fit q per image with vaelab.inference.fit_local and pass it to "
            "evaluate.importance_sampled_log_px(q=...), as benchmarks/amortization.py does"
        )
    from . import distributed

    model = load(args.run, distributed.init(resolve_device(args.device)))  # torchrun: join
    dataset = data_mod.from_config(config, load_transform(args.run))
    x = data_mod.eval_split(dataset, args.split, config.resolved_binarize)
    # under torchrun each process scores its share of the examples; all get the totals
    scores = evaluate.evaluate_elbo(model, x, seed=config.seed, distributed=True)
    ll = evaluate.log_likelihood(model, x, k=args.k, seed=config.seed, distributed=True)
    means, _, kls = evaluate.posterior_stats(model, x)
    result = {
        "run": str(args.run),
        "split": args.split,
        "n": scores["n"],
        "k": args.k,
        "nll_nats": ll["nll_nats"],
        "nll_se": ll["nll_se"],
        "bits_per_dim": evaluate.bits_per_dim(ll["nll_nats"], math.prod(model.x_shape)),
        "elbo": scores["elbo"],
        "elbo_se": scores["elbo_se"],
        "reconstruction": scores["reconstruction"],
        "kl": scores["kl"],
        "active_units": evaluate.active_units(means),
        "kl_per_dim": kls.double().mean(0).tolist(),
        "ess_mean": ll["ess_mean"],
    }
    if args.exact:
        exact = evaluate.exact_log_px(model, x)
        result["exact_nll_nats"] = -exact["log_px"]
        result["exact_nll_se"] = exact["log_px_se"]
    if args.ais:
        from .ais import ais_log_px

        nll = -ais_log_px(model, x, steps=args.ais, seed=config.seed)
        result["ais_nll_nats"] = nll.mean().item()
        result["ais_nll_se"] = (nll.std() / math.sqrt(len(nll))).item()
    main = distributed.is_main()
    distributed.close()
    if not main:  # rank 0 prints for all
        return
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.run} ({args.split}, {result['n']} examples), nats per example:")
    print(
        f"  -log p(x), K={args.k:<6} {result['nll_nats']:10.3f} ± {result['nll_se']:.3f}"
        f"   ({result['bits_per_dim']:.4f} bits/dim)"
    )
    if args.exact:
        print(
            f"  -log p(x), exact     {result['exact_nll_nats']:10.3f} ± "
            f"{result['exact_nll_se']:.3f}   (linear-Gaussian closed form)"
        )
    if args.ais:
        print(
            f"  -log p(x), AIS       {result['ais_nll_nats']:10.3f} ± "
            f"{result['ais_nll_se']:.3f}   ({args.ais} annealing steps, 16 HMC chains)"
        )
    print(f"  ELBO                 {result['elbo']:10.3f} ± {result['elbo_se']:.3f}")
    print(f"  E_q[log p(x|z)]      {result['reconstruction']:10.3f}")
    print(f"  KL                   {result['kl']:10.3f}")
    print(f"  active units         {result['active_units']:>6d} of {model.latent_dim}")
    print(f"  mean ESS             {result['ess_mean']:10.1f} of {args.k}")


def _gap(args) -> None:
    from . import data as data_mod
    from .checkpoint import load, load_config
    from .device import resolve_device
    from .gap import measure_gap, report

    config = load_config(args.run)
    if config.inference == "local":
        raise VaelabError(
            f"{args.run} was trained with --inference local: it has no trained encoder, so "
            "there is no amortized q to compare; use a run trained with an encoder"
        )
    if config.arch == "hvae2":
        raise VaelabError(
            f"{args.run} is a two-layer model (--arch hvae2), whose q(z1|x) q(z2|z1) is not "
            "one diagonal Gaussian; vaelab gap compares such q, so use a one-layer run"
        )
    for name in ("n", "k", "samples", "ais_chains"):
        if getattr(args, name) < 1:
            raise VaelabError(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps is not None and args.steps < 0 or args.ais_steps < 0:
        raise VaelabError("--steps and --ais-steps must be >= 0")
    model = load(args.run, resolve_device(args.device))
    x = data_mod.eval_split(data_mod.from_config(config), "test", config.resolved_binarize)
    if args.n > len(x):
        raise VaelabError(f"--n {args.n} is more than the {len(x)} test images; lower --n")
    result = measure_gap(
        model, x[: args.n], steps=args.steps, k=args.k, lr=args.lr, samples=args.samples,
        ais_steps=args.ais_steps, ais_chains=args.ais_chains, seed=config.seed,
    )  # fmt: skip
    result.pop("trace")
    if args.json:
        print(json.dumps({"run": str(args.run), **result}))
        return
    print(report(result, args.run))


def _sample(args) -> None:
    import torch

    from .checkpoint import load
    from .plots import save_grid_png

    if not 1 <= args.n <= 10_000:
        raise VaelabError(f"--n must be between 1 and 10000 (got {args.n})")
    model = load(args.run)
    torch.manual_seed(args.seed)
    images = model.sample(args.n).numpy()
    out = Path(args.out) if args.out else Path(args.run) / "plots" / "samples_grid.png"
    if not out.parent.is_dir():
        raise VaelabError(f"folder {out.parent} does not exist; create it or choose --out")
    save_grid_png(images, out)
    print(f"vaelab: {args.n} samples from the prior written to {out}")


def _plot(args) -> None:
    import json as json_mod

    from . import data as data_mod
    from .checkpoint import load, load_config, load_transform
    from .gap_plots import GAP_PLOTS, draw_gap
    from .plots import draw_run

    config = load_config(args.run)
    model = load(args.run)
    # the posterior-gap plots: 2-D runs with one Gaussian q (not hvae2's two layers)
    gap_plots = model.latent_dim == 2 and config.arch != "hvae2"
    if args.gap and not gap_plots:
        raise VaelabError(
            f"--gap draws the true posterior of a 2-D latent space under one Gaussian q; "
            f"{args.run} has {model.latent_dim} latent dimensions and --arch {config.arch} "
            "(train with --latent-dim 2 and --arch mlp or conv)"
        )
    dataset = data_mod.from_config(config, load_transform(args.run))
    plot_dir = Path(args.run) / "plots"
    if gap_plots:
        paths = draw_gap(model, dataset, plot_dir, config.resolved_binarize, seed=config.seed)
        if args.gap:
            print(f"vaelab: {len(paths)} plots written to {plot_dir}")
            return
    metrics_path = Path(args.run) / "metrics.jsonl"
    metrics = []
    if metrics_path.is_file():
        metrics = [json_mod.loads(line) for line in metrics_path.read_text().splitlines() if line]
    paths = draw_run(model, dataset, metrics, plot_dir, config.resolved_binarize)
    if gap_plots:
        paths += [plot_dir / name for name in GAP_PLOTS]
    print(f"vaelab: {len(paths)} plots written to {plot_dir}")


def _encode(args) -> None:
    from .device import resolve_device
    from .encode import encode

    n = encode(args.run, args.data, args.out, args.samples, args.seed, resolve_device(args.device))
    what = "means and standard deviations" + (f", {args.samples} samples" if args.samples else "")
    print(f"vaelab: q(z|x) of {n} examples ({what}) written to {args.out}")


def _report(args) -> None:
    from .report import write_comparison, write_report

    if len(args.runs) == 1:
        out = write_report(args.runs[0], args.out)
    else:
        out = write_comparison(args.runs, args.out or "compare.html")
    print(f"vaelab: report written to {out}")


def _explore(args) -> None:
    from .explore import serve

    serve(args.run, host=args.host, port=args.port, open_browser=args.open)


def _disentangle(args) -> None:
    from .checkpoint import load, load_config
    from .disentangle import score_run

    config = load_config(args.run)
    if config.data != "shapes":
        raise VaelabError(
            f"{args.run} was trained on {config.data!r}; the metrics need the ground-truth "
            "factors of --data shapes"
        )
    model = load(args.run)
    scores = score_run(model, config.image_size or 64, args.n, args.seed, args.trees)
    scores = {"run": str(args.run), **scores}
    if args.json:
        print(json.dumps(scores))
        return
    print(f"{args.run}: disentanglement of the encoder means, {args.n} points per metric")
    for key, value in scores.items():
        if key not in ("run", "n"):
            print(f"  {key:<24} {value:.3f}")


COMMANDS = {
    "train": _train,
    "eval": _eval,
    "gap": _gap,
    "sample": _sample,
    "plot": _plot,
    "encode": _encode,
    "report": _report,
    "explore": _explore,
    "disentangle": _disentangle,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except VaelabError as exc:
        print(f"vaelab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
