"""Plain encoder and decoder networks: tensors in, tensors out, no probability in them.

- Encoders map ``x`` of shape ``(B, *x_shape)`` to ``(loc, log_var)``, each ``(B, latent_dim)``,
  and, given ``extra`` > 0, to ``(loc, log_var, rest)`` with ``rest`` ``(B, extra)``: what a
  richer posterior family reads besides (:mod:`vaelab.core.posteriors`).
- Decoders map ``z`` of shape ``(*batch, latent_dim)`` (any leading dimensions, e.g.
  ``(K, B)``) to the likelihood's parameters, shape ``(*batch, *x_shape)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import VaelabError

CONV_SIZES = {28: 2, 32: 2, 64: 3}  # image side -> number of stride-2 layers
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}  # and "gated": GatedLinear


class GatedLinear(nn.Module):
    """h = (W_a x + b_a) * sigmoid(W_g x + b_g): the gated dense unit of the VampPrior's code
    (Tomczak & Welling 2018; Dauphin et al. 2017's gate). Both maps are one Linear of width
    2 * n_out, so a layer is one matrix product: ``(*, n_in) -> (*, n_out)``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.both = nn.Linear(n_in, 2 * n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.both(x).chunk(2, dim=-1)
        return value * torch.sigmoid(gate)


def mlp(sizes: list[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]``, ``activation`` after each but the last;
    with ``gated`` each hidden layer is a :class:`GatedLinear` (no activation after it)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        hidden = i < len(sizes) - 2
        if hidden and activation == "gated":
            layers.append(GatedLinear(n_in, n_out))
            continue
        layers.append(nn.Linear(n_in, n_out))
        if hidden:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def split_outputs(out: torch.Tensor, latent_dim: int, extra: int) -> tuple[torch.Tensor, ...]:
    """An encoder's last layer ``(B, 2 D + extra)`` -> ``(loc, log_var)`` or, with ``extra``,
    ``(loc, log_var, rest)``."""
    if not extra:
        return tuple(out.chunk(2, dim=-1))
    return tuple(out.split([latent_dim, latent_dim, extra], dim=-1))


class MLPEncoder(nn.Module):
    """x -> flatten -> [Linear, activation] x len(hidden) -> Linear -> (loc, log_var), plus
    ``extra`` outputs when asked (:func:`split_outputs`).

    With ``hidden = []`` it is one linear map: the encoder of a linear VAE.
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        hidden: list[int],
        latent_dim: int,
        activation: str = "relu",
        extra: int = 0,
    ):
        super().__init__()
        self.latent_dim, self.extra = latent_dim, extra
        self.net = mlp([math.prod(x_shape), *hidden, 2 * latent_dim + extra], activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return split_outputs(self.net(x.flatten(1)), self.latent_dim, self.extra)


class MLPDecoder(nn.Module):
    """z -> [Linear, activation] x len(hidden) (mirrored) -> Linear -> reshape to x_shape.

    With ``hidden = []`` it is x = W z + b: with a Gaussian likelihood, the linear-Gaussian
    model of :mod:`vaelab.core.baselines` (``output`` is that last Linear).
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        hidden: list[int],
        latent_dim: int,
        activation: str = "relu",
    ):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.net = mlp([latent_dim, *reversed(hidden), math.prod(x_shape)], activation)

    @property
    def output(self) -> nn.Linear:
        """The last layer; its bias is the decoder's output for the average hidden state."""
        return self.net[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, self.x_shape)


def _check_conv_shape(x_shape: tuple[int, ...]) -> int:
    if len(x_shape) != 3 or x_shape[1] != x_shape[2] or x_shape[1] not in CONV_SIZES:
        raise VaelabError(
            f"--arch {', '.join(CONV_DECODERS)} take square 28x28, 32x32 or 64x64 images; "
            f"this data has shape {tuple(x_shape)}: use --arch mlp"
        )
    return CONV_SIZES[x_shape[1]]


class ConvEncoder(nn.Module):
    """x -> (Conv 4x4 stride 2, ReLU) x n -> Linear(hidden) -> ReLU -> Linear -> (loc, log_var)
    (and ``extra`` outputs, :func:`split_outputs`).

    Channels 32, 64, 64; 28 -> 14 -> 7, 32 -> 16 -> 8, 64 -> 32 -> 16 -> 8.
    """

    def __init__(
        self, x_shape: tuple[int, ...], hidden: list[int], latent_dim: int, extra: int = 0
    ):
        super().__init__()
        n_layers = _check_conv_shape(x_shape)
        channels = [x_shape[0], 32, 64, 64][: n_layers + 1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        side = x_shape[1] // 2**n_layers
        self.latent_dim, self.extra = latent_dim, extra
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.head = mlp([channels[-1] * side * side, hidden[0], 2 * latent_dim + extra])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return split_outputs(self.head(self.conv(x)), self.latent_dim, self.extra)


class ConvDecoder(nn.Module):
    """z -> Linear(hidden) -> ReLU -> Linear -> (ConvTranspose 4x4 stride 2) x n -> x_shape."""

    def __init__(self, x_shape: tuple[int, ...], hidden: list[int], latent_dim: int):
        super().__init__()
        n_layers = _check_conv_shape(x_shape)
        self.x_shape = tuple(x_shape)
        channels = [x_shape[0], 32, 64, 64][: n_layers + 1][::-1]
        self.side = x_shape[1] // 2**n_layers
        self.channels = channels[0]
        self.head = nn.Sequential(
            mlp([latent_dim, hidden[0], channels[0] * self.side * self.side]), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(channels) - 2:
                layers.append(nn.ReLU())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.head(z.reshape(-1, z.shape[-1]))
        h = h.view(-1, self.channels, self.side, self.side)
        return self.deconv(h).view(*batch, *self.x_shape)


class GatedConvTranspose2d(nn.Module):
    """h = A(x) * sigmoid(B(x)), A and B transposed convolutions of the same shape: the
    gated unit of Dauphin et al. (2017), used in the VampPrior's decoders (Tomczak & Welling
    2018). The gate lets each channel switch itself off, which eases deep decoders' training.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.value = nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding)
        self.gate = nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.value(h) * torch.sigmoid(self.gate(h))


class GatedConvDecoder(ConvDecoder):
    """:class:`ConvDecoder` whose hidden transposed convolutions are gated
    (:class:`GatedConvTranspose2d`, no ReLU after them); the output layer stays linear."""

    def __init__(self, x_shape: tuple[int, ...], hidden: list[int], latent_dim: int):
        super().__init__(x_shape, hidden, latent_dim)
        layers: list[nn.Module] = []
        convs = [m for m in self.deconv if isinstance(m, nn.ConvTranspose2d)]
        for conv in convs[:-1]:
            c_in, c_out = conv.in_channels, conv.out_channels
            layers.append(GatedConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
        self.deconv = nn.Sequential(*layers, convs[-1])


class BroadcastDecoder(nn.Module):
    """The spatial broadcast decoder (Watters et al. 2019): z is tiled over the image grid,
    two coordinate channels (x, y in [-1, 1]) are appended, and convolutions of stride 1 draw
    the image. Where an object is must be computed from the coordinates. On shapes this put x
    and y each on a dimension of its own, within about 20 degrees of the image's axes, where
    the MLP and deconv decoders turned the x-y plane freely (docs/benchmarks.md).

    Layers, channels ``hidden``: 1x1 on (z, x, y) -> [ReLU, 3x3] x (len(hidden) - 1) ->
    ReLU -> 1x1 to the output channels. The first layer is W_z z + W_c (x, y) + b, so it is
    computed as a ``(B, C, 1, 1)`` term plus a ``(1, C, H, W)`` one, never on the tiled input.
    """

    def __init__(self, x_shape: tuple[int, ...], hidden: list[int], latent_dim: int):
        super().__init__()
        self.x_shape = tuple(x_shape)
        side = x_shape[1]
        grid = torch.linspace(-1.0, 1.0, side)
        y, x = torch.meshgrid(grid, grid, indexing="ij")
        self.register_buffer("coords", torch.stack([x, y])[None], persistent=False)
        self.from_z = nn.Linear(latent_dim, hidden[0])
        self.from_coords = nn.Conv2d(2, hidden[0], 1, bias=False)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(hidden[:-1], hidden[1:], strict=True):
            layers += [nn.ReLU(), nn.Conv2d(c_in, c_out, 3, padding=1)]
        layers += [nn.ReLU(), nn.Conv2d(hidden[-1], x_shape[0], 1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.from_z(z.reshape(-1, z.shape[-1]))[:, :, None, None]
        h = h + self.from_coords(self.coords)
        return self.convs(h).view(*batch, *self.x_shape)


# --arch -> the decoder beside the conv encoder (config.CONV_ARCHS names the same three)
CONV_DECODERS = {
    "conv": ConvDecoder,
    "gated-conv": GatedConvDecoder,
    "broadcast": BroadcastDecoder,
}


def make_networks(
    arch: str,
    x_shape: tuple[int, ...],
    hidden: list[int],
    latent_dim: int,
    activation: str = "relu",
    out_shape: tuple[int, ...] | None = None,
    extra: int = 0,
):
    """(encoder, decoder) for ``arch`` in {mlp, conv, gated-conv, broadcast, linear};
    ``linear`` ignores ``hidden``; ``gated-conv`` is the conv encoder with
    :class:`GatedConvDecoder`, ``broadcast`` the conv encoder (head of width ``hidden[0]``)
    with :class:`BroadcastDecoder` (channels ``hidden``).

    The decoder emits ``out_shape`` (default ``x_shape``): a likelihood with several numbers
    per pixel (the discretized logistic mixture) asks for more channels. The encoder emits
    ``extra`` numbers beside (loc, log_var), for the posterior family."""
    out_shape = tuple(out_shape or x_shape)
    if arch in CONV_DECODERS:
        _check_conv_shape(x_shape)
        decoder = CONV_DECODERS[arch](out_shape, hidden, latent_dim)
        return ConvEncoder(x_shape, hidden, latent_dim, extra), decoder
    if arch == "linear":
        hidden = []
    return (
        MLPEncoder(x_shape, hidden, latent_dim, activation, extra),
        MLPDecoder(out_shape, hidden, latent_dim, activation),
    )
