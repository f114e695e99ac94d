"""What each ``vaelab`` subcommand does once :mod:`vaelab.cli.main` has parsed its flags.

One function per subcommand takes the parsed ``args``, calls the library and prints what it
did; :data:`COMMANDS` maps each subcommand's name to its function. A user's mistake raises
:class:`VaelabError`, which the CLI turns into one line and exit status 2. In the order of the
data's path: train a run, measure it (eval, gap, disentangle), encode data with it, then look
at it (sample, plot, report, explore).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .. import evaluate, progress, ranks
from ..checkpoint import load_config, open_run, read_metrics
from ..config import FIELD_TYPES, assemble
from ..device import PRECISIONS, resolve_device
from ..encode import encode, written
from ..errors import VaelabError
from ..evaluate.disentangle import score_run
from ..evaluate.gap import measure_gap
from ..evaluate.likelihood import is_discrete
from ..evaluate.statistics import standard_error
from ..explore import serve
from ..files import write_json
from ..plots import draw_gap, draw_run, save_grid_png
from ..report import write_comparison, write_report
from ..runs import record_in_manifest, resume, train

# the quicker options a long command suggests before it starts
QUICK_K = 100  # --k: importance samples per example
QUICK_AIS = 50  # --ais, --ais-steps: annealing steps
QUICK_STEPS = 500  # gap --steps: Adam steps per datapoint
QUICK_IMAGES = 100  # gap --n: test images
QUICK_POINTS = 1000  # disentangle --n: points per metric


def _train(args) -> None:
    if args.resume:
        given = [key for key in FIELD_TYPES if getattr(args, key) is not None]
        given += [flag for flag in ("preset", "config", "overwrite") if getattr(args, flag)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise VaelabError(f"--resume continues a run as it was configured; drop {flag}")
        resume(args.resume, progress=not args.quiet)
        ranks.close()  # the process group of a torchrun launch, if any
        return
    # every config field has a flag of the same name; a flag not given is None
    flags = {key: getattr(args, key) for key in FIELD_TYPES}
    config = assemble(args.preset, args.config, flags)
    train(config, overwrite=args.overwrite, progress=not args.quiet)
    ranks.close()


def _eval(args) -> None:
    config = load_config(args.run)
    if config.inference == "local":
        raise VaelabError(
            f"{args.run} was trained with --inference local and has no encoder to score "
            "with: fit q per image with vaelab.core.inference.fit_local and pass it to "
            "evaluate.importance_sampled_log_px(q=...), as benchmarks/amortization.py does"
        )
    run = open_run(args.run, ranks.init(resolve_device(args.device)))  # torchrun: join
    model = run.model
    x = run.split(args.split)
    shown = _progress(args, _eval_notice(args, len(x)))
    # under torchrun each process scores its share of the examples; all get the totals
    scores = evaluate.evaluate_elbo(model, x, seed=config.seed, distributed=True)
    with model.computing_in(PRECISIONS[args.precision]):  # the decoder's products, at most
        ll = evaluate.log_likelihood(
            model, x, k=args.k, seed=config.seed, distributed=True, progress=shown
        )
    means, _, kls = evaluate.posterior_stats(model, x)
    # bits per dimension are a code length: only where p(x|z) is a probability of discrete x
    n_dims = math.prod(model.x_shape)
    bits = evaluate.bits_per_dim(ll["nll_nats"], n_dims) if is_discrete(model, x) else None
    result = {
        "run": str(args.run),
        "split": args.split,
        "n": scores["n"],
        "k": args.k,
        "precision": args.precision,  # of the importance-sampled estimate
        "nll_nats": ll["nll_nats"],
        "nll_se": ll["nll_se"],
        "bits_per_dim": bits,
        "elbo": scores["elbo"],
        "elbo_se": scores["elbo_se"],
        "reconstruction": scores["reconstruction"],
        "kl": scores["kl"],
        # a variance over the examples: undefined for one
        "active_units": evaluate.active_units(means) if len(means) > 1 else None,
        "kl_per_dim": kls.double().mean(0).tolist(),
        "ess_mean": ll["ess_mean"],
    }
    if args.exact:
        exact = evaluate.exact_log_px(model, x)
        result["exact_nll_nats"] = -exact["log_px"]
        result["exact_nll_se"] = exact["log_px_se"]
    if args.ais:
        nll = -evaluate.ais_log_px(model, x, steps=args.ais, seed=config.seed, progress=shown)
        result["ais_nll_nats"] = nll.mean().item()
        result["ais_nll_se"] = standard_error(nll)
    main = ranks.is_main()
    ranks.close()
    if not main:  # rank 0 prints for all
        return
    if args.save:  # the test split's result is the one the report shows
        name = "eval.json" if args.split == "test" else f"eval-{args.split}.json"
        saved = Path(args.run) / name
        write_json(saved, result)
        record_in_manifest(args.run, saved)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.run} ({args.split}, {result['n']} examples), nats per example:")
    print(
        f"  -log p(x), K={args.k:<6} {result['nll_nats']:10.3f} ± {result['nll_se']:.3f}"
        + (f"   ({bits:.4f} bits/dim)" if bits is not None else "")
        + ("   (networks in bf16)" if args.precision == "bf16" else "")
    )
    if args.exact:
        print(
            f"  -log p(x), exact     {result['exact_nll_nats']:10.3f} ± "
            f"{result['exact_nll_se']:.3f}   (linear-Gaussian closed form)"
        )
    if args.ais:
        print(
            f"  -log p(x), AIS       {result['ais_nll_nats']:10.3f} ± "
            f"{result['ais_nll_se']:.3f}   ({args.ais} annealing steps, "
            f"{evaluate.ais.CHAINS} HMC chains)"
        )
    print(f"  ELBO                 {result['elbo']:10.3f} ± {result['elbo_se']:.3f}")
    print(f"  E_q[log p(x|z)]      {result['reconstruction']:10.3f}")
    print(f"  KL                   {result['kl']:10.3f}")
    units = result["active_units"]
    print(f"  active units         {'—' if units is None else units:>6} of {model.latent_dim}")
    print(f"  mean ESS             {result['ess_mean']:10.1f} of {args.k}")
    if args.save:
        shows = " (vaelab report shows it)" if saved.name == "eval.json" else ""
        print(f"vaelab: written to {saved}{shows}")


def _progress(args, notice=None) -> progress.Reporter:
    """What a long command shows on stderr as it works (:class:`vaelab.progress.Reporter`):
    nothing with --quiet or on a torchrun rank other than 0; ``notice`` words the line
    printed before a long stage."""
    enabled = not args.quiet and ranks.is_main()
    return progress.Reporter(enabled, progress.interval(), notice)


def _expected(
    command: str, what: str, seconds: float, option: str | None, share: float, bound: str = ""
) -> str:
    """The line before a long stage: ``vaelab eval: K = 5,000 on 10,000 examples: about 6 min
    here; --k 100 answers in about 7 s`` (the option when it would take ``share`` < 1 of the
    time)."""
    line = f"vaelab {command}: {what}: {bound}about {progress.duration(seconds)} here"
    if option and share < 1:
        line += f"; {option} answers in about {progress.duration(seconds * share)}"
    return line


def _eval_notice(args, n: int):
    """The line ``vaelab eval`` prints before a long importance sampling or AIS."""

    def notice(desc: str, seconds: float, total: float) -> str | None:
        if desc == "importance sampling":
            what = f"K = {args.k:,} on {n:,} examples"
            return _expected("eval", what, seconds, f"--k {QUICK_K}", QUICK_K / args.k)
        if desc == "AIS":
            what = f"AIS with {args.ais:,} steps on {n:,} examples"
            return _expected("eval", what, seconds, f"--ais {QUICK_AIS}", QUICK_AIS / args.ais)
        return None

    return notice


def _gap(args) -> None:
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
    run = open_run(args.run, resolve_device(args.device))
    model, x = run.model, run.split("test")
    if args.n > len(x):
        raise VaelabError(f"--n {args.n} is more than the {len(x)} test images; lower --n")
    result = measure_gap(
        model, x[: args.n], steps=args.steps, k=args.k, lr=args.lr, samples=args.samples,
        ais_steps=args.ais_steps, ais_chains=args.ais_chains, seed=config.seed,
        progress=_progress(args, _gap_notice(args)),
    )  # fmt: skip
    result.pop("trace")
    if args.json:
        print(json.dumps({"run": str(args.run), **result}))
        return
    print(gap_table(result, args.run))


def _gap_notice(args):
    """The line ``vaelab gap`` prints before each long stage, with its quicker option."""

    def notice(desc: str, seconds: float, total: float) -> str | None:
        what, bound = f"{desc}, {args.n:,} images", ""
        option, share = f"--n {QUICK_IMAGES}", QUICK_IMAGES / args.n
        if desc == "fitting q*":
            option, share = f"--steps {QUICK_STEPS}", QUICK_STEPS / total
            if args.steps is None:  # total is the step limit: it stops when converged
                bound = "at most "
        elif desc.endswith("importance sampling"):
            option, share = f"--k {QUICK_K}", QUICK_K / args.k
        elif desc == "AIS":
            option, share = f"--ais-steps {QUICK_AIS}", QUICK_AIS / args.ais_steps
        return _expected("gap", what, seconds, option, share, bound)

    return notice


def _disentangle(args) -> None:
    config = load_config(args.run)
    if config.data != "shapes":
        raise VaelabError(
            f"{args.run} was trained on {config.data!r}; the metrics need the ground-truth "
            "factors of --data shapes"
        )
    model = open_run(args.run).model
    shown = _progress(args, _disentangle_notice(args))
    scores = score_run(model, config.image_size or 64, args.n, args.seed, args.trees, shown)
    scores = {"run": str(args.run), **scores}
    if args.json:
        print(json.dumps(scores))
        return
    print(f"{args.run}: disentanglement of the encoder means, {args.n} points per metric")
    for key, value in scores.items():
        if key not in ("run", "n"):
            print(f"  {key:<24} {value:.3f}")


def _disentangle_notice(args):
    """The line ``vaelab disentangle`` prints before a long metric."""

    def notice(desc: str, seconds: float, total: float) -> str | None:
        what = f"{desc} on {args.n:,} points"
        option = f"--n {QUICK_POINTS}"
        return _expected("disentangle", what, seconds, option, QUICK_POINTS / args.n)

    return notice


def _encode(args) -> None:
    device = resolve_device(args.device)
    shown = _progress(args, _encode_notice)
    n = encode(
        args.run, args.data, args.out, args.samples, args.seed, device, args.overwrite, shown
    )
    record_in_manifest(args.run, args.out)
    what = written(load_config(args.run).posterior, args.samples)
    print(f"vaelab: q(z|x) of {n} examples ({what}) written to {args.out}")


def _encode_notice(desc: str, seconds: float, total: float) -> str:
    """The line ``vaelab encode`` prints before a long encoding."""
    return _expected("encode", f"{total:,.0f} examples", seconds, None, 1.0)


def _sample(args) -> None:
    load_config(args.run)  # first: a wrong run is the likelier mistake
    out = Path(args.out) if args.out else Path(args.run) / "plots" / "samples_grid.png"
    if out.is_dir() or out.suffix.lower() != ".png":
        raise VaelabError(f"--out {out} must be the path of a .png file")
    if not out.parent.is_dir():
        raise VaelabError(f"folder {out.parent} does not exist; create it or choose --out")
    model = open_run(args.run).model
    torch.manual_seed(args.seed)
    images = model.sample(args.n).numpy()
    save_grid_png(images, out)
    record_in_manifest(args.run, out)
    print(f"vaelab: {args.n} samples from the prior written to {out}")


def _plot(args) -> None:
    run = open_run(args.run)
    config, model = run.config, run.model
    # the posterior-gap plots: 2-D runs with one Gaussian q (not hvae2's two layers)
    gap_plots = model.latent_dim == 2 and config.arch != "hvae2"
    if args.gap and not gap_plots:
        raise VaelabError(
            f"--gap draws the true posterior of a 2-D latent space under one Gaussian q; "
            f"{args.run} has {model.latent_dim} latent dimensions and --arch {config.arch} "
            "(train with --latent-dim 2 and --arch mlp or conv)"
        )
    dataset = run.data()
    plot_dir = Path(args.run) / "plots"
    shown = _progress(args, _plot_notice)
    # the same seed as at the end of training, so that the plots come out as they were drawn
    if args.gap:
        paths = draw_gap(model, dataset, plot_dir, config.resolved_binarize, progress=shown)
    else:  # every plot, the posterior-gap ones too where the run has them
        metrics = read_metrics(args.run)
        paths = draw_run(
            model, dataset, metrics, plot_dir, config.resolved_binarize, gap_budget=None,
            progress=shown,
        )  # fmt: skip
    record_in_manifest(args.run, plot_dir)
    print(f"vaelab: {len(paths)} plots written to {plot_dir}")


def _plot_notice(desc: str, seconds: float, total: float) -> str:
    """The line ``vaelab plot`` prints before a long stage (the fit of q* stops when it has
    converged: its time is a bound)."""
    bound = "at most " if desc == "fitting q*" else ""
    return _expected("plot", desc, seconds, None, 1.0, bound)


def _report(args) -> None:
    shown = _progress(args, _report_notice)
    if len(args.runs) == 1:
        out = write_report(args.runs[0], args.out, shown)
        record_in_manifest(args.runs[0], out)
    else:
        out = write_comparison(args.runs, args.out or "compare.html", shown)
    print(f"vaelab: report written to {out}")


def _report_notice(desc: str, seconds: float, total: float) -> str:
    """The line ``vaelab report`` prints before a long page."""
    return _expected("report", f"{total:.0f} parts (headline figures, plots)", seconds, None, 1.0)


def _explore(args) -> None:
    serve(
        args.run,
        host=args.host,
        port=args.port,
        open_browser=args.open,
        allow_hosts=args.allow_host,
    )


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


def gap_table(r: dict, run) -> str:
    """The table ``vaelab gap`` prints, from :func:`measure_gap`'s result."""
    estimates = ", ".join(
        f"{name} {r['log_px_' + name]:.2f}" for name in ("is_amortized", "is_local", "ais")
        if "log_px_" + name in r
    )  # fmt: skip
    converged = "converged" if r["local_converged"] else "fixed number"
    family = r.get("family", "diagonal")
    lines = [
        f"{run}: {r['n']} test images, q and q* in the family --posterior {family}, "
        "nats per image (± standard error)"
    ]
    rows = [
        ("log p^(x)", "log_px", f"best of {estimates}; K = {r['k']}"),
        ("ELBO, amortized q(z|x)", "elbo_amortized", "the encoder"),
        ("ELBO, per-datapoint q*", "elbo_local", f"{r['local_steps']} Adam steps ({converged})"),
        ("approximation gap", "approximation_gap", "log p^(x) - ELBO(q*)"),
        ("amortization gap", "amortization_gap", "ELBO(q*) - ELBO(q)"),
    ]
    for label, key, note in rows:
        lines.append(f"  {label:24s} {r[key]:10.3f} ± {r[key + '_se']:.3f}   {note}")
    # peak memory is measured on CUDA only (None elsewhere): a dash, never a made-up 0.0
    amortized, local = (
        "—" if r[key] is None else f"{r[key]:.1f}"
        for key in ("memory_amortized_mb", "memory_local_mb")
    )
    lines += [
        "price of inferring the posteriors of these images:",
        f"  {'':24s} {'seconds':>10s} {'peak MiB':>9s} {'parameters':>11s}",
        f"  {'amortized (one pass)':24s} {r['seconds_amortized']:10.4f} "
        f"{amortized:>9s} {r['params_amortized']:11,d}   "
        f"{'encoder and flow' if family == 'iaf' else 'encoder'}, fixed",
        f"  {'per-datapoint (Adam)':24s} {r['seconds_local']:10.2f} "
        f"{local:>9s} {r['params_local']:11,d}   "
        f"{r['params_local'] // r['n']:,} per image ({family}), grows",
    ]
    if r["memory_amortized_mb"] is None:
        lines.append("  (peak MiB: measured on CUDA only)")
    return "\n".join(lines)
