"""Small objectives for the tuning tests and scripts/bench_tuning_workers.py (maximize them all).

Each records the pid of the worker process running it in the trial's user attribute ``pid``.
"""
import os
import time


def quadratic(trial):
    """-(x - 1)^2 for x in [-3, 3]: best 0 at x = 1; a few milliseconds per trial."""
    trial.set_user_attr("pid", os.getpid())
    x = trial.suggest_float("x", -3, 3)
    time.sleep(0.02)  # gives two workers on one study a chance to interleave
    return -(x - 1) ** 2


def slow_quadratic(trial):
    """``quadratic`` taking about half a second in ten reported steps, so a worker can be killed mid-trial."""
    trial.set_user_attr("pid", os.getpid())
    x = trial.suggest_float("x", -3, 3)
    for step in range(10):
        time.sleep(0.05)
        trial.report(-(x - 1) ** 2 * (10 - step), step)
    return -(x - 1) ** 2


def tiny_mlp(trial):
    """Validation accuracy of a 20-hidden-2 MLP after 600 full-batch Adam steps on synthetic data (~1 s on one thread)."""
    import torch

    trial.set_user_attr("pid", os.getpid())
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    hidden = trial.suggest_int("hidden", 8, 64, log=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 20, generator=generator)
    y = ((x[:, :5] ** 2).sum(1) > 5).long()
    torch.manual_seed(trial.number)
    model = torch.nn.Sequential(torch.nn.Linear(20, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(600):
        loss = torch.nn.functional.cross_entropy(model(x[:1536]), y[:1536])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 99:
            with torch.no_grad():
                accuracy = (model(x[1536:]).argmax(1) == y[1536:]).float().mean().item()
            trial.report(accuracy, step)
    return accuracy
