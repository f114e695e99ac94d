"""The model's contracts: reparameterized sampling, shapes, networks, save and load."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vaelab import Config, VaelabError, load, reparameterize
from vaelab.build import build_model
from vaelab.checkpoint import save_model


def test_reparameterized_samples_have_the_posterior_moments():
    torch.manual_seed(0)
    loc = torch.tensor([[0.5, -2.0, 3.0]])
    log_var = torch.tensor([[0.0, math.log(4.0), math.log(0.01)]])
    z = reparameterize(loc, log_var, k=200_000)  # (K, B, D)
    assert z.shape == (200_000, 1, 3)
    se_mean = log_var.exp().sqrt() / math.sqrt(200_000)
    assert ((z.mean(0) - loc).abs() < 5 * se_mean).all()
    var = z.var(0)
    assert torch.allclose(var, log_var.exp(), rtol=0.02)


def test_gradients_reach_loc_and_log_var():
    torch.manual_seed(0)
    loc = torch.zeros(4, 2, requires_grad=True)
    log_var = torch.zeros(4, 2, requires_grad=True)
    z = reparameterize(loc, log_var, k=1000)
    # d/d loc of sum z = K per entry; d/d log_var of sum z^2 = sum exp(log_var) eps^2 ~ K
    (z.sum() + (z**2).sum()).backward()
    assert loc.grad is not None and log_var.grad is not None
    assert torch.allclose(loc.grad, torch.full_like(loc, 1000.0), rtol=0.2)
    assert (log_var.grad > 500).all()


@pytest.mark.parametrize("arch", ["mlp", "conv", "broadcast"])
@pytest.mark.parametrize("x_shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_many_z_for_one_x_has_shape_k_batch_latent(arch, x_shape):
    torch.manual_seed(0)
    model = build_model(
        Config(likelihood="bernoulli", arch=arch, latent_dim=3, hidden=[32]), x_shape
    )
    x = torch.rand(5, *x_shape).bernoulli()
    qz = model.q_z(x)
    z = qz.rsample((7,))
    assert z.shape == (7, 5, 3)
    px = model.p_x(z)
    assert px.event_shape == x_shape
    assert model.log_joint(x, z).shape == (7, 5)
    assert model.decode(z).shape == (7, 5, *x_shape)
    assert model.sample(4).shape == (4, *x_shape)
    assert model.elbo(x).shape == (5,)


def test_conv_refuses_images_it_cannot_take():
    with pytest.raises(VaelabError, match="--arch mlp"):
        build_model(Config(likelihood="bernoulli", arch="conv"), (1, 8, 8))


def test_the_config_knows_every_arch_built_on_the_conv_encoder():
    """config.CONV_ARCHS (the images-only and --decoder-bias checks) and the networks' table
    of conv decoders name the same arches."""
    from vaelab.config import CONV_ARCHS
    from vaelab.core.networks import CONV_DECODERS

    assert set(CONV_ARCHS) == set(CONV_DECODERS)


def test_learned_sigma_is_a_parameter_with_gradient():
    model = build_model(Config(likelihood="gaussian", learn_sigma=True, latent_dim=2), (1, 8, 8))
    x = torch.rand(16, 1, 8, 8)
    (-model.elbo(x).mean()).backward()
    assert model.likelihood.log_scale.grad is not None
    assert model.likelihood.log_scale.shape == (1, 8, 8)


def _trained_like(tmp_path, **kw):
    torch.manual_seed(1)
    config = Config(**{"likelihood": "bernoulli", "latent_dim": 3, "hidden": [16], **kw})
    model = build_model(config, (1, 8, 8))
    for p in model.parameters():  # move away from the initialisation
        torch.nn.init.normal_(p, std=0.3)
    save_model(tmp_path, model, config)
    return model


@pytest.mark.parametrize(
    "kw", [{}, {"likelihood": "gaussian", "learn_sigma": True}, {"activation": "gated"}]
)
def test_save_then_load_gives_identical_outputs(tmp_path, kw):
    model = _trained_like(tmp_path, **kw)
    loaded = load(tmp_path)
    x = torch.rand(10, 1, 8, 8)
    z = torch.randn(6, 3)
    assert torch.equal(model.q_z(x).mean, loaded.q_z(x).mean)
    assert torch.equal(model.q_z(x).stddev, loaded.q_z(x).stddev)
    assert torch.equal(model.decode(z), loaded.decode(z))
    assert torch.equal(model.p_x(z).log_prob(x[:6]), loaded.p_x(z).log_prob(x[:6]))


def test_load_refuses_weights_of_another_configuration(tmp_path):
    _trained_like(tmp_path)
    text = (tmp_path / "config.toml").read_text().replace("latent_dim = 3", "latent_dim = 4")
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(VaelabError, match="does not match"):
        load(tmp_path)


def test_load_refuses_truncated_and_foreign_files(tmp_path):
    _trained_like(tmp_path)
    weights = tmp_path / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VaelabError, match="safetensors"):
        load(tmp_path)
    # a valid safetensors file that vaelab did not write
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    weights.write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    with pytest.raises(VaelabError, match="not a vaelab model"):
        load(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(VaelabError, match="not a vaelab run"):
        load(tmp_path / "elsewhere")
    with pytest.raises(VaelabError, match="does not exist"):
        load(tmp_path / "missing")


def test_sampling_in_chunks_gives_what_one_pass_gives():
    model = build_model(
        Config(likelihood="bernoulli", hidden=[16], latent_dim=3), (1, 8, 8)
    ).eval()
    torch.manual_seed(5)
    whole = model.sample(25, chunk=25)
    torch.manual_seed(5)
    assert torch.allclose(model.sample(25, chunk=7), whole, atol=1e-6)
    assert model.sample(10_001, chunk=4096).shape == (10_001, 1, 8, 8)


def test_log_variance_is_bounded_by_construction_and_unchanged_in_its_working_range():
    from vaelab.core.gaussian import LOG_VAR_BOUND, bounded_log_var

    working = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    assert torch.equal(bounded_log_var(working), working)
    beyond = torch.linspace(-60, 60, 2001, dtype=torch.float64)
    assert (torch.diff(bounded_log_var(beyond)) > 0).all()  # increasing: no flat clamp
    extreme = torch.tensor([-1e6, -500.0, 500.0, 1e6], dtype=torch.float64, requires_grad=True)
    bounded = bounded_log_var(extreme)
    assert (bounded.abs() <= LOG_VAR_BOUND).all()
    bounded.sum().backward()
    assert torch.isfinite(extreme.grad).all()

    # an encoder whose log-variance has run away still gives finite densities and gradients
    model = build_model(Config(likelihood="bernoulli", hidden=[16], latent_dim=3), (1, 8, 8))
    with torch.no_grad():
        model.encoder.net[-1].bias[3:] = torch.tensor([1e4, -1e4, 0.0])
    from vaelab import objectives

    x = (torch.rand(4, 1, 8, 8) < 0.5).float()
    terms = objectives.elbo(model, x)
    terms.loss.backward()
    assert torch.isfinite(terms.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_gated_conv_decoder_gates_its_hidden_layers_and_keeps_the_shapes():
    from vaelab.core.networks import GatedConvTranspose2d

    config = Config(arch="gated-conv", likelihood="bernoulli", hidden=[32], latent_dim=4)
    model = build_model(config, (1, 28, 28))
    assert any(isinstance(m, GatedConvTranspose2d) for m in model.decoder.modules())
    z = torch.randn(3, 2, 4)
    assert model.decoder(z).shape == (3, 2, 1, 28, 28)
    x = torch.bernoulli(torch.rand(2, 1, 28, 28))
    model.elbo(x).sum().backward()
    gate = next(m for m in model.decoder.modules() if isinstance(m, GatedConvTranspose2d))
    assert gate.gate.weight.grad is not None


def test_broadcast_decoder_is_convolutions_over_z_tiled_beside_the_pixel_coordinates():
    """--arch broadcast: the decoder's first layer, computed as W_z z + W_c (x, y), equals a
    1x1 convolution over the input Watters et al. build: z tiled over the grid, then a channel
    of x (left to right) and one of y (top to bottom), both in [-1, 1]."""
    torch.manual_seed(0)
    config = Config(arch="broadcast", likelihood="bernoulli", hidden=[6, 5], latent_dim=3)
    decoder = build_model(config, (2, 28, 28)).decoder
    z = torch.randn(4, 3)
    lin = torch.linspace(-1, 1, 28)
    x_channel = lin.expand(28, 28)  # varies along the width
    y_channel = lin[:, None].expand(28, 28)  # varies along the height
    tiled = torch.cat(
        [
            z[:, :, None, None].expand(4, 3, 28, 28),
            torch.stack([x_channel, y_channel]).expand(4, 2, 28, 28),
        ],
        dim=1,
    )
    weight = torch.cat([decoder.from_z.weight, decoder.from_coords.weight[:, :, 0, 0]], dim=1)
    first = torch.nn.functional.conv2d(tiled, weight[:, :, None, None], decoder.from_z.bias)
    expected = decoder.convs(first)
    torch.testing.assert_close(decoder(z), expected)
    assert decoder(z).shape == (4, 2, 28, 28)
    # stride 1 throughout: every layer after the first sees the full 28 x 28 grid
    convs = [m for m in decoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (1, 1)]
    assert all(c.stride == (1, 1) for c in convs)


def test_gated_mlp_units_are_value_times_sigmoid_gate():
    """--activation gated: each hidden layer is h = (W_a x + b_a) * sigmoid(W_g x + b_g),
    computed here from the layer's own weights; the output layers stay linear."""
    from vaelab.core.networks import GatedLinear

    config = Config(likelihood="bernoulli", hidden=[12, 10], latent_dim=3, activation="gated")
    model = build_model(config, (1, 8, 8))
    gates = [m for m in model.modules() if isinstance(m, GatedLinear)]
    assert len(gates) == 4  # two hidden layers in the encoder, two in the decoder
    assert not any(isinstance(m, (torch.nn.Tanh, torch.nn.ReLU)) for m in model.modules())
    first = model.encoder.net[0]
    x = torch.rand(5, 64)
    w, b = first.both.weight, first.both.bias
    expected = (x @ w[:12].T + b[:12]) * torch.sigmoid(x @ w[12:].T + b[12:])
    torch.testing.assert_close(first(x), expected)
    assert model.decoder.output.out_features == 64
    loss = -model.elbo(torch.bernoulli(torch.rand(4, 1, 8, 8))).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
