"""The flags of ``vaelab train``: what to train on, the model, the objective, the optimizer
and the run.

Every configuration key (:mod:`vaelab.config`) has a flag of the same name, ``None`` when
not given, so the preset's, the ``--config`` file's or the default value stands
(:func:`vaelab.commands._train`). Five more say how the run starts: ``--preset``,
``--config``, ``--resume``, ``--overwrite`` and ``--quiet``.
"""

from __future__ import annotations

import argparse

from .config import CHOICES


def int_list(text: str) -> list[int]:
    """The argparse type of ``--hidden`` and ``--hidden-2`` (and of benchmarks' ``--hidden``):
    ``"512,256"`` -> ``[512, 256]``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 400 or 512,256, got {text!r}"
        ) from None


def add_train_flags(t: argparse.ArgumentParser) -> None:
    """Add ``vaelab train``'s flags to its subparser ``t``."""
    t.add_argument(
        "--preset",
        help="named set-up: mnist-vae or mnist-iwae (Burda et al. 2015), mnist-vamp "
        "(Tomczak & Welling 2018) or mnist-best; --config and flags "
        "override it",
    )
    t.add_argument("--config", help="TOML file of configuration keys (flags override it)")
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the unfinished run RUN from its last checkpoint (no other flags)",
    )
    t.add_argument(
        "--data",
        help="digits (embedded), mnist, shapes (generated), or a path: image or IDX folder, "
        ".npy/.npz array, .csv/.parquet table",
    )
    t.add_argument(
        "--split", help="train,valid,test fractions of your own data (default 0.8,0.1,0.1)"
    )
    t.add_argument("--valid-data", help="validation split as its own file or folder")
    t.add_argument("--test-data", help="test split as its own file or folder")
    t.add_argument("--label-column", help="tables: the column of class labels (not a feature)")
    t.add_argument(
        "--stream",
        choices=CHOICES["stream"],
        help=".npy: read from disk in blocks (auto: when larger than 1 GiB as float32)",
    )
    t.add_argument("--data-dir", help="folder with the MNIST IDX files (default $VAELAB_DATA)")
    t.add_argument(
        "--channels", type=int, choices=[1, 3], help="image folders: 1 grayscale, 3 RGB"
    )
    t.add_argument(
        "--image-size", type=int, help="image folders: resize to N x N; shapes: draw at N x N (64)"
    )
    t.add_argument("--latent-dim", type=int, help="dimensions of z (default 10)")
    t.add_argument("--hidden", type=int_list, help="hidden layer sizes, e.g. 512,256")
    t.add_argument(
        "--arch",
        choices=CHOICES["arch"],
        help="linear: x = Wz + b; hvae2: two stochastic layers z2 -> z1 -> x (Burda et al.); "
        "gated-conv: conv with a gated decoder; broadcast: conv encoder, spatial broadcast "
        "decoder with channels --hidden, e.g. 64,32 (Watters et al.)",
    )
    t.add_argument(
        "--activation",
        choices=CHOICES["activation"],
        help="MLP hidden units (relu); gated: h = a * sigmoid(g), as in the VampPrior's code",
    )
    t.add_argument(
        "--likelihood",
        choices=CHOICES["likelihood"],
        help="auto (default) follows the data: Gaussian for tables and real values, "
        "Bernoulli for [0, 1] images; continuous-bernoulli for grey levels in [0, 1], "
        "logistic (discretized, 256 levels) for 8-bit images",
    )
    t.add_argument("--sigma", type=float, help="Gaussian likelihood: fixed sigma (default 0.1)")
    t.add_argument(
        "--learn-sigma",
        action="store_true",
        default=None,
        help="Gaussian likelihood: learn sigma (one per output dimension)",
    )
    t.add_argument(
        "--shared-sigma",
        action="store_true",
        default=None,
        help="with --learn-sigma: one sigma shared by all dimensions",
    )
    t.add_argument(
        "--decoder-bias",
        choices=CHOICES["decoder_bias"],
        help="data: start the output bias at the logit of the training pixel means",
    )
    t.add_argument("--beta", type=float, help="weight of the KL term (default 1)")
    t.add_argument(
        "--kl-warmup", type=int, help="epochs over which the KL weight ramps from 0 to beta"
    )
    t.add_argument(
        "--objective",
        choices=CHOICES["objective"],
        help="elbo, or the K-sample importance-weighted bound (default elbo)",
    )
    t.add_argument("--k", type=int, help="samples of z per example in training (default 1)")
    t.add_argument(
        "--iwae-grad",
        choices=CHOICES["iwae_grad"],
        help="IWAE encoder gradient: standard, or doubly reparameterized (Tucker et al. 2018)",
    )
    t.add_argument(
        "--inference",
        choices=CHOICES["inference"],
        help="q(z|x): the encoder (default), one Gaussian per training example, or the "
        "encoder's refined by --refine-steps Adam steps",
    )
    t.add_argument("--refine-steps", type=int, help="semi-amortized: steps per batch (5)")
    t.add_argument("--epochs", type=int, help="epochs (with --minutes: at most this many)")
    t.add_argument(
        "--minutes", type=float, help="wall-clock budget for training; 0 means none (default)"
    )
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument(
        "--lr-schedule",
        choices=CHOICES["lr_schedule"],
        help="cosine: decay to 0 over the --minutes budget, or over the epochs",
    )
    t.add_argument("--adam-eps", type=float, help="Adam's epsilon (default 1e-8)")
    t.add_argument(
        "--keep-best",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the weights of the best validation ELBO (default: yes)",
    )
    t.add_argument("--seed", type=int)
    t.add_argument("--binarize", choices=CHOICES["binarize"])
    t.add_argument("--device", choices=CHOICES["device"])
    t.add_argument(
        "--compile",
        choices=CHOICES["compile"],
        help="run the training objective through torch.compile; auto (default): on a CUDA "
        "device, for runs of at least 20,000 steps or 10 minutes, in one process",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        help="epochs between checkpoints for --resume; 0: none (default 1)",
    )
    t.add_argument("--out", help="run folder to write (default runs/DATA-TIMESTAMP)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--tc-beta",
        type=float,
        help="beta-TCVAE (Chen et al. 2018): weight of the total correlation, e.g. 6 (0: off)",
    )
    t.add_argument(
        "--factor-gamma",
        type=float,
        help="FactorVAE (Kim & Mnih 2018): weight of the discriminator's TC, e.g. 10 (0: off)",
    )
    t.add_argument(
        "--kl-schedule",
        choices=CHOICES["kl_schedule"],
        help="linear: warm-up over --kl-warmup epochs; cyclical: --kl-cycles ramps over "
        "--epochs (Fu et al. 2019)",
    )
    t.add_argument("--kl-cycles", type=int, help="cyclical KL schedule: cycles (default 4)")
    t.add_argument(
        "--free-bits",
        type=float,
        metavar="LAMBDA",
        help="floor, in nats, on each latent dimension's batch-mean KL in the loss "
        "(Kingma et al. 2016)",
    )
    t.add_argument(
        "--prior",
        choices=CHOICES["prior"],
        help="p(z): standard normal (default), learned mixture of Gaussians, or VampPrior "
        "(Tomczak & Welling 2018)",
    )
    t.add_argument(
        "--prior-components",
        type=int,
        metavar="K",
        help="mixture components of --prior mog (default 10) or pseudo-inputs of vamp (500)",
    )
    t.add_argument(
        "--logistic-components",
        type=int,
        metavar="M",
        help="--likelihood logistic: mixture components per pixel (default 1)",
    )
    t.add_argument(
        "--latent-dim-2", type=int, help="--arch hvae2: units of z2 (default latent-dim / 2)"
    )
    t.add_argument(
        "--hidden-2", type=int_list, help="--arch hvae2: layers between z1 and z2 (--hidden)"
    )
