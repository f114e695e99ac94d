"""FactorVAE: the permutation that samples prod_d q(z_d), the discriminator, and a run with
it that resumes exactly after SIGKILL (its discriminator is part of the checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.distributions import Independent, Normal

from vaelab.checkpoint import load
from vaelab.cli import main
from vaelab.data.shapes import Shapes
from vaelab.objectives.factor_vae import (
    Discriminator,
    discriminator_loss,
    permute_dims,
    tc_estimate,
)
from vaelab.training.critic import Critic

from .test_resume import finish, kill_once_under_way, metrics_without_timing, same_weights, vaelab


def _dependent_codes(b=2000, seed=0):
    """z_1 = z_0 + small noise: strongly dependent dimensions (TC large)."""
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(b, generator=g)
    z1 = z0 + 0.1 * torch.randn(b, generator=g)
    return torch.stack([z0, z1, torch.randn(b, generator=g)], 1)


def test_permutation_keeps_each_marginal_and_breaks_the_dependence():
    z = _dependent_codes()
    torch.manual_seed(0)
    shuffled = permute_dims(z)
    assert shuffled.shape == z.shape
    # each column holds the same multiset of values
    assert torch.equal(shuffled.sort(0).values, z.sort(0).values)
    assert np.corrcoef(z.T.numpy())[0, 1] > 0.99
    assert abs(np.corrcoef(shuffled.T.numpy())[0, 1]) < 0.1
    # the leading sample dimension (K, B, D) is permuted within each batch
    zk = torch.stack([z[:50], z[50:100]])
    assert torch.equal(permute_dims(zk)[1].sort(0).values, z[50:100].sort(0).values)


class _Codes:
    """A stand-in for the model: q(z | x) = N(x, 0.05^2), so z follows the dependent x."""

    def q_z(self, x):
        return Independent(Normal(x, torch.full_like(x, 0.05)), 1)


def test_discriminator_steps_lower_its_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    critic = Critic(3, hidden=(64, 64))
    x = _dependent_codes(256)

    def loss_now():
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)  # the same permutation each time
            return discriminator_loss(critic.discriminator, x).item()

    before = loss_now()
    for _ in range(300):
        critic.step(_Codes(), x)
    after = loss_now()
    assert after < before - 0.05, (before, after)
    # and it has learnt the density ratio's sign: TC(z) estimated positive for dependent z
    with torch.no_grad():
        assert tc_estimate(critic.discriminator, x).mean() > 0


def test_the_vaes_tc_term_moves_z_and_never_the_discriminator():
    torch.manual_seed(0)
    disc = Discriminator(3, hidden=(8, 8))
    z = torch.randn(5, 3, requires_grad=True)
    tc_estimate(disc, z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())
    assert tc_estimate(disc, z).shape == (5,)


@pytest.fixture(scope="module")
def shapes_npy(tmp_path_factory):
    """A few hundred 32 x 32 shapes images as an array file: the run is seconds, not minutes."""
    path = tmp_path_factory.mktemp("data") / "shapes.npy"
    picks = np.random.default_rng(0).choice(len(Shapes(32)), 400, replace=False)
    np.save(path, Shapes(32).images(picks))
    return path


def _args(data, out):
    return [
        "train", "--data", str(data), "--hidden", "64", "--latent-dim", "4",
        "--batch-size", "64", "--factor-gamma", "10", "--epochs", "6",
        "--out", str(out), "--quiet",
    ]  # fmt: skip


def test_factor_vae_run_killed_resumes_to_the_same_weights_and_eval_loads_it(tmp_path, shapes_npy):
    reference, out = tmp_path / "reference", tmp_path / "run"
    uninterrupted = vaelab(*_args(shapes_npy, reference))  # the two side by side
    proc = vaelab(*_args(shapes_npy, out))
    kill_once_under_way(proc, tmp_path / "run.partial" / "metrics.jsonl", 2, seed=0)
    assert not out.exists(), "the run finished before it could be killed; lengthen it"
    code, _, err = finish(uninterrupted)
    assert code == 0, err
    # the discriminator is training state only: the model's weights file does not hold it
    weights = load_file(reference / "model.safetensors")
    assert not any("critic" in k or "discriminator" in k for k in weights)
    load(reference)
    checkpoint = load_file(tmp_path / "run.partial" / "checkpoints" / "last.safetensors")
    assert any(k.startswith("critic.weights.") for k in checkpoint)
    assert any(k.startswith("critic.optim.") for k in checkpoint)
    code, _, err = finish(vaelab("train", "--resume", str(out), "--quiet"))
    assert code == 0, err
    assert same_weights(out, reference)
    assert metrics_without_timing(out) == metrics_without_timing(reference)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tc-beta", "-1"], "tc_beta must be >= 0"),
        (["--factor-gamma", "-2"], "factor_gamma must be >= 0"),
        (["--factor-gamma", "10", "--inference", "local"], "use --inference amortized"),
        (["--tc-beta", "6", "--inference", "semi-amortized"], "use --inference amortized"),
        (["--tc-beta", "6", "--objective", "iwae"], "use --objective elbo"),
        (["--tc-beta", "6", "--factor-gamma", "10"], "choose one"),
    ],
)
def test_cli_refuses_nonsense_in_one_line(tmp_path, capsys, flags, message):
    assert main(["train", "--data", "digits", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()
