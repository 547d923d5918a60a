"""Novelty normalization: training images/s end to end (NoveltyNormalization.fit: batching, the NS head, L0
gates, batch min-max, Adam) against the bare model step (autoencoder forward + MSE + backward + Adam on one fixed
batch). Prints medians of a few repeats and their ratio, for the 28px (MNIST) and 32px (CIFAR-10) networks.

    python benchmarks/novelty_throughput.py [--device cuda] [--threads 1] [--images 2048] [--repeats 3]
                                            [--precision auto|fp32|bf16]
"""

import torch

import common
from oneclass.methods.base import autocast, resolve_precision
from oneclass.methods.novelty import CONFIGS, LeNetAutoencoder, NoveltyNormalization


def end_to_end(x, repeats, batch_size, device, precision):
    """Median images/s of one epoch of fit() (set-up included: it is small next to an epoch)."""
    def fit(seed=[0]):
        seed[0] += 1
        NoveltyNormalization(batch_size=batch_size, seed=seed[0], device=device, precision=precision).fit(x, epochs=1)
    return len(x) / common.seconds(fit, device, repeats)


def bare_step(x, cfg, repeats, batch_size, steps, device, precision):
    net = LeNetAutoencoder(x.shape[1], x.shape[-1], cfg["channels"], cfg["z_dim"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xb = x[:batch_size].to(device).float() / 255
    precision = resolve_precision(precision, device)

    def run():
        for _ in range(steps):
            with autocast(device, precision):
                rec, _ = net(xb)
            loss = (rec.float() - xb).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return steps * batch_size / common.seconds(run, device, repeats)


def main():
    ap = common.parser(__doc__)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    args = ap.parse_args()
    if args.smoke:
        args.images, args.repeats = 2 * args.batch_size, 1
    device = common.setup(args)
    print(f"batch {args.batch_size}, {args.images} images per epoch, precision {args.precision}, "
          f"median of {args.repeats} after one warm-up")
    for name, (channels, size) in {"lenet28": (1, 28), "lenet32": (3, 32)}.items():
        x = common.images(args.images, channels, size)
        e2e = end_to_end(x, args.repeats, args.batch_size, device, args.precision)
        bare = bare_step(x, CONFIGS[name], args.repeats, args.batch_size, max(1, args.images // args.batch_size),
                         device, args.precision)
        print(f"{name}: end to end {e2e:8.1f} img/s   bare autoencoder step {bare:8.1f} img/s   "
              f"ratio {e2e / bare:.2f}")


if __name__ == "__main__":
    main()
