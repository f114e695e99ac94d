"""The trainer's fast path computes what a plain, obviously-correct VAE step computes."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from vaelab import VAE, Config, objectives


def _plain_loss(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The textbook step, written out: encoder -> reparameterize with the given noise ->
    decoder logits -> binary cross-entropy summed over pixels + closed-form Gaussian KL,
    averaged over the batch."""
    h = model.encoder.net(x.flatten(1))
    mu, log_var = h.chunk(2, dim=-1)
    z = mu + torch.exp(0.5 * log_var) * eps
    logits = model.decoder(z).flatten(1)
    rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1)
    kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(1)
    return (rec + kl).mean()


def test_elbo_loss_and_gradients_equal_a_plain_step_on_the_same_noise():
    torch.manual_seed(0)
    config = Config(likelihood="bernoulli", hidden=[64], latent_dim=5)
    model = VAE.from_config(config, (1, 8, 8)).double()
    x = torch.rand(32, 1, 8, 8, dtype=torch.float64).bernoulli()
    state = torch.get_rng_state()
    terms = objectives.elbo(model, x)
    ours = torch.autograd.grad(terms.loss, list(model.parameters()))
    torch.set_rng_state(state)  # the same eps that q.rsample drew
    eps = torch.randn(1, 32, 5, dtype=torch.float64)[0]
    plain = _plain_loss(model, x, eps)
    theirs = torch.autograd.grad(plain, list(model.parameters()))
    torch.testing.assert_close(terms.loss, plain, rtol=1e-12, atol=1e-10)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_fused_adam_step_equals_the_plain_adam_update():
    """The trainer's optimizer (fused Adam, with its skip input clear) moves the weights as
    the textbook Adam update does; with the skip input set, not at all."""
    torch.manual_seed(1)
    weights = [torch.randn(7, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    grads = [torch.randn_like(w) for w in weights]
    plain = [w.detach().clone() for w in weights]
    fused = torch.optim.Adam(weights, lr=1e-2, eps=1e-8, fused=True)
    m = [torch.zeros_like(w) for w in plain]
    v = [torch.zeros_like(w) for w in plain]
    for t in range(1, 4):
        for w, g in zip(weights, grads, strict=True):
            w.grad = g.clone()
        fused.found_inf = torch.zeros(())
        fused.step()
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            m_hat, v_hat = m[i] / (1 - 0.9**t), v[i] / (1 - 0.999**t)
            plain[i] -= 1e-2 * m_hat / (v_hat.sqrt() + 1e-8)
    for w, p in zip(weights, plain, strict=True):
        torch.testing.assert_close(w.detach(), p, rtol=1e-12, atol=1e-12)
    before = [w.detach().clone() for w in weights]
    for w in weights:
        w.grad = torch.full_like(w, float("nan"))
    fused.found_inf = torch.ones(())
    fused.step()  # skipped on the device: weights, moments and step count unchanged
    for w, b in zip(weights, before, strict=True):
        assert torch.equal(w.detach(), b)
    assert all(fused.state[w]["step"].item() == 3 for w in weights)
    assert all(torch.isfinite(fused.state[w]["exp_avg"]).all() for w in weights)
