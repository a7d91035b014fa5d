"""Small NumPy models (an MLP, softmax regression) on flat float32 parameters, and the digits data.

Used by the NumPy benchmark workload, the tests and the README's Quick Start.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["MLP", "SoftmaxRegression", "batches", "load_digits_split", "split_standardised"]


def load_digits_split(seed: int = 0, test_fraction: float = 0.25):
    """scikit-learn's bundled digits (1,797 8x8 images), standardised, split reproducibly.

    Returns ``(x_train, y_train, x_test, y_test)`` with float32 inputs and int64 labels.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return split_standardised(x, y, seed, test_fraction)


def split_standardised(x: np.ndarray, y: np.ndarray, seed: int, test_fraction: float):
    """A reproducible train/test split, inputs standardised on the train part (float32)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    x = ((x - mean) / std).astype(np.float32)
    return x[train], y[train].astype(np.int64), x[test], y[test].astype(np.int64)


def _xent_and_dlogits(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of logits ``z`` against labels ``y``, and its gradient."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
    p[np.arange(n), y] -= 1.0
    p /= n
    return loss, p


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> Iterator[tuple]:
    """Endless shuffled minibatches ``(x, y)``, reshuffled each epoch."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(y))
        for i in range(0, len(y) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


class MLP:
    """One hidden layer (tanh) and softmax cross-entropy over a flat parameter vector."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int) -> None:
        self.shapes = [(n_in, n_hidden), (n_hidden,), (n_hidden, n_out), (n_out,)]
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.size = int(self.offsets[-1])

    def init(self, seed: int) -> np.ndarray:
        """Glorot-uniform weights, zero biases, as one float32 vector."""
        rng = np.random.default_rng(seed)
        parts = []
        for shape in self.shapes:
            if len(shape) == 2:
                bound = np.sqrt(6.0 / (shape[0] + shape[1]))
                parts.append(rng.uniform(-bound, bound, size=shape).ravel())
            else:
                parts.append(np.zeros(shape))
        return np.concatenate(parts).astype(np.float32)

    def unpack(self, params: np.ndarray) -> list[np.ndarray]:
        """Views of ``params`` in the layer shapes."""
        return [
            params[self.offsets[i] : self.offsets[i + 1]].reshape(s)
            for i, s in enumerate(self.shapes)
        ]

    def logits(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        w1, b1, w2, b2 = self.unpack(params)
        return np.tanh(x @ w1 + b1) @ w2 + b2

    def loss(self, params: np.ndarray, batch: tuple) -> float:
        """Mean cross-entropy on ``batch = (x, y)``."""
        return _xent_and_dlogits(self.logits(params, batch[0]), batch[1])[0]

    def loss_and_grad(self, params: np.ndarray, batch: tuple) -> tuple[float, np.ndarray]:
        """Mean cross-entropy and its gradient with respect to ``params`` (float32)."""
        x, y = batch
        w1, b1, w2, b2 = self.unpack(params)
        h = np.tanh(x @ w1 + b1)
        loss, dz = _xent_and_dlogits(h @ w2 + b2, y)
        dh = (dz @ w2.T) * (1.0 - h * h)
        grad = np.concatenate(
            [(x.T @ dh).ravel(), dh.sum(axis=0), (h.T @ dz).ravel(), dz.sum(axis=0)]
        )
        return loss, grad.astype(np.float32)

    def accuracy(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        """Share of ``x`` classified as ``y``."""
        return float((self.logits(params, x).argmax(axis=1) == y).mean())


class SoftmaxRegression:
    """Multinomial logistic regression (``x @ W + b``, softmax cross-entropy) on a flat vector."""

    def __init__(self, n_in: int, n_out: int) -> None:
        self.shapes = [(n_in, n_out), (n_out,)]
        self.n_in, self.n_out = n_in, n_out
        self.size = n_in * n_out + n_out

    def init(self, seed: int) -> np.ndarray:
        """Small Gaussian weights (std 0.01), zero biases, as one float32 vector."""
        rng = np.random.default_rng(seed)
        w = rng.normal(0.0, 0.01, size=self.n_in * self.n_out)
        return np.concatenate([w, np.zeros(self.n_out)]).astype(np.float32)

    def _split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.n_in * self.n_out
        return params[:k].reshape(self.n_in, self.n_out), params[k:]

    def logits(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        w, b = self._split(params)
        return x @ w + b

    def loss(self, params: np.ndarray, batch: tuple) -> float:
        """Mean cross-entropy on ``batch = (x, y)``."""
        return _xent_and_dlogits(self.logits(params, batch[0]), batch[1])[0]

    def loss_and_grad(self, params: np.ndarray, batch: tuple) -> tuple[float, np.ndarray]:
        """Mean cross-entropy and its gradient with respect to ``params`` (float32)."""
        x, y = batch
        loss, dz = _xent_and_dlogits(self.logits(params, x), y)
        return loss, np.concatenate([(x.T @ dz).ravel(), dz.sum(axis=0)]).astype(np.float32)

    def accuracy(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        """Share of ``x`` classified as ``y``."""
        return float((self.logits(params, x).argmax(axis=1) == y).mean())
