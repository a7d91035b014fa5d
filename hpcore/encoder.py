"""Training-state encoder ``s_t``: a few global features of the run, normalised online.

Features (DESIGN section 5): loss level, relative rate of progress and spread of the loss,
gradient norm, update norm and the cosine between successive updates. Each is turned into
a z-score against its own running mean and variance, clipped to +/- 3, so that the bandit and
the residual store see numbers of one scale whatever the model.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FEATURES", "StateEncoder"]

FEATURES = ("log_loss", "progress_rate", "loss_spread", "log_grad_norm", "log_update_norm",
            "update_cosine")


class StateEncoder:
    """Running statistics of full steps and their normalised summary.

    State: ``raw`` the 6 feature EMAs, ``mean`` / ``var`` the 6 of their normalisation,
    ``seen`` the number of full steps absorbed.
    """

    def __init__(self, decay: float = 0.95, norm_decay: float = 0.99) -> None:
        self.decay = decay
        self.norm_decay = norm_decay
        # Six floats each, kept as lists: per step this is cheaper than small NumPy arrays.
        self.raw = [0.0] * len(FEATURES)  # feature EMAs
        self.mean = [0.0] * len(FEATURES)  # running mean of raw
        self.var = [1.0] * len(FEATURES)  # running variance of raw
        self.loss_ema = math.nan  # fast loss average
        self.loss_slow = math.nan  # slow loss average: slow - fast measures progress
        self.loss_var = 0.0
        self.seen = 0

    def observe(self, loss: float, grad_norm: float, update_norm: float, cosine: float) -> None:
        """Absorb one undisturbed full step (``nan`` update statistics keep the last ones)."""
        if not math.isfinite(loss):
            return
        a = 1.0 - self.decay
        if self.seen == 0:
            self.loss_ema = self.loss_slow = loss
        delta = loss - self.loss_ema
        self.loss_ema += a * delta
        self.loss_slow += a * 0.2 * (loss - self.loss_slow)
        self.loss_var = (1 - a) * (self.loss_var + a * delta * delta)
        level = max(abs(self.loss_ema), 1e-12)
        x = (
            math.log(level),
            (self.loss_slow - self.loss_ema) / level,
            math.sqrt(self.loss_var) / level,
            math.log(max(grad_norm, 1e-30)) if math.isfinite(grad_norm) else self.raw[3],
            math.log(max(update_norm, 1e-30)) if math.isfinite(update_norm) else self.raw[4],
            cosine if math.isfinite(cosine) else self.raw[5],
        )
        b = 1.0 - self.norm_decay
        first = self.seen == 0
        for i, xi in enumerate(x):
            r = xi if first else self.raw[i] + a * (xi - self.raw[i])
            m = r if first else self.mean[i]
            d = r - m
            self.raw[i] = r
            self.mean[i] = m + b * d
            self.var[i] = (1 - b) * (self.var[i] + b * d * d)
        self.seen += 1

    def encode(self) -> np.ndarray:
        """The normalised state: (6,) z-scores clipped to [-3, 3] (zeros before any step)."""
        if self.seen == 0:
            return np.zeros(len(FEATURES))
        z = (np.array(self.raw) - np.array(self.mean)) / np.sqrt(np.array(self.var) + 1e-12)
        return np.clip(z, -3.0, 3.0)

    def state_dict(self) -> dict[str, object]:
        return {"raw": np.array(self.raw), "mean": np.array(self.mean), "var": np.array(self.var),
                "loss_ema": self.loss_ema, "loss_slow": self.loss_slow,
                "loss_var": self.loss_var, "seen": self.seen}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.raw = [float(v) for v in state["raw"]]
        self.mean = [float(v) for v in state["mean"]]
        self.var = [float(v) for v in state["var"]]
        self.loss_ema = float(state["loss_ema"])
        self.loss_slow = float(state["loss_slow"])
        self.loss_var = float(state["loss_var"])
        self.seen = int(state["seen"])
