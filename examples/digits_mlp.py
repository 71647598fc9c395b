"""An MLP on scikit-learn's bundled 8x8 digits, trained with fg.optim.adam and a jitted step.

The data set (1797 images, 10 classes) ships inside scikit-learn, so nothing
is downloaded.  Without scikit-learn the script says so and exits cleanly.
A loss-curve plot is saved when matplotlib is installed.

Run:  python examples/digits_mlp.py          (--help for options)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import nn, optim


def load(seed: int, test_fraction: float) -> tuple[np.ndarray, ...] | None:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    data = load_digits()
    x = (data.data / 16.0).astype(np.float64)          # pixels 0..16 -> 0..1
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in range(10):                                 # stratified split, reproducible
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=int(round(test_fraction * len(idx))), replace=False)] = True
    # standardise each pixel with training-set statistics (+0.1 keeps the border pixels,
    # which are almost always 0, from being blown up)
    mean, scale = x[~test].mean(axis=0), x[~test].std(axis=0) + 0.1
    x = (x - mean) / scale
    return x[~test], y[~test], x[test], y[test]


def progress(epoch: int, epochs: int, done: int, total: int, loss: float, width: int = 30) -> None:
    filled = int(width * done / total)
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total else ""
    print(f"\r  epoch {epoch:2d}/{epochs} [{bar}] {done:4d}/{total}  loss {loss:.4f}", end=end,
          flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=15, help="passes over the training set (default 15)")
    ap.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    ap.add_argument("--lr", type=float, default=3e-3, help="adam learning rate (default 3e-3)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128],
                    help="hidden layer widths (default: 128)")
    ap.add_argument("--no-decay", dest="decay", action="store_false",
                    help="keep the learning rate constant (default: cosine decay to 0)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the split, init and shuffling")
    ap.add_argument("--out", default="digits_loss.png", help="where to save the loss curve")
    ap.add_argument("--no-plot", action="store_true", help="do not draw the loss curve")
    args = ap.parse_args(argv)

    data = load(args.seed, 0.25)
    if data is None:
        print("scikit-learn is not installed, so the digits data set is not available: skipping.\n"
              "Install it with: pip install scikit-learn")
        return 0
    x_train, y_train, x_test, y_test = data
    sizes = [x_train.shape[1], *args.hidden, 10]
    print(f"digits: {len(y_train)} training and {len(y_test)} test images; MLP {sizes}, "
          f"adam(lr={args.lr}), batch {args.batch_size}")

    params = nn.init_mlp(sizes, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    n = len(y_train)
    # full batches only, so every step has the same shapes: one trace for the whole run
    n_batches = max(n // args.batch_size, 1)
    total_steps = n_batches * args.epochs

    def cosine_decay(count):
        """The step size shrinks from lr to 0 over the run (a schedule: a function of the step)."""
        return args.lr * 0.5 * (1 + fnp.cos(np.pi * fnp.minimum(count / total_steps, 1.0)))

    opt = optim.adam(cosine_decay if args.decay else args.lr)
    state = opt.init(params)

    def loss_fn(params, x, y):
        return nn.softmax_cross_entropy(nn.mlp(params, x), y)

    @fg.jit
    def train_step(params, state, x, y):
        loss, grads = fg.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state, loss

    @fg.jit
    def accuracy(params, x, y):
        return (nn.mlp(params, x).argmax(axis=-1) == y).mean()

    losses = []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(n)
        running = 0.0
        for b in range(n_batches):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            params, state, loss = train_step(params, state, x_train[idx], y_train[idx])
            losses.append(float(loss))
            running += float(loss)
            if b % 5 == 0 or b == n_batches - 1:
                progress(epoch, args.epochs, b + 1, n_batches, running / (b + 1))
        print(f"             train accuracy {float(accuracy(params, x_train, y_train)):.2%}   "
              f"test accuracy {float(accuracy(params, x_test, y_test)):.2%}")
    elapsed = time.perf_counter() - start
    test_acc = float(accuracy(params, x_test, y_test))
    print(f"final test accuracy {test_acc:.2%}  ({elapsed:.1f} s, train_step traced "
          f"{train_step.trace_count} time(s))")

    if not args.no_plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("(matplotlib is not installed: skipping the loss-curve plot)")
        else:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            steps = np.arange(1, len(losses) + 1)
            ax.plot(steps, losses, lw=0.6, alpha=0.5, label="minibatch loss")
            k = max(n_batches // 2, 1)
            if len(losses) >= k:
                smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
                ax.plot(steps[k - 1:], smooth, lw=2, label=f"moving average ({k} steps)")
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel("cross-entropy")
            ax.set_title(f"digits MLP {sizes}: test accuracy {test_acc:.1%}")
            ax.legend()
            fig.tight_layout()
            fig.savefig(args.out, dpi=110)
            plt.close(fig)
            print(f"saved the loss curve to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
