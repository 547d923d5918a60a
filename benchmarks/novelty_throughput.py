"""Novelty normalization: training images/s end to end (NoveltyNormalization.fit: batching, the NS head, L0
gates, batch min-max, Adam) against the bare model step (autoencoder forward + MSE + backward + Adam on one fixed
batch). Prints medians of a few repeats and their ratio, for the 28px (MNIST) and 32px (CIFAR-10) networks.

    OMP_NUM_THREADS=1 python benchmarks/novelty_throughput.py [--threads 1] [--images 2048] [--repeats 3]
"""
import argparse
import statistics
import time

import torch

from oneclass.novelty import CONFIGS, LeNetAutoencoder, NoveltyNormalization


def end_to_end(x, repeats, batch_size):
    rates = []
    for r in range(repeats):
        det = NoveltyNormalization(batch_size=batch_size, seed=r)
        t = time.perf_counter()
        det.fit(x, epochs=1)
        rates.append(len(x) / (time.perf_counter() - t))
    return statistics.median(rates)


def bare_step(x, cfg, repeats, batch_size, steps):
    net = LeNetAutoencoder(x.shape[1], x.shape[-1], cfg["channels"], cfg["z_dim"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xb = x[:batch_size].float() / 255
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            rec, _ = net(xb)
            loss = (rec - xb).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rates.append(steps * batch_size / (time.perf_counter() - t))
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch_size}, "
          f"{args.images} images per epoch, median of {args.repeats}")
    for name, (channels, size) in {"lenet28": (1, 28), "lenet32": (3, 32)}.items():
        x = torch.randint(0, 256, (args.images, channels, size, size), generator=g, dtype=torch.uint8)
        # warm-up: the first call pays for lazy initialisation (allocator, kernel selection), not throughput
        end_to_end(x[:2 * args.batch_size], 1, args.batch_size)
        bare_step(x, CONFIGS[name], 1, args.batch_size, steps=1)
        e2e = end_to_end(x, args.repeats, args.batch_size)
        bare = bare_step(x, CONFIGS[name], args.repeats, args.batch_size, steps=max(1, args.images // args.batch_size))
        print(f"{name}: end to end {e2e:8.1f} img/s   bare autoencoder step {bare:8.1f} img/s   "
              f"ratio {e2e / bare:.2f}")


if __name__ == "__main__":
    main()
