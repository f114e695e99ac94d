"""One self-contained HTML page per run, and one page that puts several runs side by side.

The page opens with the run's headline figures (test ELBO, the importance-sampled -log p(x)
when a benchmark or evaluation of the run recorded one, KL, active units by both criteria,
training time, throughput), then the configuration keys that differ from vaelab's defaults
(the whole configuration folded below them), then every PNG in ``RUN/plots`` with a caption
that says what it shows and how to read it. Images are embedded as base64 ``data:`` URIs, so
the file needs no network and no neighbouring files: it can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .checkpoint import open_run, read_metrics
from .config import default, read_toml
from .errors import VaelabError
from .evaluate import active_units, posterior_stats
from .files import read_regular, regular_files, write_atomic
from .plots import (
    ACTIVE_KL,
    GAP_IMAGES,
    GAP_PLOTS,
    PLOT_EXAMPLES,
    figure_png,
    valid_elbo_curves,
)
from .progress import Progress, silent

# what each plot of a run shows, and how to read it (one line each)
CAPTIONS = {
    "learning_curves.png": "ELBO, E_q[log p(x|z)] and KL per epoch, train and validation: "
    "a validation curve that turns down while training improves is overfitting.",
    "reconstructions.png": "Test images (top) above the decoder's mean for z = the posterior "
    "mean (bottom): what the code keeps of each image.",
    "samples.png": "Decoder means E[x|z] for z ~ p(z): what the model generates from the prior; "
    "blurry or off-manifold samples mean prior and aggregate posterior disagree.",
    "samples_grid.png": "A grid of samples from the prior written by `vaelab sample`.",
    "latent_space.png": "Posterior means of the test images in the two latent dimensions with "
    "the largest KL, coloured by label: clusters show what the code separates.",
    "manifold.png": "Decodings of a grid of z at prior quantiles 3%..97% in the two dimensions "
    "with the largest KL (others at 0): how the decoder fills the latent plane.",
    "posterior_samples.png": "Each ellipse is q(z|x) for one test image: 1σ (solid) and 2σ "
    "(dashed), with z ~ q(z|x) as dots and their decodings to the right.",
    "kl_per_dim.png": "Mean KL(q(z_d|x) || p(z_d)) over the test set per latent dimension, "
    f"on a log scale: coloured bars are above {ACTIVE_KL:g} nats (the dashed line), the count "
    "in the headline; grey bars are inactive (collapsed) dimensions that the decoder ignores.",
    "traversals.png": "One row per latent dimension, by KL: that dimension swept from -3 to 3 "
    "around one test image's code, the others fixed. A row that changes one thing (position, "
    "size, shape) is a disentangled dimension; a row that does not change is inactive.",
    "posterior_gap.png": "For four test images, the true posterior p(z|x) (grey, normalised on "
    "a grid) with the encoder's q(z|x) (red) and the per-datapoint optimum q*(z) (blue): the "
    "distance between red and blue is the amortization gap, between blue and grey the "
    "approximation gap of a Gaussian q.",
    "local_elbo_trace.png": f"The mean ELBO of q* fitted to each of {GAP_IMAGES} test images "
    "by Adam, climbing from the encoder's (dashed): its height above the dashed line is the "
    "amortization gap in nats (a picture; `vaelab gap` measures it with Cremer et al.'s "
    "protocol).",
}
PLOT_ORDER = list(CAPTIONS)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #eee;
text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.92em;margin-top:.3em}
.side{display:grid;gap:1em}.side figure{margin:0}
details pre{background:#f6f6f6;padding:.6em;overflow:auto}
#config td{font-family:monospace}#config td.default{color:#777}
details{margin-top:.8em}details pre.toml{columns:3 18em;white-space:pre-wrap;font-size:.85em}
"""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_run(run: str | Path) -> Path:
    """``run`` as a Path, or a VaelabError naming the fix when it is not a finished run."""
    run = Path(run)
    if not run.is_dir():
        raise VaelabError(f"run folder {run} does not exist; give the folder `vaelab train` wrote")
    if not (run / "config.toml").is_file() or not (run / "summary.json").is_file():
        raise VaelabError(
            f"{run} is not a finished vaelab run (no config.toml or summary.json); "
            "give the folder `vaelab train` wrote"
        )
    return run


# the two counts of the latent dimensions a run uses, as the headline names them
ACTIVE_UNITS = "active units: Cov_x(E_q[z_d]) > 0.01 (Burda et al.)"
KL_UNITS = f"dimensions with mean KL > {ACTIVE_KL:g} nats (kl_per_dim.png)"


def _posterior_figures(run: Path) -> dict:
    """How many latent dimensions the run uses, by two criteria, on the test examples that
    kl_per_dim.png is drawn from: Burda et al.'s active units (the posterior mean moves with
    x) and the dimensions whose mean KL is above :data:`~vaelab.plots.ACTIVE_KL` (the bars
    above the plot's dashed line). Mostly they agree; a dimension whose mean barely moves can
    still carry KL (a posterior narrower than the prior), and one with a variance of the mean
    just above 0.01 carries only 0.005 nats or more. {} if the data is gone or the test set
    has fewer than the two examples a variance needs."""
    try:
        opened = open_run(run)
        x = opened.split("test")[:PLOT_EXAMPLES]
    except (VaelabError, OSError):
        return {}
    if len(x) < 2:
        return {}
    means, _, kls = posterior_stats(opened.model, x)
    return {
        "active_units": active_units(means),
        "kl_units": int((kls.mean(0) > ACTIVE_KL).sum()),
        "latent_dim": opened.model.latent_dim,
    }


def headline(run: Path) -> dict:
    """The figures a reader wants first, from the run's files (None where a run lacks one).

    -log p(x) comes from ``eval.json`` (written by ``vaelab eval RUN --save``) or
    ``benchmark.json`` (the MNIST benchmark), whichever exists; without either, the cell
    says which command fills it.
    """
    summary = _read_json(run / "summary.json") or {}
    test = summary.get("test", {})
    # the run's name once published: the report of a new run is written in OUT.partial
    where = run.with_name(run.name.removesuffix(".partial"))
    figures = {
        "test ELBO": (test.get("elbo"), test.get("elbo_se")),
        "test E_q[log p(x|z)]": (test.get("reconstruction"), None),
        "test KL": (test.get("kl"), None),
        "-log p(x) estimate": f"— (vaelab eval {where} --save fills it)",
    }
    for name, nll, se, k in (
        ("eval.json", "nll_nats", "nll_se", "k"),
        ("benchmark.json", "test_nll", "test_nll_se", "k"),
    ):
        found = _read_json(run / name)
        if found and found.get(nll) is not None:
            figures["-log p(x) estimate"] = (found[nll], found.get(se), found.get(k))
            break
    post = _posterior_figures(run)
    for name, key in ((ACTIVE_UNITS, "active_units"), (KL_UNITS, "kl_units")):
        units = post.get(key)
        figures[name] = f"{units} of {post['latent_dim']}" if units is not None else None
    seconds = summary.get("train_seconds")
    figures["training time"] = None if seconds is None else f"{seconds:.1f} s"
    rate = summary.get("train_samples_per_sec")
    figures["samples/s (training)"] = None if rate is None else f"{rate:,.0f}"
    figures["epochs (kept)"] = f"{summary.get('epochs')} ({summary.get('kept_epoch')})"
    figures["parameters"] = f"{summary.get('n_parameters', 0):,}"
    figures["data"] = f"{summary.get('data')} {summary.get('x_shape')}"
    return figures


def _cell(value) -> str:
    if value is None or (isinstance(value, tuple) and value[0] is None):
        return "<td class=num>—</td>"
    if isinstance(value, tuple):
        text = f"{value[0]:.2f}"
        if len(value) > 1 and value[1] is not None:
            text += f" ± {value[1]:.2f}"
        if len(value) > 2 and value[2] is not None:
            text += f" (K = {value[2]})"
        return f"<td class=num>{html.escape(text)}</td>"
    return f"<td class=num>{html.escape(str(value))}</td>"


def _config_values(run: Path) -> dict | None:
    """The run's config.toml as a dict, or None when this version cannot read it."""
    try:
        return read_toml(run / "config.toml")
    except VaelabError:
        return None


def _configuration(run: Path, values: dict | None) -> str:
    """The keys of ``values`` whose value differs from its default
    (:func:`vaelab.config.default`), with the default beside it; then the whole config.toml,
    folded. What a run changed is what a reader wants; the ~50 keys left at their defaults
    (most of them options the run did not use) are one click away."""
    text = (run / "config.toml").read_text()
    full = (
        "<details><summary>the whole configuration (config.toml: re-run it with "
        f"<code>vaelab train --config config.toml</code>)</summary><pre class=toml>"
        f"{html.escape(text)}</pre></details>"
    )
    if values is None:  # a file this version cannot read: shown as it is
        return full
    changed = {k: v for k, v in values.items() if v != default(k)}
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td>"
        f"<td class=default>default {html.escape(json.dumps(default(k)))}</td></tr>"
        for k, v in changed.items()
    )
    return (
        f"<p>{len(changed)} of {len(values)} keys differ from vaelab's defaults:</p>"
        f"<table id=config>{rows}</table>{full}"
    )


def _gap_note(run: Path, values: dict | None) -> str:
    """A line saying how to draw the posterior-gap figures when a 2-D run lacks them (a run
    trained before they were drawn at the end of training, or whose plots were deleted)."""
    if values is None or values.get("latent_dim") != 2 or values.get("arch") == "hvae2":
        return ""
    missing = [n for n in GAP_PLOTS if not (run / "plots" / n).is_file()]
    if not missing:
        return ""
    # the run's name once published: the report of a new run is written in OUT.partial
    where = html.escape(str(run.with_name(run.name.removesuffix(".partial"))))
    return (
        f"<p id=gap-note>{' and '.join(missing)}: not drawn for this run. "
        f"<code>vaelab plot {where}</code> draws them (a few seconds), then "
        f"<code>vaelab report {where}</code> shows them here.</p>"
    )


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _plots(run: Path) -> list[Path]:
    """The run's PNGs: the known ones in reading order, then any others by name."""
    found = regular_files(run / "plots", "*.png", inside=run)
    order = {name: i for i, name in enumerate(PLOT_ORDER)}
    return sorted(found, key=lambda p: (order.get(p.name, len(order)), p.name))


def _figure(path: Path) -> str:
    caption = CAPTIONS.get(path.name, "A plot of this run.")
    return (
        f"<figure>{_img(read_regular(path), path.name)}<figcaption><b>{html.escape(path.name)}"
        f"</b>: {html.escape(caption)}</figcaption></figure>"
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def render(run: str | Path, progress: Progress = silent) -> str:
    """The HTML text of the report of one run (``progress`` is told of the headline figures
    and of each plot embedded)."""
    run = check_run(run)
    name = run.resolve().name.removesuffix(".partial")  # written before the run is published
    plots = _plots(run)
    with progress("report", 1 + len(plots), "parts") as task:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in headline(run).items()
        )
        task.update()
        embedded = []
        for path in plots:
            embedded.append(_figure(path))
            task.update()
    values = _config_values(run)
    figures = "".join(embedded) or "<p>This run has no plots.</p>"
    body = (
        f"<h1>vaelab run: {html.escape(name)}</h1>"
        f"<p>Log-densities in nats per example, summed over the data's dimensions.</p>"
        f"<h2>Headline figures</h2><table id=headline>{rows}</table>"
        f"<h2>Configuration</h2>{_configuration(run, values)}"
        f"<h2>Plots</h2>{_gap_note(run, values)}{figures}"
    )
    return _page(f"vaelab report: {name}", body)


def write_report(
    run: str | Path, out: str | Path | None = None, progress: Progress = silent
) -> Path:
    """Write the report of ``run`` to ``out`` (default ``RUN/report.html``), atomically."""
    run = check_run(run)  # first: a wrong run is the likelier mistake
    out = Path(out) if out else run / "report.html"
    _check_parent(out)
    write_atomic(out, render(run, progress))
    return out


def _check_parent(out: Path) -> None:
    if out.is_dir():
        raise VaelabError(f"--out {out} is a folder; give the path of an .html file")
    if not out.parent.is_dir():
        raise VaelabError(f"folder {out.parent} does not exist; create it or choose --out")


def _curves_png(runs: list[Path], names: list[str]) -> bytes | None:
    """Validation ELBO per epoch of every run on one axis, as PNG bytes (None: no metrics)."""
    curves = {}
    for run, name in zip(runs, names, strict=True):
        rows = [r for r in read_metrics(run) if "valid_elbo" in r]
        if rows:
            curves[name] = ([r["epoch"] for r in rows], [r["valid_elbo"] for r in rows])
    return figure_png(valid_elbo_curves(curves)) if curves else None


def render_comparison(runs: list[str | Path], progress: Progress = silent) -> str:
    """The HTML text of a page with the runs' figures and plots side by side, one column each
    (``progress`` is told of each run's headline figures and each row of plots)."""
    runs = [check_run(r) for r in runs]
    names = [r.resolve().name for r in runs]
    if len(set(names)) < len(names):  # two runs named alike: tell them apart by full path
        names = [str(r.resolve()) for r in runs]
    by_name = [{p.name: p for p in _plots(r)} for r in runs]
    all_names = sorted(
        {n for plots in by_name for n in plots},
        key=lambda n: (PLOT_ORDER.index(n) if n in PLOT_ORDER else len(PLOT_ORDER), n),
    )
    task = progress("report", len(runs) + len(all_names), "parts")
    tables = []
    for run in runs:
        tables.append(headline(run))
        task.update()
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th>{''.join(_cell(t.get(k)) for t in tables)}</tr>"
        for k in tables[0]
    )
    columns = f"style='grid-template-columns:repeat({len(runs)},1fr)'"
    body = [
        f"<h1>vaelab: {len(runs)} runs compared</h1>",
        f"<h2>Headline figures</h2><table id=headline><tr><th></th>{head}</tr>{rows}</table>",
    ]
    curves = _curves_png(runs, names)
    if curves:
        body.append(
            f"<h2>Learning curves</h2><figure>{_img(curves, 'learning curves')}<figcaption>"
            "Validation ELBO of each run per epoch, on one axis.</figcaption></figure>"
        )
    for plot in all_names:
        cells = []
        for name, plots in zip(names, by_name, strict=True):
            inner = _img(plots[plot].read_bytes(), plot) if plot in plots else "<p>(none)</p>"
            cells.append(f"<figure>{inner}<figcaption>{html.escape(name)}</figcaption></figure>")
        caption = html.escape(CAPTIONS.get(plot, "A plot of these runs."))
        body.append(f"<h2>{html.escape(plot)}</h2><p>{caption}</p>")
        body.append(f"<div class=side {columns}>{''.join(cells)}</div>")
        task.update()
    task.close()
    configs = "".join(
        f"<details><summary>{html.escape(n)}</summary><pre>"
        f"{html.escape((r / 'config.toml').read_text())}</pre></details>"
        for n, r in zip(names, runs, strict=True)
    )
    body.append(f"<h2>Configurations</h2>{configs}")
    return _page(f"vaelab: {len(runs)} runs compared", "".join(body))


def write_comparison(runs: list[str | Path], out: str | Path, progress: Progress = silent) -> Path:
    """Write the side-by-side page of ``runs`` to ``out``, atomically."""
    text = render_comparison(runs, progress)
    out = Path(out)
    _check_parent(out)
    write_atomic(out, text)
    return out
