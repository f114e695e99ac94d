"""The run configuration's schema: :class:`Config`, one flat dataclass of plain values.

``CHOICES`` lists the values each string option takes (the CLI's choices read it);
``Config.validate`` checks every field's type (``_check_type``), range and combination with the
others, raising :class:`VaelabError` with the fix; ``Config.to_toml`` writes the flat TOML
(``_toml_value``, one value's literal) that :mod:`vaelab.config.loading` reads back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from ..errors import VaelabError

CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ("mlp", "conv", "linear", "hvae2", "gated-conv", "broadcast"),
    "activation": ("relu", "tanh", "gated"),
    "likelihood": ("auto", "bernoulli", "gaussian", "continuous-bernoulli", "logistic"),
    "binarize": ("auto", "dynamic", "static", "none"),
    "objective": ("elbo", "iwae"),
    "iwae_grad": ("standard", "dreg"),
    "decoder_bias": ("zero", "data"),
    "lr_schedule": ("constant", "cosine"),
    "device": ("auto", "cpu", "cuda", "mps"),
    "stream": ("auto", "on", "off"),
    "inference": ("amortized", "local", "semi-amortized"),
    "kl_schedule": ("linear", "cyclical"),
    "prior": ("normal", "mog", "vamp"),
    "compile": ("auto", "on", "off"),
    "log": ("none", "tensorboard"),
    "precision": ("auto", "fp32", "bf16"),
    "posterior": ("diagonal", "full", "iaf"),
}
# the arches built on the conv encoder (vaelab.core.networks.CONV_DECODERS): square images only
CONV_ARCHS = ("conv", "gated-conv", "broadcast")
DEFAULT_SPLIT = "0.8,0.1,0.1"
# the largest value of each size a run takes: beyond them no run fits the memory or the time
# vaelab is made for, and torch would fail deep inside (an allocation, an overflow) instead of
# the user reading one line; the seed's is what every generator seeded from it accepts
LIMITS = {
    "latent_dim": 65_536,
    "latent_dim_2": 65_536,
    "hidden": 65_536,
    "hidden_2": 65_536,
    "prior_components": 100_000,
    "logistic_components": 256,
    "image_size": 4_096,
    "k": 100_000,
    "batch_size": 10_000_000,
    "epochs": 10_000_000,
    "kl_warmup": 10_000_000,
    "kl_cycles": 1_000_000,
    "refine_steps": 100_000,
    "checkpoint_every": 10_000_000,
    "minutes": 10_000_000.0,
    "seed": 2**63 - 1,
    "flow_steps": 1_000,
    "flow_hidden": 65_536,
}
# --posterior full: the encoder emits D(D - 1)/2 numbers per example, 130,816 at this D
FULL_MAX_LATENT = 512


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> the train, valid and test fractions (each >= 0, valid and test
    > 0, summing to 1)."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if (
        len(parts) != 3
        or not all(math.isfinite(p) and p >= 0 for p in parts)
        or min(parts) <= 0
        or abs(sum(parts) - 1) > 1e-6
    ):
        raise VaelabError(
            f"split {text!r} must be three positive fractions that sum to 1, "
            "e.g. --split 0.8,0.1,0.1"
        )
    return parts  # type: ignore[return-value]


def binarization_for(likelihood: str, binarize: str) -> str:
    """The one auto-binarization rule: ``binarize = "auto"`` means a fresh draw each epoch
    (dynamic) for a Bernoulli likelihood (or one still to be chosen), none otherwise."""
    if binarize != "auto":
        return binarize
    return "dynamic" if likelihood in ("bernoulli", "auto") else "none"


@dataclass
class Config:
    """Everything that defines a training run, as plain values: one comment per field says
    what it sets. ``validate`` (run on construction) checks types, ranges and combinations.
    The fields keep the order of the first ``config.toml`` files, so runs written before
    and after a change read alike."""

    data: str = "digits"  # digits | mnist | shapes | a path: image/IDX folder, .npy/.npz, table
    # (run:data.npz: the data handed to train(config, data=...), kept in the run's folder)
    data_dir: str = ""  # folder of the MNIST IDX files ("": $VAELAB_DATA, then the cache)
    channels: int = 0  # image folders: 1 grey, 3 RGB (0: as the files are)
    image_size: int = 0  # image folders: resize to N x N; shapes: draw at N x N (0: 64)
    split: str = DEFAULT_SPLIT  # train,valid,test fractions of the user's own data
    valid_data: str = ""  # the validation split as its own file or folder
    test_data: str = ""  # the test split as its own file or folder
    label_column: str = ""  # tables: the column of class labels (not a feature)
    stream: str = "auto"  # .npy: read from disk in blocks (auto: when larger than 1 GiB)
    latent_dim: int = 10  # D, the dimensions of z (of z1 under hvae2)
    hidden: list[int] = field(default_factory=lambda: [400])  # hidden widths (conv: channels)
    arch: str = "mlp"  # encoder and decoder networks (CHOICES["arch"])
    activation: str = "relu"  # MLP hidden units; gated: h = a * sigmoid(g)
    likelihood: str = "auto"  # p(x|z); auto follows the data (data.choose_likelihood)
    sigma: float = 0.1  # Gaussian likelihood: the fixed standard deviation
    learn_sigma: bool = False  # Gaussian likelihood: learn sigma, one per output dimension
    shared_sigma: bool = False  # with learn_sigma: one sigma shared by every dimension
    decoder_bias: str = "zero"  # data: start the output bias at the training mean (its logit)
    beta: float = 1.0  # weight of the KL term
    kl_warmup: int = 0  # epochs over which the KL weight ramps linearly from 0 to beta
    objective: str = "elbo"  # elbo, or the K-sample importance-weighted bound (iwae)
    k: int = 1  # samples of z per example in each training step
    iwae_grad: str = "standard"  # iwae: dreg is the doubly reparameterized encoder gradient
    inference: str = "amortized"  # q(z|x): the encoder, one q per example, or refined
    refine_steps: int = 5  # semi-amortized: Adam steps refining q on each batch
    epochs: int = 20  # epochs (with minutes: at most this many)
    minutes: float = 0.0  # wall-clock budget for training (0: none)
    batch_size: int = 128  # examples per step
    lr: float = 1e-3  # Adam's learning rate
    lr_schedule: str = "constant"  # cosine: decay to 0 over the budget, else over the epochs
    adam_eps: float = 1e-8  # Adam's epsilon
    keep_best: bool = True  # keep the weights of the best validation ELBO
    checkpoint_every: int = 1  # epochs between checkpoints for --resume (0: none)
    seed: int = 0  # weights, noise, data order and binarization
    binarize: str = "auto"  # auto: a fresh draw each epoch for a Bernoulli likelihood
    device: str = "auto"  # auto: CUDA, then MPS, then the CPU
    out: str = ""  # the run folder ("": runs/DATA-TIMESTAMP)
    tc_beta: float = 0.0  # beta-TCVAE: weight of the total correlation (0: off)
    factor_gamma: float = 0.0  # FactorVAE: weight of the discriminator's TC estimate (0: off)
    kl_schedule: str = "linear"  # linear (kl_warmup) or cyclical (Fu et al. 2019)
    kl_cycles: int = 4  # cyclical: ramps over the run's epochs
    free_bits: float = 0.0  # floor, in nats, on each dimension's batch-mean KL (0: off)
    prior: str = "normal"  # p(z): standard normal, mixture of Gaussians, VampPrior
    prior_components: int = (
        0  # mog components or vamp pseudo-inputs (0: priors.DEFAULT_COMPONENTS)
    )
    logistic_components: int = 1  # logistic likelihood: mixture components per pixel
    latent_dim_2: int = 0  # hvae2: units of z2 (0: latent_dim / 2)
    hidden_2: list[int] = field(default_factory=list)  # hvae2: layers between z1 and z2
    compile: str = "auto"  # torch.compile the objective (auto: long runs on CUDA)
    log: str = "none"  # tensorboard: also event files in RUN/tensorboard/ (metrics.jsonl always)
    precision: str = "auto"  # the networks' arithmetic, fp32 or bf16 (auto: bf16 where it pays)
    posterior: str = "diagonal"  # q(z|x): diagonal Gaussian, full-covariance Gaussian, or IAF
    flow_steps: int = 2  # iaf: steps of the flow, each a MADE
    flow_hidden: list[int] = field(default_factory=lambda: [320])  # iaf: each MADE's widths

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every value; raise :class:`VaelabError` naming the field and the fix."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _check_type(f.name, value, f.type)
            if f.type == "float" and not math.isfinite(value):
                raise VaelabError(f"{f.name} must be a finite number (got {value})")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise VaelabError(
                    f"{name} = {getattr(self, name)!r} is not one of {', '.join(allowed)}"
                )
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            for v in value if isinstance(value, list) else [value]:
                if v > limit:
                    raise VaelabError(
                        f"{name} = {v:,} is beyond {limit:,}, the largest vaelab takes; "
                        "choose a smaller value"
                    )
        if self.seed < 0:
            raise VaelabError(f"seed must be >= 0 (got {self.seed})")
        positive = {
            "latent_dim": self.latent_dim,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "sigma": self.sigma,
            "k": self.k,
        }
        for name, value in positive.items():
            if not value > 0:
                raise VaelabError(f"{name} must be > 0 (got {value}); pass a positive value")
        if not self.hidden or any(h <= 0 for h in self.hidden):
            raise VaelabError(
                f"hidden must list positive layer sizes (got {self.hidden}); e.g. --hidden 400"
            )
        if not self.beta >= 0:
            raise VaelabError(f"beta must be >= 0 (got {self.beta})")
        if self.channels not in (0, 1, 3):
            raise VaelabError(f"channels must be 1 or 3 (got {self.channels})")
        for name in ("kl_warmup", "minutes", "checkpoint_every", "image_size"):
            if not getattr(self, name) >= 0:
                raise VaelabError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if not 0 < self.adam_eps < 1:
            raise VaelabError(f"adam_eps must lie in (0, 1) (got {self.adam_eps})")
        if self.iwae_grad == "dreg" and self.objective != "iwae":
            raise VaelabError("--iwae-grad dreg needs --objective iwae")
        if self.iwae_grad == "dreg" and (self.beta != 1.0 or self.kl_warmup):
            raise VaelabError(
                "--iwae-grad dreg estimates the gradient of the IWAE bound itself: "
                "use it with --beta 1 and no --kl-warmup"
            )
        if self.inference != "amortized" and self.objective != "elbo":
            raise VaelabError(f"--inference {self.inference} needs --objective elbo")
        if self.refine_steps < 1:
            raise VaelabError(f"refine_steps must be >= 1 (got {self.refine_steps})")
        if self.decoder_bias == "data" and self.arch in CONV_ARCHS:
            raise VaelabError("--decoder-bias data needs --arch mlp or linear")
        parse_split(self.split)
        if self.shared_sigma and not self.learn_sigma:
            raise VaelabError("--shared-sigma needs --learn-sigma (a fixed sigma is shared)")
        self._validate_disentangling()
        self._validate_objective_options()
        self._validate_posterior()
        self._validate_unread_options()

    def _validate_disentangling(self) -> None:
        """beta-TCVAE and FactorVAE: the total correlation of the encoder's q over a batch."""
        for name in ("tc_beta", "factor_gamma"):
            if not getattr(self, name) >= 0:
                raise VaelabError(f"{name} must be >= 0 (got {getattr(self, name)}); 0 is off")
        if self.tc_beta and self.factor_gamma:
            raise VaelabError("--tc-beta and --factor-gamma are two objectives; choose one")
        flag = "--tc-beta" if self.tc_beta else "--factor-gamma" if self.factor_gamma else ""
        if flag and self.inference != "amortized":
            raise VaelabError(
                f"{flag} penalises the encoder's aggregate posterior: use --inference amortized"
            )
        if flag and self.objective != "elbo":
            raise VaelabError(f"{flag} modifies the ELBO: use --objective elbo")
        if flag and self.free_bits:
            raise VaelabError(f"{flag} and --free-bits are two ways to shape the KL; choose one")
        if flag and self.arch == "hvae2":
            raise VaelabError(f"{flag} needs one Gaussian q(z | x): use --arch mlp or conv")

    def _validate_objective_options(self) -> None:
        """The KL schedule, free bits, priors, likelihood options and the two-layer model."""
        if self.kl_cycles < 1:
            raise VaelabError(f"kl_cycles must be >= 1 (got {self.kl_cycles})")
        if self.kl_schedule == "cyclical":
            if self.minutes:
                raise VaelabError(
                    "--kl-schedule cyclical spreads its cycles over --epochs; drop --minutes "
                    "or use --kl-schedule linear"
                )
            if self.iwae_grad == "dreg":
                raise VaelabError("--iwae-grad dreg needs beta = 1: no --kl-schedule cyclical")
        if not self.free_bits >= 0:
            raise VaelabError(f"free_bits must be >= 0 nats (got {self.free_bits})")
        if self.free_bits and (self.objective != "elbo" or self.inference != "amortized"):
            raise VaelabError(
                "--free-bits floors the KL of the ELBO: use it with --objective elbo and "
                "--inference amortized"
            )
        if self.free_bits and self.prior != "normal":
            raise VaelabError(
                "--free-bits floors the KL of each latent dimension, which only the standard "
                "normal prior splits into; use --prior normal"
            )
        if self.prior_components < 0:
            raise VaelabError(f"prior_components must be >= 0 (got {self.prior_components})")
        if self.logistic_components < 1:
            raise VaelabError(f"logistic_components must be >= 1 (got {self.logistic_components})")
        if self.likelihood in ("continuous-bernoulli", "logistic"):
            if self.binarize not in ("auto", "none"):
                raise VaelabError(
                    f"--likelihood {self.likelihood} models the grey levels themselves: "
                    "use --binarize none (or auto)"
                )
            if self.likelihood == "logistic" and self.decoder_bias == "data":
                raise VaelabError("--decoder-bias data needs --likelihood other than logistic")
        if self.latent_dim_2 < 0 or any(h <= 0 for h in self.hidden_2):
            raise VaelabError("latent_dim_2 must be >= 0 and hidden_2 positive layer sizes")
        if self.arch == "hvae2":
            if self.prior != "normal" or self.inference != "amortized":
                raise VaelabError(
                    "--arch hvae2 has its own prior p(z2) p(z1 | z2): use it with --prior "
                    "normal and --inference amortized"
                )
            if self.iwae_grad == "dreg" or self.free_bits:
                raise VaelabError("--arch hvae2 takes neither --iwae-grad dreg nor --free-bits")
        if self.prior == "vamp" and self.inference == "local":
            raise VaelabError("--prior vamp is built from the encoder: use --inference amortized")

    def _validate_posterior(self) -> None:
        """The richer families of q: what they combine with, and the flow's sizes."""
        if self.flow_steps < 1 or not self.flow_hidden or any(h <= 0 for h in self.flow_hidden):
            raise VaelabError(
                "flow_steps must be >= 1 and flow_hidden positive layer sizes, e.g. "
                "--flow-steps 2 --flow-hidden 320"
            )
        if self.posterior == "diagonal":
            return
        flag = f"--posterior {self.posterior}"
        if self.posterior == "full" and self.latent_dim > FULL_MAX_LATENT:
            raise VaelabError(
                f"{flag} emits D(D - 1)/2 numbers per example: use --latent-dim "
                f"{FULL_MAX_LATENT} or fewer, or --posterior iaf"
            )
        # each of these reads q's diagonal Gaussian parameters or keeps one per example
        needs_diagonal = {
            "--arch hvae2": self.arch == "hvae2",
            f"--inference {self.inference}": self.inference != "amortized",
            "--prior vamp": self.prior == "vamp",
            "--iwae-grad dreg": self.iwae_grad == "dreg",
            "--free-bits": bool(self.free_bits),
            "--tc-beta": bool(self.tc_beta),
        }
        for option, given in needs_diagonal.items():
            if given:
                raise VaelabError(
                    f"{option} needs --posterior diagonal (q's diagonal Gaussian); "
                    f"drop {option} or {flag}"
                )

    def _validate_unread_options(self) -> None:
        """Options that only one setting reads: given without it they would be ignored."""
        if (self.latent_dim_2 or self.hidden_2) and self.arch != "hvae2":
            raise VaelabError(
                "--latent-dim-2 and --hidden-2 are for --arch hvae2; drop them or add --arch hvae2"
            )
        if self.prior_components and self.prior == "normal":
            raise VaelabError(
                "--prior-components is for --prior mog or vamp; drop it (--prior-components 0) "
                "or choose one of those"
            )
        # "auto" never resolves to logistic (data.choose_likelihood), so only "logistic" reads it
        if self.logistic_components != 1 and self.likelihood != "logistic":
            raise VaelabError(
                "--logistic-components is for --likelihood logistic; drop it "
                "(--logistic-components 1) or add --likelihood logistic"
            )
        flow = (self.flow_steps, self.flow_hidden)
        if flow != (default("flow_steps"), default("flow_hidden")) and self.posterior != "iaf":
            raise VaelabError(
                "--flow-steps and --flow-hidden are for --posterior iaf; drop them or add "
                "--posterior iaf"
            )
        if self.kl_warmup and self.kl_schedule == "cyclical":
            raise VaelabError(
                "--kl-schedule cyclical ramps beta in each of its --kl-cycles and ignores "
                "--kl-warmup; pass --kl-warmup 0 or --kl-schedule linear"
            )

    @property
    def resolved_binarize(self) -> str:
        """The binarization this run's data get (:func:`binarization_for`)."""
        return binarization_for(self.likelihood, self.binarize)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """Flat TOML, one ``key = value`` per field, written by a TOML writer (``tomli_w``), so
        any string (control characters, quotes, DEL) reads back as it was."""
        header = "# vaelab run configuration; re-run with: vaelab train --config config.toml\n"
        return header + tomli_w.dumps(self.to_dict())


def default(name: str) -> Any:
    """The default value of the field ``name``: what help texts and docs quote."""
    f = next(f for f in dataclasses.fields(Config) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _check_type(name: str, value: Any, type_name: str) -> None:
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list[int]": isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
    }[type_name]
    if not ok and name == "data":  # an array, say: a run's data is a name or a file
        raise VaelabError(
            f"Config.data names the data (digits, mnist, shapes or a path), got a "
            f"{type(value).__name__}; hand data in memory to train(config, data=x) instead"
        )
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else f"a {type(value).__name__}"
        raise VaelabError(f"{name} must be of type {type_name} (got {shown})")
