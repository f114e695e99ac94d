"""MADE, the masked autoencoder for distribution estimation (Germain et al. 2015): a dense
network whose weights are masked so that output d depends only on the inputs before d.

Every input i gets a degree o(i), a permutation of 1 .. D (``order``); every hidden unit j a
degree m(j) in 0 .. D - 1. A weight from a unit of degree a to a hidden unit of degree b is
kept when b >= a; a weight into output d, when o(d) > the degree of the unit it comes from.
So a path from input i to output d exists only if o(i) < o(d):

    d out_d / d in_i = 0   whenever o(i) >= o(d)

(in the order 1 .. D: a strictly lower-triangular Jacobian). A context vector h, the same for
every dimension, reaches the first hidden layer unmasked; the hidden units of degree 0 see h
alone, so that the first dimension's outputs depend on h too (with degrees 1 .. D - 1 only,
as in Germain et al., they would be constants). Shapes: inputs ``(*batch, D)``,
context ``(*batch, H)`` (broadcast against the inputs' batch), outputs ``(*batch, n_out, D)``.

:class:`MADECopies` holds n copies of one MADE's weights, one per datapoint (an IAF fitted per
datapoint, :class:`vaelab.core.inference.LocalPosteriors`), and :func:`free_parameters`
counts the weights the masks leave free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedLinear(nn.Linear):
    """y = (W * M) x + b: a Linear layer whose weights outside the 0/1 mask ``M``
    ``(n_out, n_in)`` are held at zero (they get no gradient either: M multiplies them)."""

    def __init__(self, mask: torch.Tensor, bias: bool = True):
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        # derived from the degrees, so rebuilt with the module, not saved with the weights
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(width: int, d: int) -> torch.Tensor:
    """The degrees of ``width`` hidden units over ``d`` inputs: 0 .. d - 1 in turn, so every
    degree has units when ``width >= d`` (deterministic, as Germain et al.'s cyclic choice)."""
    return torch.arange(width, device="cpu") % d


class MADE(nn.Module):
    """``(z (*batch, D), h (*batch, H)) -> (*batch, n_out, D)``: ``n_out`` numbers per
    dimension d (an IAF step's m and s: ``n_out = 2``), each a function of z's dimensions
    before d in ``order`` and of h alone.

    Parameters
    ----------
    d : D, the input dimensions.
    hidden : widths of the masked hidden layers (at least one), ELU between them.
    context : H, the context's size (0: none).
    n_out : outputs per dimension.
    order : the degrees o(1) .. o(D), a permutation of 1 .. D; default 1 .. D (output d
        depends on inputs 0 .. d - 1). A flow reverses it between steps.
    """

    def __init__(
        self,
        d: int,
        hidden: list[int],
        context: int = 0,
        n_out: int = 2,
        order: torch.Tensor | None = None,
    ):
        super().__init__()
        if not hidden:
            raise ValueError("MADE needs at least one hidden layer")
        # degrees and masks are worked out on the CPU, also when the model is built on the
        # meta device (a checkpoint's skeleton): they are plain integers, not weights
        order = torch.arange(1, d + 1, device="cpu") if order is None else order.cpu()
        if sorted(order.tolist()) != list(range(1, d + 1)):
            raise ValueError(f"order must be a permutation of 1 .. {d}, got {order.tolist()}")
        self.d, self.n_out = d, n_out
        self.register_buffer("order", order.clone(), persistent=False)
        degrees = [order] + [hidden_degrees(w, d) for w in hidden]
        self.layers = nn.ModuleList(
            MaskedLinear((later[:, None] >= earlier[None, :]).float())
            for earlier, later in zip(degrees[:-1], degrees[1:], strict=True)
        )
        # output (k, d) for k < n_out: degree o(d), strictly above what feeds it
        out_degrees = order.repeat(n_out)
        self.output = MaskedLinear((out_degrees[:, None] > degrees[-1][None, :]).float())
        self.context = nn.Linear(context, hidden[0], bias=False) if context else None

    def forward(self, z: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        a = self.layers[0](z)
        if self.context is not None:
            a = a + self.context(h)
        for layer in self.layers[1:]:
            a = layer(F.elu(a))
        return self.output(F.elu(a)).unflatten(-1, (self.n_out, self.d))


def free_parameters(module: nn.Module) -> int:
    """How many numbers of ``module`` training can move: every parameter's entries, but a
    :class:`MaskedLinear`'s weight counted only where its mask is 1 (the rest stay zero)."""
    total = 0
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            masked = isinstance(m, MaskedLinear) and name == "weight"
            total += int(m.mask.sum().item()) if masked else p.numel()
    return total


class MADECopies(nn.Module):
    """``n`` copies of one :class:`MADE`, each with weights of its own (started at ``made``'s):
    row i of a batch goes through copy i, ``(z (*sample, B, D), h (B, H), rows) ->
    (*sample, B, n_out, D)`` for the copies ``rows`` ``(B,)`` (None: all n, B = n).

    The copies' weights are stacked, ``(n, *shape)`` per weight of ``made``, and applied by
    ``torch.vmap`` over ``torch.func.functional_call(made, ...)``: one batched matrix product per
    layer, and ``made``'s own forward and masks, so there is one definition of the network.
    Rows share nothing, so the gradient of row i's output reaches copy i's weights alone.
    """

    def __init__(self, made: MADE, n: int):
        super().__init__()
        # the architecture and masks to call with the copies' weights; kept out of this
        # module's children so that its weights are neither fitted nor counted here (nor moved
        # by .to(): it lives with the model it came from)
        self.__dict__["made"] = made
        named = dict(made.named_parameters())
        self.names = list(named)
        self.weights = nn.ParameterList(
            nn.Parameter(p.detach().expand(n, *p.shape).clone()) for p in named.values()
        )

    def __len__(self) -> int:
        return self.weights[0].shape[0]

    @property
    def num_parameters(self) -> int:
        """Free numbers in all n copies (:func:`free_parameters` of one, times n)."""
        return len(self) * free_parameters(self.made)

    def forward(
        self, z: torch.Tensor, h: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        weights = {
            name: w if rows is None else w[rows]
            for name, w in zip(self.names, self.weights, strict=True)
        }

        def one(weights: dict, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self.made, weights, (z, h))

        # the row is z's dimension -2 (before the event), h's and the weights' first
        return torch.vmap(one, in_dims=(0, -2, 0), out_dims=-3)(weights, z, h)
