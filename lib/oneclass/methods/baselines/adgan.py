"""ADGAN (Deecke et al. 2018) as the GEOM authors ran it for their Table 1 (section 5.1)."""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import training
from ..base import Detector, Scores, seeded
from .common import ConvDecoder, ConvEncoder, prepare

class _BatchStatNorm(torch.nn.Module):
    """A batch norm layer run in training mode without touching its running statistics: normalised by the current
    batch's own mean and (biased) variance. On a batch of one image, a 1-d batch norm outputs its bias (x - mean is
    0), as Keras' does in the authors' generator step."""

    def __init__(self, bn: torch.nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x):
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight.reshape(shape) + self.bias.reshape(shape)


def batch_stat_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` whose batch norm layers normalise by each batch's own statistics (training mode), with
    the same parameter names, so ``functional_call`` takes the same parameters."""
    import copy

    out = copy.deepcopy(net)
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, _BatchStatNorm(child))
    return out


BN_MODES = ("inference", "batch_of_one")


def _adam_step(p, g, m, v, t, lr, beta1, beta2=0.999, eps=1e-7):
    """One Adam update of a batch of independent parameter copies (Keras' epsilon)."""
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    step = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    return p - step * m / (v.sqrt() + eps)


class ADGAN(Detector):
    """ADGAN (Deecke et al. 2018) as the GEOM authors ran it.

    Training: a WGAN-GP with the DCGAN-like pair (critic = :class:`ConvEncoder` with a linear 1-d output,
    generator = :class:`ConvDecoder` from a 256-d Gaussian), Adam lr 1e-4, betas (0, 0.9), gradient penalty 20
    (two-sided), 2 critic updates per generator update, ``batches_per_epoch`` generator updates per epoch
    (100, 100 epochs in the paper). Scoring: for each test image and each of ``n_seeds`` seeds z ~ N(0, I), a fresh
    copy of the generator and z are optimised jointly for ``steps`` rounds (z: Adam 0.25, beta1 0.5; generator:
    Adam 5e-5, beta1 0.5; MSE to the image); the score is the mean over seeds of the final MSE. The copies for
    all seeds (and ``chunk`` images) run batched with ``torch.func.vmap``. ``inversion_bn``: 'inference' (ours:
    batch norm in inference mode throughout) or 'batch_of_one' (the authors' code: the generator step runs batch
    norm in training mode on the one image, which makes the first, 1-d batch norm output its bias; the z step
    and the final loss stay in inference mode).
    """

    gives_maps = False

    def __init__(self, noise_dim: int = 256, lr: float = 1e-4, gp: float = 20.0, critic_steps: int = 2,
                 batch_size: int = 128, batches_per_epoch: int = 100, n_seeds: int = 8, steps: int = 5,
                 z_lr: float = 0.25, g_lr: float = 5e-5, chunk: int = 2, size: int | None = None,
                 seed: int | None = None, device=None, precision: str = "fp32", inversion_bn: str = "inference"):
        if inversion_bn not in BN_MODES:
            raise ValueError(f"inversion_bn must be one of {' | '.join(BN_MODES)}, got {inversion_bn!r}")
        self.inversion_bn = inversion_bn
        self.noise_dim, self.lr, self.gp, self.critic_steps = noise_dim, lr, gp, critic_steps
        self.batch_size, self.batches_per_epoch, self.n_seeds, self.steps = batch_size, batches_per_epoch, \
            n_seeds, steps
        self.z_lr, self.g_lr, self.chunk, self.size = z_lr, g_lr, chunk, size
        self.seed, self.device, self.precision = seed, device, precision

    def fit(self, train, epochs: int = 100, progress: bool = False, *, monitor=None) -> "ADGAN":
        """Train the WGAN-GP (``epochs`` of ``batches_per_epoch`` generator updates). ``monitor``: a
        :class:`oneclass.monitor.Monitor`, one step per generator update (each point runs the full inversion
        on its subset: keep it small)."""
        self._setup()
        with seeded(self.seed_):
            return self._fit(train, epochs, progress, monitor)

    def _fit(self, train, epochs, progress, monitor=None):
        dev = self.device_
        x = prepare(train, self.size)
        n, c, size, _ = x.shape
        if n < 2:
            raise ValueError(f"ADGAN needs at least 2 training images, got {n}")
        self.size_ = size
        g = training.generator(self.seed_)
        G = ConvDecoder(c, size, self.noise_dim).to(dev)
        D = ConvEncoder(c, size, 1, "linear").to(dev)
        x = x.to(dev)
        self.history_ = []
        opt_g = torch.optim.Adam(G.parameters(), lr=self.lr, betas=(0.0, 0.9))
        opt_d = torch.optim.Adam(D.parameters(), lr=self.lr, betas=(0.0, 0.9))
        bs = min(self.batch_size, n)
        bar = training.progress(range(int(epochs)), bool(progress), desc="ADGAN WGAN-GP", leave=False)
        if monitor is not None:
            self.generator_ = G           # what score() inverts; the monitor puts it in eval mode and back
            monitor.start(self, self.batches_per_epoch)
        for _ in bar:
            losses = []
            for _ in range(self.batches_per_epoch):
                for _ in range(self.critic_steps):
                    real = x[torch.randperm(n, generator=g)[:bs].to(dev)]
                    with torch.no_grad():
                        fake = G(torch.randn(bs, self.noise_dim, generator=g).to(dev))
                    w = torch.rand(bs, 1, 1, 1, generator=g).to(dev)
                    mix = (w * real + (1 - w) * fake).requires_grad_(True)
                    (grad,) = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
                    penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                    loss_d = D(fake).mean() - D(real).mean() + self.gp * penalty
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                loss_g = -D(G(torch.randn(bs, self.noise_dim, generator=g).to(dev))).mean()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                losses.append(loss_d.item())
                if monitor is not None:
                    monitor.step(self, losses[-1])
            self.history_.append(training.check_loss(np.mean(losses), len(self.history_) + 1, "ADGAN critic"))
            bar.set_postfix(critic=f"{self.history_[-1]:.3f}")
        self.generator_ = G.eval()
        self._fitted = True
        if monitor is not None:
            monitor.finish(self)
        return self

    def score(self, test, maps: bool = True, progress: bool = False, seed: int | None = None) -> Scores:
        """Mean final reconstruction MSE over the seeds (batch norm as ``inversion_bn`` says)."""
        from torch.func import functional_call, grad, vmap

        self._check_fitted()
        x = prepare(test, self.size_)
        G = self.generator_.eval()
        names = [k for k, _ in G.named_parameters()]
        base = [p.detach() for _, p in G.named_parameters()]
        buffers = {k: b for k, b in G.named_buffers()}
        # the inversion's seeds come from a generator of their own: scoring the same images twice (or after
        # save / load) gives the same numbers
        gen = training.generator(seed if seed is not None else self.seed_ + 1)

        def loss(params, z, img, net=G, bufs=buffers):
            out = functional_call(net, ({k: p for k, p in zip(names, params)}, bufs), (z[None],))
            return ((out[0] - img) ** 2).mean()

        def loss_batch_of_one(params, z, img):     # the generator step of the authors' code
            return loss(params, z, img, G_one, {k: b for k, b in G_one.named_buffers()})

        G_one = batch_stat_copy(G)
        grad_z = vmap(grad(loss, argnums=1))
        grad_p = vmap(grad(loss if self.inversion_bn == "inference" else loss_batch_of_one, argnums=0))
        batched_loss = vmap(loss)
        S = self.n_seeds
        scores = []
        bar = training.progress(range(0, len(x), self.chunk), bool(progress), desc="ADGAN inversion", leave=False)
        for s in bar:
            imgs = x[s:s + self.chunk].to(self.device_)
            B = len(imgs) * S
            img = imgs.repeat_interleave(S, 0)
            z = torch.randn(B, self.noise_dim, generator=gen).to(self.device_)
            params = [p.unsqueeze(0).expand(B, *p.shape).clone() for p in base]
            mz, vz = torch.zeros_like(z), torch.zeros_like(z)
            mp, vp = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
            for t in range(1, self.steps + 1):
                z = _adam_step(z, grad_z(params, z, img), mz, vz, t, self.z_lr, 0.5)
                gp = grad_p(params, z, img)
                params = [_adam_step(p, gi, m, v, t, self.g_lr, 0.5) for p, gi, m, v in zip(params, gp, mp, vp)]
            with torch.no_grad():
                final = batched_loss(params, z, img)
            scores.append(final.reshape(len(imgs), S).mean(1).cpu())
        return Scores(torch.cat(scores).double())


