"""`vaelab report`: one self-contained HTML page per run, written at the end of training too,
and a page comparing runs side by side."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest

from vaelab import Config, train
from vaelab import report as report_mod
from vaelab.cli import main

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
