"""GEOM paper (001), section 4: the Dirichlet normality score. Minka's fixed point (with Wicker's initialisation)
for the maximum-likelihood Dirichlet of each transformation's softmax responses, the Dirichlet score and the
simplified score of section 3."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import digamma, polygamma

EULER_GAMMA = -float(digamma(1.0))

# --------------------------------------------------------------------------------------------- Dirichlet

def inverse_digamma(y: np.ndarray, newton_steps: int = 5) -> np.ndarray:
    """psi^{-1}(y) by Newton's method from Minka's starting point (5 steps reach float64 precision)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore"):     # np.where evaluates the branch it then discards
        x = np.where(y >= -2.22, np.exp(np.minimum(y, 700.0)) + 0.5, -1.0 / (y + EULER_GAMMA))
    for _ in range(newton_steps):
        x = x - (digamma(x) - y) / polygamma(1, x)
    return x


@dataclass
class DirichletFit:
    alpha: np.ndarray      # (K,), or (T, K) when T Dirichlets were fitted at once
    iterations: int        # the most any of them needed
    converged: bool        # all of them


def fit_dirichlet_stats(mean_p: np.ndarray, mean_log_p: np.ndarray, max_iter: int = 1000,
                        tol: float = 1e-9) -> DirichletFit:
    """Maximum-likelihood Dirichlet from its sufficient statistics (mean of p and of log p over samples).

    Rows of 2-D inputs are independent fits (one per transformation), iterated together until each has
    converged (a converged row is frozen, so the result equals fitting the rows one by one)."""
    mean_p = np.asarray(mean_p, dtype=np.float64)
    mean_log_p = np.asarray(mean_log_p, dtype=np.float64)
    if mean_p.shape != mean_log_p.shape or mean_p.ndim not in (1, 2) or mean_p.shape[-1] < 2:
        raise ValueError(f"need mean p and mean log p of the same shape (K,) or (T, K) with K >= 2, got "
                         f"{mean_p.shape} and {mean_log_p.shape}")
    if not np.all(np.isfinite(mean_log_p)):
        raise ValueError("mean log-probability is not finite: compute log p with log_softmax, not log(softmax)")
    single = mean_p.ndim == 1
    mean_p, mean_log_p = np.atleast_2d(mean_p), np.atleast_2d(mean_log_p)
    k = mean_p.shape[1]
    # Jensen: log mean p >= mean log p; clamping to that bound keeps log(mean p) finite when p underflowed.
    with np.errstate(divide="ignore"):
        log_s = np.maximum(np.log(mean_p), mean_log_p)
    s = np.exp(log_s)
    denom = (s * (log_s - mean_log_p)).sum(1, keepdims=True)
    alpha = np.where(denom > 0, s * (k - 1) * EULER_GAMMA / np.where(denom > 0, denom, 1.0), 1.0)
    active = np.ones(len(alpha), dtype=bool)
    iterations = 0
    while active.any() and iterations < max_iter:
        iterations += 1
        a = alpha[active]
        new = inverse_digamma(digamma(a.sum(1, keepdims=True)) + mean_log_p[active])
        done = np.max(np.abs(new - a), axis=1) < tol
        alpha[active] = new
        active[np.flatnonzero(active)[done]] = False
    return DirichletFit(alpha[0] if single else alpha, iterations, not active.any())


def fit_dirichlet(log_p, max_iter: int = 1000, tol: float = 1e-9) -> DirichletFit:
    """Fit a Dirichlet to samples given as log-probabilities (N, K) (log space: zeros in p are fine)."""
    log_p = np.asarray(log_p.detach().cpu() if hasattr(log_p, "detach") else log_p, dtype=np.float64)
    if log_p.ndim != 2 or log_p.shape[0] < 2 or log_p.shape[1] < 2:
        raise ValueError(f"fit_dirichlet needs (N >= 2, K >= 2) log-probabilities, got shape {log_p.shape}")
    return fit_dirichlet_stats(np.exp(log_p).mean(0), log_p.mean(0), max_iter, tol)


def dirichlet_normality(log_p: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Simplified Dirichlet normality: mean over t of sum_k (alpha_tk - 1) log p_tk. log_p: (N, T, K), alpha:
    (T, K). Higher = more normal. (The paper sums over t; the mean orders images identically.)"""
    return ((alpha.to(log_p) - 1) * log_p).sum(-1).mean(-1)


def simplified_normality(log_p: torch.Tensor) -> torch.Tensor:
    """The paper's preliminary score: mean over t of the probability of the right transformation, p_tt."""
    return torch.diagonal(log_p, dim1=-2, dim2=-1).exp().mean(-1)

