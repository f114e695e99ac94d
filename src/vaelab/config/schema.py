"""The run configuration's schema: :class:`Config`, one flat dataclass of plain values.

``CHOICES`` lists the values each string option takes; ``Config.validate`` checks every field's
type (``_check_type``), range and combination with the others, raising :class:`VaelabError`
with the fix; ``Config.to_toml`` writes the flat TOML (``_toml_value``, one value's literal)
that :mod:`vaelab.config.loading` reads back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

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
}
# the arches built on the conv encoder (vaelab.networks.CONV_DECODERS): square images only
CONV_ARCHS = ("conv", "gated-conv", "broadcast")


@dataclass
class Config:
    """Everything that defines a training run, as plain values.

    The less obvious ones: ``decoder_bias = "data"`` starts the decoder's output bias at the
    training data's mean (Bernoulli: its logit), as Burda et al. do; ``kl_warmup`` ramps the
    KL weight linearly from 0 to ``beta`` over that many epochs (``kl_schedule = "linear"``);
    ``minutes`` > 0 is a wall-clock budget for training (``epochs`` is then an upper limit),
    and a ``cosine`` ``lr_schedule`` decays over the budget when there is one, else over
    ``epochs``; ``keep_best`` keeps the weights of the epoch with the best validation ELBO
    (early stopping); ``iwae_grad = "dreg"`` uses the doubly reparameterized encoder gradient
    (Tucker et al. 2018) under the IWAE objective; ``inference = "local"`` trains the decoder
    with one Gaussian q_i per training example instead of an encoder, ``"semi-amortized"``
    refines the encoder's q by ``refine_steps`` Adam steps on each batch's ELBO;
    ``tc_beta`` > 0 trains a beta-TCVAE (Chen et al. 2018) with that weight on the total
    correlation, ``factor_gamma`` > 0 a FactorVAE (Kim & Mnih 2018) with that weight on the
    discriminator's total correlation estimate (0: off, both); ``compile`` runs the
    training objective through ``torch.compile`` (``auto``: where it works and the run is long
    enough to repay it, :mod:`vaelab.compiled`).
    """

    data: str = "digits"
    data_dir: str = ""
    channels: int = 0
    image_size: int = 0
    split: str = "0.8,0.1,0.1"
    valid_data: str = ""
    test_data: str = ""
    label_column: str = ""
    stream: str = "auto"
    latent_dim: int = 10
    hidden: list[int] = field(default_factory=lambda: [400])
    arch: str = "mlp"
    activation: str = "relu"
    likelihood: str = "auto"
    sigma: float = 0.1
    learn_sigma: bool = False
    shared_sigma: bool = False
    decoder_bias: str = "zero"
    beta: float = 1.0
    kl_warmup: int = 0
    objective: str = "elbo"
    k: int = 1
    iwae_grad: str = "standard"
    inference: str = "amortized"
    refine_steps: int = 5
    epochs: int = 20
    minutes: float = 0.0
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    adam_eps: float = 1e-8
    keep_best: bool = True
    checkpoint_every: int = 1
    seed: int = 0
    binarize: str = "auto"
    device: str = "auto"
    out: str = ""
    tc_beta: float = 0.0
    factor_gamma: float = 0.0
    kl_schedule: str = "linear"
    kl_cycles: int = 4
    free_bits: float = 0.0
    prior: str = "normal"
    prior_components: int = 0
    logistic_components: int = 1
    latent_dim_2: int = 0
    hidden_2: list[int] = field(default_factory=list)
    compile: str = "auto"

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
        from ..data.dataset import parse_split

        parse_split(self.split)
        if self.shared_sigma and not self.learn_sigma:
            raise VaelabError("--shared-sigma needs --learn-sigma (a fixed sigma is shared)")
        self._validate_disentangling()
        self._validate_objective_options()
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
        """The KL schedule and free bits (issue 6)."""
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
        if self.kl_warmup and self.kl_schedule == "cyclical":
            raise VaelabError(
                "--kl-schedule cyclical ramps beta in each of its --kl-cycles and ignores "
                "--kl-warmup; pass --kl-warmup 0 or --kl-schedule linear"
            )

    @property
    def resolved_binarize(self) -> str:
        """``auto`` means dynamic binarization for a Bernoulli likelihood, none otherwise."""
        if self.binarize != "auto":
            return self.binarize
        return "dynamic" if self.likelihood in ("bernoulli", "auto") else "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """Flat TOML, one ``key = value`` line per field."""
        lines = ["# vaelab run configuration; re-run with: vaelab train --config config.toml"]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _check_type(name: str, value: Any, type_name: str) -> None:
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list[int]": isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
    }[type_name]
    if not ok:
        raise VaelabError(f"{name} must be of type {type_name} (got {value!r})")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
