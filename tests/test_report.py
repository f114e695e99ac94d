"""`vaelab report`: one self-contained HTML page per run, written at the end of training too,
and a page comparing runs side by side."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from vaelab import Config, open_run, plots, train
from vaelab import report as report_mod
from vaelab.cli import main
from vaelab.evaluate import active_units, posterior_stats

EMBEDDED = re.compile(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """A different 1-epoch run (3-D latent) to compare with the session's digits run."""
    out = tmp_path_factory.mktemp("runs") / "digits3d"
    config = Config(data="digits", latent_dim=3, epochs=1, out=str(out), hidden=[32])
    return train(config, progress=False, log=lambda _: None)


def test_training_writes_a_self_contained_report(digits_run):
    page = (digits_run / "report.html").read_text()
    plots = sorted((digits_run / "plots").glob("*.png"))
    embedded = dict(EMBEDDED.findall(page))
    # every plot of the run is in the page, byte for byte, with its caption
    assert sorted(embedded) == [p.name for p in plots]
    for path in plots:
        assert base64.b64decode(embedded[path.name]) == path.read_bytes()
        assert report_mod.CAPTIONS[path.name].replace("'", "&#x27;") in page
    # nothing is fetched from anywhere: no URL and no reference to a neighbouring file
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page
    # the headline opens with the test ELBO of summary.json, then the configuration
    summary = json.loads((digits_run / "summary.json").read_text())
    test = summary["test"]
    assert f"{test['elbo']:.2f} ± {test['elbo_se']:.2f}" in page
    assert f"{test['kl']:.2f}" in page
    assert page.index("id=headline") < page.index("id=config") < page.index("<figure>")
    assert "latent_dim = 2" in page
    assert "of 2</td>" in page  # active units out of the latent size


def test_report_command_rewrites_the_page_and_shows_a_recorded_nll(digits_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    (run / "report.html").unlink()
    (run / "eval.json").write_text(json.dumps({"nll_nats": 23.4567, "nll_se": 0.25, "k": 500}))
    assert main(["report", str(run)]) == 0
    assert f"report written to {run / 'report.html'}" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert "23.46 ± 0.25 (K = 500)" in page
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file


def test_comparison_puts_runs_side_by_side(digits_run, second_run, tmp_path, capsys):
    out = tmp_path / "compare.html"
    assert main(["report", str(digits_run), str(second_run), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text()
    assert "2 runs compared" in page
    assert "digits2d" in page and "digits3d" in page
    alts = [alt for alt, _ in EMBEDDED.findall(page)]
    assert alts[0] == "learning curves"  # both runs' validation ELBO on one axis comes first
    # each plot the two runs share appears once per run, in one row of two columns
    assert alts.count("manifold.png") == 2 and alts.count("kl_per_dim.png") == 2
    assert "grid-template-columns:repeat(2,1fr)" in page
    assert "latent_dim = 3" in page and "latent_dim = 2" in page


def test_comparison_goes_to_compare_html_in_the_current_folder(
    digits_run, second_run, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(digits_run), str(second_run)]) == 0
    assert (tmp_path / "compare.html").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "{tmp}/missing"], "does not exist"),
        (["report", "{tmp}"], "is not a finished vaelab run"),
        (["report", "{run}", "--out", "{tmp}/no/such/folder/r.html"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(digits_run, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, run=digits_run) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_report_that_fails_costs_a_warning_not_the_run(tmp_path, monkeypatch):
    """A report that cannot be drawn (a bug in it, say) must not cost the trained run; a
    report that cannot be written (a full disk) stops the run for --resume, as any write."""

    def broken(run, out=None):
        raise ValueError("no glyph for ±")

    monkeypatch.setattr("vaelab.runs.write_report", broken)  # where the run reads it
    lines = []
    out = tmp_path / "run"
    config = Config(data="digits", latent_dim=2, epochs=1, out=str(out), hidden=[16])
    train(config, progress=False, log=lines.append)
    assert (out / "model.safetensors").is_file() and (out / "summary.json").is_file()
    assert not (out / "report.html").exists()
    assert any("warning: no report.html (no glyph for ±)" in line for line in lines)
    assert not out.with_name("run.partial").exists()


def test_a_link_in_plots_is_not_embedded(digits_run, tmp_path):
    """A run folder from someone else cannot make the report embed a private file."""
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    secret = tmp_path / "id_rsa"
    secret.write_bytes(b"PRIVATE KEY " * 20)
    (run / "plots" / "key.png").symlink_to(secret)
    (run / "plots" / "latent_space.png").unlink()
    (run / "plots" / "latent_space.png").symlink_to(secret)
    page = report_mod.write_report(run).read_text()
    assert base64.b64encode(secret.read_bytes())[:40].decode() not in page
    assert "key.png" not in page and "latent_space.png" not in page
    assert "manifold.png" in page  # the run's own plots are still there


def test_the_configuration_shows_what_differs_from_the_defaults_and_folds_the_rest(digits_run):
    page = (digits_run / "report.html").read_text()
    table = page[page.index("<table id=config>") : page.index("</table>", page.index("id=config"))]
    rows = dict(re.findall(r"<tr><th>([a-z_0-9]+)</th><td>(.*?)</td>", table))
    # the fixture's Config(data="digits", latent_dim=2, epochs=2, out=..., hidden=[64]), and
    # what the defaults chose from the data ("auto" resolved); nothing left at its default
    assert {"latent_dim": "2", "epochs": "2", "hidden": "[64]"}.items() <= rows.items()
    assert rows["likelihood"] == "&quot;bernoulli&quot;" and "default &quot;auto&quot;" in table
    assert "data" not in rows and "sigma" not in rows and "seed" not in rows
    assert f"{len(rows)} of " in page and "keys differ from vaelab's defaults" in page
    # the whole config.toml, folded, as written
    folded = re.search(r"<details><summary>.*?</summary><pre class=toml>(.*?)</pre>", page, re.S)
    assert html.unescape(folded.group(1)) == (digits_run / "config.toml").read_text()


@pytest.fixture(scope="module")
def collapsed_run(tmp_path_factory):
    """A real run with most of its 10 latent dimensions collapsed: 8 numbers per row that
    are two factors plus noise, modelled with the noise's own sigma, so that two dimensions
    carry the factors and the others stay at the prior. Each column has variance 1, so the
    data read the same whether or not they are standardized."""
    root = tmp_path_factory.mktemp("collapsed")
    rng = np.random.default_rng(0)
    # factor 1 on columns 0-3, factor 2 on 4-7; loading^2 + noise^2 = 1
    loadings = np.kron(np.eye(2), np.ones(4)) * np.sqrt(1 - 0.25**2)
    x = rng.normal(size=(2000, 2)) @ loadings + 0.25 * rng.normal(size=(2000, 8))
    np.save(root / "two_factors.npy", x.astype(np.float32))
    config = Config(data=str(root / "two_factors.npy"), latent_dim=10, hidden=[32], epochs=20,
                    lr=1e-2, likelihood="gaussian", sigma=0.25, out=str(root / "run"))  # fmt: skip
    return train(config, progress=False, log=lambda _: None)


def test_active_units_are_counted_as_the_kl_plot_shows_them(collapsed_run):
    """Two counts, each naming its criterion: Burda's active units (the posterior mean moves
    with x) and the dimensions above kl_per_dim.png's dashed line, counted from the same
    test examples as the plot, so the report never reads '10 of 10' beside grey bars."""
    run = open_run(collapsed_run)
    x = run.split("test")
    means, _, kls = posterior_stats(run.model, x)
    kl = kls.mean(0).numpy()
    above = int((kl > plots.ACTIVE_KL).sum())
    assert 2 <= above < 10  # the factors are carried, most dimensions collapsed
    page = (collapsed_run / "report.html").read_text()
    headline = dict(re.findall(r"<tr><th>([^<]+)</th><td class=num>([^<]*)</td>", page))
    kl_row = "dimensions with mean KL &gt; 0.01 nats (kl_per_dim.png)"
    units_row = "active units: Cov_x(E_q[z_d]) &gt; 0.01 (Burda et al.)"
    assert headline[kl_row] == f"{above} of 10"
    assert headline[units_row] == f"{active_units(means)} of 10"
    # the plot of the same run draws the same count: its title, its coloured bars
    figure = plots.kl_per_dim(kl)
    assert f"{above} of 10 above 0.01 nats" in figure.axes[0].get_title().replace("\n", " ")
    with Image.open(collapsed_run / "plots" / "kl_per_dim.png") as png:
        assert png.size == tuple(round(v * 110) for v in figure.get_size_inches())
    assert "dashed line" in report_mod.CAPTIONS["kl_per_dim.png"]


def test_a_2d_run_without_its_gap_figures_says_how_to_draw_them(digits_run, tmp_path):
    page = (digits_run / "report.html").read_text()
    assert "posterior_gap.png" in dict(EMBEDDED.findall(page)) and "id=gap-note" not in page
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    (run / "plots" / "posterior_gap.png").unlink()
    (run / "plots" / "local_elbo_trace.png").unlink()
    page = report_mod.write_report(run).read_text()
    note = re.search(r"<p id=gap-note>(.*?)</p>", page).group(1)
    assert "posterior_gap.png and local_elbo_trace.png: not drawn" in note
    assert f"<code>vaelab plot {run}</code>" in note
    # and the command it names draws them
    assert main(["plot", str(run)]) == 0
    assert "id=gap-note" not in report_mod.write_report(run).read_text()
