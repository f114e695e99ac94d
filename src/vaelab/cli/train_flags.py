"""The flags of ``vaelab train``: what to train on, the model, the objective, the optimizer
and the run.

Every configuration key (:mod:`vaelab.config`) has a flag of the same name, ``None`` when
not given, so the preset's, the ``--config`` file's or the default value stands
(:func:`vaelab.config.assemble`); each flag's help ends with the default, read from
:class:`~vaelab.config.Config`. Five more say how the run starts: ``--preset``,
``--config``, ``--resume``, ``--overwrite`` and ``--quiet``.
"""

from __future__ import annotations

import argparse

from ..config import CHOICES, FIELD_TYPES, default
from ..core.priors import DEFAULT_COMPONENTS
from ..device import AUTO_BF16_BATCH
from ..training import compiled


def int_list(text: str) -> list[int]:
    """The argparse type of ``--hidden`` and ``--hidden-2`` (and of benchmarks' ``--hidden``):
    ``"512,256"`` -> ``[512, 256]``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 400 or 512,256, got {text!r}"
        ) from None


# the sections of `vaelab train --help`, in the README's order; every flag is in one
GROUPS = {
    "start": ("--preset", "--config", "--resume", "--out", "--overwrite", "--quiet", "--log"),
    "data": (
        "--data", "--data-dir", "--split", "--valid-data", "--test-data", "--label-column",
        "--stream", "--channels", "--image-size", "--binarize",
    ),
    "model": (
        "--latent-dim", "--hidden", "--arch", "--activation", "--prior", "--prior-components",
        "--likelihood", "--sigma", "--learn-sigma", "--shared-sigma", "--logistic-components",
        "--decoder-bias", "--latent-dim-2", "--hidden-2", "--posterior", "--flow-steps",
        "--flow-hidden",
    ),
    "objective": (
        "--objective", "--k", "--iwae-grad", "--beta", "--kl-warmup", "--kl-schedule",
        "--kl-cycles", "--free-bits", "--tc-beta", "--factor-gamma", "--inference",
        "--refine-steps",
    ),
    "optimizer and budget": (
        "--epochs", "--minutes", "--batch-size", "--lr", "--lr-schedule", "--adam-eps",
        "--keep-best", "--checkpoint-every",
    ),
    "machine": ("--seed", "--device", "--compile", "--precision"),
}  # fmt: skip


def add_train_flags(t: argparse.ArgumentParser) -> None:
    """Add ``vaelab train``'s flags to its subparser ``t``, in the sections of
    :data:`GROUPS`; a configuration key's help ends with its default."""
    sections = {title: t.add_argument_group(title) for title in GROUPS}
    section_of = {flag: sections[title] for title, flags in GROUPS.items() for flag in flags}

    def add(*names: str, shown: str | None = None, **kwargs) -> None:
        """``add_argument`` in the flag's section; ``shown`` words a default that is not a
        value to type."""
        key = names[0].lstrip("-").replace("-", "_")
        if kwargs.get("type") in METAVARS:
            kwargs.setdefault("metavar", METAVARS[kwargs["type"]])
        if key in FIELD_TYPES and kwargs.get("help"):
            kwargs["help"] = f"{kwargs['help']} (default {shown or _shown(default(key))})"
        section_of[names[0]].add_argument(*names, **kwargs)

    add(
        "--preset",
        help="named set-up: mnist-vae or mnist-iwae (Burda et al. 2015), mnist-vamp "
        "(Tomczak & Welling 2018) or mnist-best; --config and flags override it",
    )
    add("--config", help="TOML file of configuration keys (flags override it)")
    add(
        "--resume",
        metavar="RUN",
        help="continue the unfinished run RUN from its last checkpoint (no other flags)",
    )
    add(
        "--data",
        help="digits (embedded), mnist, shapes (generated), or a path: image or IDX folder, "
        ".npy/.npz array, .csv/.parquet table",
    )
    add("--split", help="train,valid,test fractions of your own data")
    add("--valid-data", help="validation split as its own file or folder")
    add("--test-data", help="test split as its own file or folder")
    add("--label-column", help="tables: the column of class labels (not a feature)")
    add(
        "--stream",
        choices=CHOICES["stream"],
        help=".npy: read from disk in blocks (auto: when larger than 1 GiB as float32)",
    )
    add("--data-dir", help="folder with the MNIST IDX files; none: $VAELAB_DATA")
    add(
        "--channels",
        type=int,
        choices=[1, 3],
        help="image folders: 1 grayscale, 3 RGB",
        shown="as the files are",
    )
    add(
        "--image-size",
        type=int,
        help="image folders: resize to N x N; shapes: draw at N x N",
        shown="as the files are; shapes 64",
    )
    add("--latent-dim", type=int, help="dimensions of z")
    add("--hidden", type=int_list, help="hidden layer sizes, e.g. 512,256")
    add(
        "--arch",
        choices=CHOICES["arch"],
        help="linear: x = Wz + b; hvae2: two stochastic layers z2 -> z1 -> x (Burda et al.); "
        "gated-conv: conv with a gated decoder; broadcast: conv encoder, spatial broadcast "
        "decoder with channels --hidden, e.g. 64,32 (Watters et al.)",
    )
    add(
        "--activation",
        choices=CHOICES["activation"],
        help="MLP hidden units; gated: h = a * sigmoid(g), as in the VampPrior's code",
    )
    add(
        "--likelihood",
        choices=CHOICES["likelihood"],
        help="auto follows the data: Gaussian for tables and real values, "
        "Bernoulli for [0, 1] images; continuous-bernoulli for grey levels in [0, 1], "
        "logistic (discretized, 256 levels) for 8-bit images",
    )
    add("--sigma", type=float, help="Gaussian likelihood: fixed sigma")
    add(
        "--learn-sigma",
        action="store_true",
        default=None,
        help="Gaussian likelihood: learn sigma (one per output dimension)",
    )
    add(
        "--shared-sigma",
        action="store_true",
        default=None,
        help="with --learn-sigma: one sigma shared by all dimensions",
    )
    add(
        "--decoder-bias",
        choices=CHOICES["decoder_bias"],
        help="data: start the output bias at the logit of the training pixel means",
    )
    add("--beta", type=float, help="weight of the KL term")
    add("--kl-warmup", type=int, help="epochs over which the KL weight ramps from 0 to beta")
    add(
        "--objective",
        choices=CHOICES["objective"],
        help="elbo, or the K-sample importance-weighted bound",
    )
    add("--k", type=int, help="samples of z per example in training")
    add(
        "--iwae-grad",
        choices=CHOICES["iwae_grad"],
        help="IWAE encoder gradient: standard, or doubly reparameterized (Tucker et al. 2018)",
    )
    add(
        "--inference",
        choices=CHOICES["inference"],
        help="q(z|x): the encoder (amortized), one Gaussian per training example, or the "
        "encoder's refined by --refine-steps Adam steps",
    )
    add("--refine-steps", type=int, help="semi-amortized: Adam steps refining q per batch")
    add("--epochs", type=int, help="epochs (with --minutes: at most this many)")
    add("--minutes", type=float, help="wall-clock budget for training in minutes; 0: none")
    add("--batch-size", type=int, help="examples per step")
    add("--lr", type=float, help="Adam's learning rate")
    add(
        "--lr-schedule",
        choices=CHOICES["lr_schedule"],
        help="cosine: decay to 0 over the --minutes budget, or over the epochs",
    )
    add("--adam-eps", type=float, help="Adam's epsilon")
    add(
        "--keep-best",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the weights of the best validation ELBO",
    )
    add("--seed", type=int, help="weights, noise, data order and binarization")
    add(
        "--binarize",
        choices=CHOICES["binarize"],
        help="auto: a fresh draw each epoch for a Bernoulli likelihood, none otherwise",
    )
    add("--device", choices=CHOICES["device"], help="auto: CUDA, then MPS, then the CPU")
    add(
        "--compile",
        choices=CHOICES["compile"],
        help="run the training objective through torch.compile; auto: on a CUDA device, for "
        f"runs of at least {compiled.MIN_STEPS:,} steps or {compiled.MIN_MINUTES:g} minutes, "
        "in one process",
    )
    add(
        "--precision",
        choices=CHOICES["precision"],
        help="the encoder's and decoder's matrix products in bfloat16 (bf16, through "
        "torch.autocast) or float32; weights, log-likelihoods, KL and sums stay float32. "
        "auto: bf16 on a CUDA device of compute capability 8.0+, and on a CPU with "
        f"AVX512-BF16 or AMX at batches of {AUTO_BF16_BATCH}+; fp32 elsewhere",
    )
    add(
        "--checkpoint-every",
        type=int,
        help="epochs between checkpoints for --resume; 0: none",
    )
    add("--out", help="run folder to write; none: runs/DATA-TIMESTAMP")
    add("--overwrite", action="store_true", help="replace an existing run folder")
    add("--quiet", action="store_true", help="no progress bar")
    add(
        "--log",
        choices=CHOICES["log"],
        help="tensorboard: also TensorBoard event files in RUN/tensorboard/ (each epoch's "
        "metrics, then the plots; pip install 'vaelab[tensorboard]')",
    )
    add(
        "--tc-beta",
        type=float,
        help="beta-TCVAE (Chen et al. 2018): weight of the total correlation, e.g. 6 (0: off)",
    )
    add(
        "--factor-gamma",
        type=float,
        help="FactorVAE (Kim & Mnih 2018): weight of the discriminator's TC, e.g. 10 (0: off)",
    )
    add(
        "--kl-schedule",
        choices=CHOICES["kl_schedule"],
        help="linear: warm-up over --kl-warmup epochs; cyclical: --kl-cycles ramps over "
        "--epochs (Fu et al. 2019)",
    )
    add("--kl-cycles", type=int, help="cyclical KL schedule: cycles")
    add(
        "--free-bits",
        type=float,
        metavar="LAMBDA",
        help="floor, in nats, on each latent dimension's batch-mean KL in the loss "
        "(Kingma et al. 2016)",
    )
    add(
        "--prior",
        choices=CHOICES["prior"],
        help="p(z): standard normal, learned mixture of Gaussians, or VampPrior "
        "(Tomczak & Welling 2018)",
    )
    add(
        "--prior-components",
        type=int,
        metavar="K",
        help=f"mixture components of --prior mog ({DEFAULT_COMPONENTS['mog']}) or "
        f"pseudo-inputs of vamp ({DEFAULT_COMPONENTS['vamp']}); 0: those",
    )
    add(
        "--logistic-components",
        type=int,
        metavar="M",
        help="--likelihood logistic: mixture components per pixel",
    )
    add("--latent-dim-2", type=int, help="--arch hvae2: units of z2; 0: latent-dim / 2")
    add("--hidden-2", type=int_list, help="--arch hvae2: layers between z1 and z2; none: --hidden")
    add(
        "--posterior",
        choices=CHOICES["posterior"],
        help="q(z|x): diagonal Gaussian; full, a Gaussian with a full covariance L L^T; iaf, "
        "the diagonal Gaussian through --flow-steps inverse autoregressive flow steps "
        "(Kingma et al. 2016)",
    )
    add("--flow-steps", type=int, help="--posterior iaf: steps of the flow, each a MADE")
    add("--flow-hidden", type=int_list, help="--posterior iaf: each MADE's hidden layer sizes")


METAVARS = {int: "N", float: "X", int_list: "N[,N...]"}  # what --help shows a value as


def _shown(value) -> str:
    """A default as a user would type it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "none"
