"""A small binary classifier in NumPy: penalised logistic regression and the ROC curve and AUC.

Used by :mod:`experiments.crs_management` to predict severe CRS from early
measurements; written here (about 100 lines) rather than adding scikit-learn.

Logistic regression (:func:`fit_logistic`)
    ``P(y = 1 | x) = 1 / (1 + exp(-(b0 + x . b)))``. Features are standardised
    with the training mean and standard deviation (a constant feature gets
    weight 0), and the coefficients (not the intercept) carry an L2 penalty
    ``penalty / 2 * |b|^2`` so that a small or perfectly separable training set
    still gives finite coefficients. Fitted by Newton's method (iteratively
    reweighted least squares) to a gradient norm below ``tol``.

ROC AUC (:func:`roc_auc`)
    The probability that a randomly chosen positive scores higher than a
    randomly chosen negative, ties counting one half (the Mann-Whitney U
    statistic divided by ``n_pos * n_neg``); NaN when one class is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Logistic:
    """A fitted logistic model: standardisation, intercept and coefficients (on standardised features)."""

    mean: np.ndarray
    scale: np.ndarray
    intercept: float
    coef: np.ndarray
    iterations: int

    def probability(self, x) -> np.ndarray:
        """``P(y = 1)`` for each row of ``x`` (shape ``(n, k)``)."""
        z = (np.atleast_2d(np.asarray(x, dtype=float)) - self.mean) / self.scale
        return _sigmoid(self.intercept + z @ self.coef)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -t))


def fit_logistic(x, y, penalty: float = 1.0, tol: float = 1e-10, max_iter: int = 100) -> Logistic:
    """Fit ``y`` (0/1, shape ``(n,)``) on ``x`` (shape ``(n, k)``) by penalised Newton iterations.

    Raises ValueError when ``y`` holds one class only, or when ``max_iter``
    Newton steps do not bring the gradient below ``tol``. Without a penalty,
    perfectly separable data have no maximum: the weights then grow until the
    gradient underflows, so keep ``penalty > 0`` for small samples.
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    if x.shape[0] != y.size:
        raise ValueError(f"x has {x.shape[0]} rows, y has {y.size} values")
    if not np.all((y == 0) | (y == 1)) or y.min() == y.max():
        raise ValueError("y must hold 0/1 labels of both classes")
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    scale = np.where(sd > 0, sd, 1.0)
    z = np.column_stack([np.ones(len(y)), (x - mean) / scale])
    z[:, 1:][:, sd == 0] = 0.0
    ridge = np.full(z.shape[1], float(penalty))
    ridge[0] = 0.0
    w = np.zeros(z.shape[1])
    iterations = 0
    while True:
        p = _sigmoid(z @ w)
        grad = z.T @ (p - y) + ridge * w
        if np.linalg.norm(grad) < tol:
            break
        if iterations == max_iter:
            raise ValueError(f"logistic regression did not converge in {max_iter} iterations (separable data "
                             "with penalty 0?)")
        hess = z.T @ (z * (p * (1 - p))[:, None]) + np.diag(ridge) + 1e-12 * np.eye(z.shape[1])
        w = w - np.linalg.solve(hess, grad)
        iterations += 1
    return Logistic(mean, scale, float(w[0]), w[1:], iterations)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (ties count one half); NaN when either class is absent."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold, from (0, 0) to (1, 1); empty when a class is absent."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        return np.array([]), np.array([])
    thresholds = np.unique(s)[::-1]
    tpr = [0.0] + [float((s[y] >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((s[~y] >= t).mean()) for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)
