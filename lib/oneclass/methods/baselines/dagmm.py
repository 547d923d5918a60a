"""DAGMM (Zong et al. 2018) as the GEOM authors ran it for their Table 1 (section 5.1)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import training
from ..base import Detector, Scores, seeded
from .common import ConvDecoder, ConvEncoder, _batched, _fit_loop, prepare

def gmm_parameters(z: torch.Tensor, gamma: torch.Tensor, jitter: float = 1e-3):
    """Mixture weights, means and covariances from soft memberships (DAGMM's eq. 5); ``jitter`` on the diagonal
    keeps the covariances invertible."""
    nk = gamma.sum(0)                                            # (K,)
    phi = nk / len(z)
    mu = gamma.T @ z / nk[:, None]                               # (K, D)
    d = z[None] - mu[:, None]                                    # (K, N, D)
    sigma = torch.einsum("kn,knd,kne->kde", gamma.T, d, d) / nk[:, None, None]
    sigma = sigma + jitter * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return phi, mu, sigma


AUTHORS_EPS = 1e-7     # Keras's epsilon, which the GEOM authors' DAGMM adds to det(2 pi Sigma) and to each density


def gmm_energy(z: torch.Tensor, phi, mu, sigma, eps: float = 0.0) -> torch.Tensor:
    """Sample energy -log sum_k phi_k N(z | mu_k, sigma_k). ``eps`` = 0: exact, in log space. ``eps`` > 0: the
    GEOM authors' form, in probability space, -log sum_k (phi_k exp(-maha_k / 2) / sqrt(det(2 pi Sigma_k) + eps)
    + eps): every component's density is at least ``eps``, so the energy saturates at -log(K eps) far from the
    mixture (the scores of the most anomalous images tie there)."""
    chol = torch.linalg.cholesky(sigma)                          # (K, D, D)
    d = (z[None] - mu[:, None]).transpose(1, 2)                  # (K, D, N)
    sol = torch.linalg.solve_triangular(chol, d, upper=False)    # (K, D, N)
    maha = (sol ** 2).sum(1)                                     # (K, N)
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
    if eps > 0:
        det2pi = torch.exp(logdet + z.shape[1] * math.log(2 * math.pi))
        density = phi[:, None] * torch.exp(-0.5 * maha) / torch.sqrt(det2pi + eps)[:, None] + eps
        return -torch.log(density.sum(0))
    log_n = -0.5 * (maha + logdet[:, None] + z.shape[1] * math.log(2 * math.pi))
    return -torch.logsumexp(torch.log(phi.clamp_min(1e-12))[:, None] + log_n, 0)


class DAGMM(Detector):
    """Deep autoencoding Gaussian mixture model (Zong et al. 2018) as the GEOM authors ran it: the CAE pair with a
    linear 5-d code; z = (code, relative Euclidean reconstruction error, cosine similarity); estimation network
    64 tanh - dropout 0.5 - 10 tanh - dropout 0.5 - 3 softmax; loss = MSE + lambda_energy * mean energy +
    lambda_diag * sum 1/diag(Sigma). Adam, batch 256. Anomaly score = sample energy under the mixture:
    ``gmm_fit='full_train'`` fits it to the whole training set after training (the DAGMM paper's choice, exact
    log-space energy); ``'last_batch'`` keeps the last training batch's estimate and scores with the GEOM
    authors' epsilons (:data:`AUTHORS_EPS`), as their Keras code behind Table 1 does."""

    gives_maps = False

    def __init__(self, rep_dim: int = 5, n_components: int = 3, lambda_energy: float = 0.01,
                 lambda_diag: float = 5e-4, lr: float = 1e-3, batch_size: int = 256, size: int | None = None,
                 gmm_fit: str = "full_train", seed: int | None = None, device=None, precision: str = "fp32"):
        if gmm_fit not in ("full_train", "last_batch"):
            raise ValueError(f"gmm_fit must be 'full_train' (the mixture of the whole training set, DAGMM's paper) "
                             f"or 'last_batch' (the last training batch's, the GEOM authors' code), got {gmm_fit!r}")
        self.gmm_fit = gmm_fit
        self.rep_dim, self.n_components, self.lambda_energy, self.lambda_diag = rep_dim, n_components, \
            lambda_energy, lambda_diag
        self.lr, self.batch_size, self.size = lr, batch_size, size
        self.seed, self.device, self.precision = seed, device, precision

    def _z(self, x):
        m = self.model_
        with self._autocast():
            code = m["encoder"](x).float()
            rec = m["decoder"](code).float()
        xf, rf = x.flatten(1), rec.flatten(1)
        rel = (xf - rf).norm(dim=1) / xf.norm(dim=1).clamp_min(1e-12)
        cos = F.cosine_similarity(xf, rf, dim=1)
        return torch.cat([code, rel[:, None], cos[:, None]], 1), rec

    def fit(self, train, epochs: int = 200, progress: bool = False, *, monitor=None) -> "DAGMM":
        self._setup()
        dev = self.device_
        x = prepare(train, self.size)
        n, c, size, _ = x.shape
        self.size_ = size
        gen = training.generator(self.seed_)
        with seeded(self.seed_):
            self.model_ = nn.ModuleDict({
                "encoder": ConvEncoder(c, size, self.rep_dim, "linear"),
                "decoder": ConvDecoder(c, size, self.rep_dim),
                "estimation": nn.Sequential(nn.Linear(self.rep_dim + 2, 64), nn.Tanh(), nn.Dropout(0.5),
                                            nn.Linear(64, 10), nn.Tanh(), nn.Dropout(0.5),
                                            nn.Linear(10, self.n_components), nn.Softmax(1))}).to(dev).train()
            x = x.to(dev)
            if monitor is not None:
                self._monitor_x = x[:2048]

            def loss(idx):
                xb = x[idx]
                z, rec = self._z(xb)
                gamma = self.model_["estimation"](z)
                phi, mu, sigma = gmm_parameters(z.double(), gamma.double())
                self._last_batch = (phi.detach(), mu.detach(), sigma.detach())
                energy = gmm_energy(z.double(), phi, mu, sigma).mean()
                diag = (1.0 / torch.diagonal(sigma, dim1=1, dim2=2)).sum()
                return F.mse_loss(rec, xb) + (self.lambda_energy * energy + self.lambda_diag * diag).float()

            # dropout draws from the global RNG, which seeded() forks for the whole fit
            self.history_ = _fit_loop(self.model_.parameters(), loss, n, int(epochs), self.batch_size, gen, self.lr,
                                      progress=progress, desc="DAGMM", drop_last=True, device=dev,
                                      monitor=monitor, det=self)
        self.model_.eval()
        with torch.no_grad():
            last = self.__dict__.pop("_last_batch", None)
            if self.gmm_fit == "last_batch" and last is not None:
                self.phi_, self.mu_, self.sigma_ = last
            else:
                self.phi_, self.mu_, self.sigma_ = self._mixture(x)
        self._fitted = True
        if monitor is not None:
            monitor.finish(self)
        self.__dict__.pop("_monitor_x", None)
        return self

    def _codes(self, images) -> torch.Tensor:
        """z (float64) of prepared images, in batches on the detector's device."""
        return _batched(lambda b: self._z(b)[0], images, 512, self.device_).double()

    def _mixture(self, x: torch.Tensor):
        """(phi, mu, Sigma) estimated from the codes of the prepared images ``x`` and their memberships."""
        z = self._codes(x)
        gamma = _batched(self.model_["estimation"], z.float(), 4096, self.device_).double()
        return gmm_parameters(z, gamma)

    def _energies(self, images, phi, mu, sigma) -> torch.Tensor:
        z = self._codes(prepare(images, self.size_))
        eps = AUTHORS_EPS if getattr(self, "gmm_fit", "full_train") == "last_batch" else 0.0
        return gmm_energy(z, phi.cpu(), mu.cpu(), sigma.cpu(), eps)

    def monitor_scores(self, images) -> np.ndarray:
        """Energies mid-training (the learning curve's points): the mixture estimated, at this point, from the
        codes of at most 2,048 training images (the finished detector uses all of them)."""
        return self._energies(images, *self._mixture(self._monitor_x)).numpy()

    @torch.no_grad()
    def score(self, test, maps: bool = True) -> Scores:
        """Sample energy under the fitted mixture; DAGMM has no heatmap (``maps`` is always None)."""
        self._check_fitted()
        self.model_.eval()
        return Scores(self._energies(test, self.phi_, self.mu_, self.sigma_))
