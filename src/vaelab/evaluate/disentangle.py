"""Disentanglement metrics: how well single code dimensions capture single factors of variation.

Protocols (sample counts, estimators) follow disentanglement_lib (Locatello et al. 2019,
"Challenging common assumptions in the unsupervised learning of disentangled
representations"). Codes are ``(N, D)`` arrays (in vaelab: the encoder means E_q[z|x]);
factors are ``(N, K)`` integer class indices of the ground-truth factors.

- :func:`mig`, :func:`dci`, :func:`sap` are pure functions of ``(codes, factors)``;
- :func:`beta_vae_score`, :func:`factor_vae_score` generate their own pairs and batches, so they
  take ``representation(x) -> codes (N, D)`` and a ground truth with ``factor_sizes``,
  ``sample_factors(n, rng) -> (n, K)`` and ``observations(factors) -> x (n, ...)``, such as
  :class:`vaelab.data.shapes.Shapes`.

scikit-learn's estimators are imported inside the metrics that fit them: the library takes
over a second to load, and no other vaelab command needs it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch

from ..data.shapes import Shapes
from ..errors import VaelabError
from ..progress import Progress, silent

Representation = Callable[[np.ndarray], np.ndarray]
N_POINTS = 10_000  # points per metric (disentanglement_lib's)
N_TREES = 100  # DCI's boosting stages per factor (scikit-learn's default)


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, float), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise VaelabError(
            f"codes (N, D) and factors (N, K) must have the same N; got {codes.shape} "
            f"and {factors.shape}"
        )
    return codes, factors


@contextmanager
def _quiet():
    """Silence what scikit-learn says about a fit that the metric scores anyway: no convergence
    within its iterations (the score is the accuracy reached), and few points per class (a
    small ``n`` for a 40-class factor)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
        yield


# --- Mutual Information Gap ------------------------------------------------------------------


def discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Codes ``(N, D)`` -> bin indices, ``bins`` equal-width bins over each dimension's range."""
    out = np.zeros(codes.shape, np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram(codes[:, d], bins)[1]
        out[:, d] = np.digitize(codes[:, d], edges[:-1])
    return out


def mutual_info_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Plug-in estimates I(z_d; v_k) in nats, ``(D, K)``, from discrete codes and factors."""
    from sklearn.metrics import mutual_info_score

    return np.array(
        [
            [mutual_info_score(factors[:, k], codes[:, d]) for k in range(factors.shape[1])]
            for d in range(codes.shape[1])
        ]
    )


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """Mutual Information Gap (Chen et al. 2018, "Isolating sources of disentanglement").

    MIG = 1/K sum_k (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k), where z_(1), z_(2) are the code
    dimensions with the largest and second largest mutual information with v_k; codes are
    discretized into ``bins`` bins (disentanglement_lib: 20 bins, 10,000 points). In [0, 1].
    """
    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise VaelabError("MIG compares two code dimensions; the code needs at least 2")
    from sklearn.metrics import mutual_info_score

    m = mutual_info_matrix(discretize(codes, bins), factors)
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy))


# --- DCI -------------------------------------------------------------------------------------


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    n_trees: int = 100,
    seed: int = 0,
    progress: Progress = silent,
) -> dict[str, float]:
    """Disentanglement, completeness, informativeness (Eastwood & Williams 2018).

    One gradient-boosted tree classifier per factor predicts v_k from the code; its feature
    importances form R ``(D, K)``. With P_dk = R_dk / sum_k R_dk, disentanglement =
    sum_d rho_d (1 - H_K(P_d.)), rho_d = sum_k R_dk / sum R; completeness likewise over the
    columns, 1 - H_D(R_.k / sum_d R_dk) weighted by factor; informativeness = mean test
    accuracy of the K classifiers (disentanglement_lib: 10,000 train, 5,000 test points).
    ``H_n`` is entropy with log base n, so every score lies in [0, 1]. ``progress`` is told
    of each classifier fitted.
    """
    codes, factors = _check(codes, factors)
    test_codes, test_factors = _check(test_codes, test_factors)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = []
    from sklearn.ensemble import GradientBoostingClassifier

    with progress("DCI", factors.shape[1], "factors") as task:
        for k in range(factors.shape[1]):
            model = GradientBoostingClassifier(n_estimators=n_trees, random_state=seed)
            with _quiet():
                model.fit(codes, factors[:, k])
            importance[:, k] = np.abs(model.feature_importances_)
            accuracy.append(np.mean(model.predict(test_codes) == test_factors[:, k]))
            task.update()
    return {
        "disentanglement": _weighted_purity(importance),
        "completeness": _weighted_purity(importance.T),
        "informativeness": float(np.mean(accuracy)),
    }


def _weighted_purity(importance: np.ndarray) -> float:
    """sum over rows r of weight_r * (1 - entropy of row r, log base = number of columns)."""
    total = importance.sum()
    if importance.shape[1] < 2 or total == 0:
        return 0.0
    p = importance / np.maximum(importance.sum(1, keepdims=True), 1e-12)
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(importance.shape[1])
    purity = 1 + (p * logs).sum(1)
    return float((purity * importance.sum(1) / total).sum())


# --- SAP -------------------------------------------------------------------------------------


def sap(
    codes: np.ndarray,
    factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    progress: Progress = silent,
) -> float:
    """Separated Attribute Predictability (Kumar et al. 2018).

    S_dk = test accuracy of a linear SVM (C = 0.01, balanced classes) predicting factor k from
    code dimension d alone; SAP = 1/K sum_k (largest S_dk - second largest S_dk) over d, as in
    disentanglement_lib (discrete factors; 10,000 train, 5,000 test points). ``progress`` is
    told of each code dimension done.
    """
    codes, factors = _check(codes, factors)
    test_codes, test_factors = _check(test_codes, test_factors)
    if codes.shape[1] < 2:
        raise VaelabError("SAP compares two code dimensions; the code needs at least 2")
    from sklearn.svm import LinearSVC

    score = np.zeros((codes.shape[1], factors.shape[1]))
    with progress("SAP", codes.shape[1], "dims") as task:
        for d in range(codes.shape[1]):
            for k in range(factors.shape[1]):
                svm = LinearSVC(C=0.01, class_weight="balanced", dual=True, max_iter=1000)
                with _quiet():
                    svm.fit(codes[:, d : d + 1], factors[:, k])
                score[d, k] = np.mean(svm.predict(test_codes[:, d : d + 1]) == test_factors[:, k])
            task.update()
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


# --- metrics that draw their own samples -------------------------------------------------------


def beta_vae_score(
    representation: Representation,
    ground_truth,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    batch_size: int = 64,
    seed: int = 0,
    progress: Progress = silent,
) -> dict[str, float]:
    """β-VAE metric (Higgins et al. 2017): accuracy of a linear classifier that tells which
    factor was held fixed from the mean absolute code difference over ``batch_size`` pairs.

    Each point: k ~ U{1..K}; ``batch_size`` pairs (x1_b, x2_b), pair b sharing its own draw of
    v_k and nothing else (as in disentanglement_lib); feature = mean_b |z(x1_b) - z(x2_b)|
    ``(D,)``; label k. Logistic regression on ``n_train`` points, scored on ``n_eval``.
    Chance is 1/K; 1 is the maximum. ``progress`` is told of each point.
    """
    rng = np.random.default_rng(seed)
    task = progress("β-VAE metric", n_train + n_eval, "points")

    def points(n):
        features, labels = [], []
        for _ in range(n):
            k = int(rng.integers(len(ground_truth.factor_sizes)))
            f1 = ground_truth.sample_factors(batch_size, rng)
            f2 = ground_truth.sample_factors(batch_size, rng)
            f2[:, k] = f1[:, k]
            z1 = representation(ground_truth.observations(f1))
            z2 = representation(ground_truth.observations(f2))
            features.append(np.mean(np.abs(z1 - z2), axis=0))
            labels.append(k)
            task.update()
        return np.array(features), np.array(labels)

    with task:
        x_train, y_train = points(n_train)
        x_eval, y_eval = points(n_eval)
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000)
    with _quiet():
        model.fit(x_train, y_train)
    return {
        "train_accuracy": float(model.score(x_train, y_train)),
        "eval_accuracy": float(model.score(x_eval, y_eval)),
    }


PRUNE_SCALE = 0.05  # disentanglement_lib's prune_dims.threshold, on the codes' std


def factor_vae_score(
    representation: Representation,
    ground_truth,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    batch_size: int = 64,
    n_variance: int = 10_000,
    seed: int = 0,
    progress: Progress = silent,
) -> dict[str, float]:
    """FactorVAE metric (Kim & Mnih 2018): accuracy of a majority-vote classifier from the code
    dimension of least normalized variance to the factor held fixed.

    Codes are divided by their standard deviation over ``n_variance`` random examples (dims
    whose standard deviation is below :data:`PRUNE_SCALE` are collapsed and dropped); each
    point: k ~ U{1..K}, a batch of ``batch_size`` examples sharing v_k, vote
    d* = argmin_d Var_batch(z_d) / Var(z_d). The classifier maps each d to
    the factor it votes for most often; accuracy on ``n_eval`` fresh votes. In [1/K, 1].
    ``progress`` is told of each vote.
    """
    rng = np.random.default_rng(seed)
    n_factors = len(ground_truth.factor_sizes)
    codes = representation(ground_truth.observations(ground_truth.sample_factors(n_variance, rng)))
    variance = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(variance) >= PRUNE_SCALE  # dims collapsed to the prior do not vote
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "active_dims": 0}

    def votes(n):
        table = np.zeros((codes.shape[1], n_factors), np.int64)
        for _ in range(n):
            k = int(rng.integers(n_factors))
            factors = ground_truth.sample_factors(batch_size, rng)
            factors[:, k] = rng.integers(ground_truth.factor_sizes[k])
            z = representation(ground_truth.observations(factors))
            ratio = np.var(z, axis=0, ddof=1)[active] / variance[active]
            table[np.flatnonzero(active)[np.argmin(ratio)], k] += 1
            task.update()
        return table

    with progress("FactorVAE metric", n_train + n_eval, "votes") as task:
        train, test = votes(n_train), votes(n_eval)
    classifier = np.argmax(train, axis=1)
    rows = np.arange(len(classifier))
    return {
        "train_accuracy": float(train.max(1).sum() / n_train),
        "eval_accuracy": float(test[rows, classifier].sum() / n_eval),
        "active_dims": int(active.sum()),
    }


# --- a trained run ---------------------------------------------------------------------------


def score_run(
    model,
    image_size: int,
    n: int = N_POINTS,
    seed: int = 0,
    n_trees: int = N_TREES,
    progress: Progress = silent,
) -> dict[str, float]:
    """Every metric for a model trained on ``shapes``, its code being the encoder mean
    E_q[z|x] ``(N, D)``.

    ``n`` training points (disentanglement_lib's 10,000) and ``n // 2`` held-out points for each
    metric; ``n_trees`` boosting stages per factor in DCI (scikit-learn's 100). The β-VAE and
    FactorVAE metrics render 64 to 128 images per point (batches of 64), so they and DCI's
    trees take most of the time. ``progress`` is told of each metric's work as it goes.
    """
    if n < 10 or n_trees < 1:
        raise VaelabError(f"--n must be at least 10 and --trees at least 1 (got {n}, {n_trees})")
    shapes = Shapes(image_size)
    device = next(model.parameters()).device
    model.eval()

    @torch.no_grad()
    def representation(x: np.ndarray) -> np.ndarray:
        chunks = torch.from_numpy(x).split(1000)
        return torch.cat([model.q_z(c.to(device)).mean.cpu() for c in chunks]).double().numpy()

    rng = np.random.default_rng(seed)
    factors = shapes.sample_factors(n + n // 2, rng)
    codes = representation(shapes.observations(factors))
    train, test = (codes[:n], factors[:n]), (codes[n:], factors[n:])
    scores = {"n": n, "mig": mig(*train)}
    dci_scores = dci(*train, *test, n_trees, seed, progress=progress)
    scores.update({f"dci_{k}": v for k, v in dci_scores.items()})
    scores["sap"] = sap(*train, *test, progress=progress)
    beta_vae = beta_vae_score(representation, shapes, n, n // 2, seed=seed, progress=progress)
    scores["beta_vae"] = beta_vae["eval_accuracy"]
    factor_vae = factor_vae_score(
        representation, shapes, n, n // 2, n_variance=n, seed=seed, progress=progress
    )
    scores["factor_vae"] = factor_vae["eval_accuracy"]
    return scores
