"""Benchmarks for course_lib.trainer.

1. Overhead (default): ``fit`` against a plain hand-written loop on the same model, data, device
   and number of steps. One untimed warm-up of each, then interleaved repeats; prints the
   medians and their ratio (the course's budget is ``fit`` <= 1.05 x plain).

       python scripts/bench_trainer.py --device cpu --model fast --samples 2048 --repeats 5
       python scripts/bench_trainer.py --model mlp          # a tiny model: the worst case for overhead

2. ``--cifar``: the notebook-03 recipe, FastCIFARNet on CIFAR-10 with the data on the device
   (random crops and flips there), one-cycle SGD with Nesterov momentum, label smoothing,
   channels_last, flip averaging at test time. Prints each epoch and the test accuracy.

       COURSE_DATA_DIR=../shared/data python scripts/bench_trainer.py --cifar
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.models import MLP1, FastCIFARNet, SimpleCNN, count_macs, count_params
from course_lib.settings import describe_device, get_device, seed_everything
from course_lib.trainer import DeviceLoader, evaluate, fit
from course_lib.trainer.training import autocast_dtype

MODELS = {"fast": FastCIFARNet, "simple": SimpleCNN, "mlp": MLP1}


# ----------------------------------------------------------------------------------------------
# fit vs a plain loop
# ----------------------------------------------------------------------------------------------
def make_run(args, device):
    """A fresh, identically seeded (model, optimizer, scheduler, loader) for one timed run."""
    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.samples, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, args.samples)
    loader = DeviceLoader(x, y, args.batch_size, shuffle=True, crop_padding=4, flip=True, device=device, seed=0)
    model = MODELS[args.model]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=args.epochs * len(loader))
    return model, optimizer, scheduler, loader


def plain_loop(model, optimizer, scheduler, loader, epochs, device, channels_last, amp_dtype):
    """What a student would write: no metrics, no progress bar, no checks."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()


def timed(run, device) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) for ``run()``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_overhead(args):
    device = get_device(args.device)
    amp_dtype = autocast_dtype(args.amp, device)

    def run_fit():
        model, optimizer, scheduler, loader = make_run(args, device)
        return lambda: fit(model, loader, None, args.epochs, optimizer, scheduler, device=device,
                           amp=args.amp, channels_last=args.channels_last, progress=False)

    def run_plain():
        model, optimizer, scheduler, loader = make_run(args, device)
        return lambda: plain_loop(model, optimizer, scheduler, loader, args.epochs, device,
                                  args.channels_last, amp_dtype)

    steps = args.epochs * math.ceil(args.samples / args.batch_size)
    print(f"{args.model} on {describe_device(device)}: {steps} steps of batch {args.batch_size} per run, "
          f"amp {amp_dtype}, channels_last {args.channels_last}, {args.repeats} repeats")
    timed(run_fit(), device), timed(run_plain(), device)          # warm-up, not counted
    times = {"fit": [], "plain": []}
    for repeat in range(args.repeats):
        order = ("fit", "plain") if repeat % 2 == 0 else ("plain", "fit")
        for name in order:
            times[name].append(timed(run_fit() if name == "fit" else run_plain(), device))
    # CPU time is the steadier clock on a shared CPU; wall time is what a GPU run is judged by.
    for clock, i in (("wall", 0), ("cpu", 1)):
        fit_s = statistics.median(t[i] for t in times["fit"])
        plain_s = statistics.median(t[i] for t in times["plain"])
        paired = statistics.median(f[i] / p[i] for f, p in zip(times["fit"], times["plain"]))
        print(f"{clock:>4} time: fit median {fit_s:.3f} s ({1000 * fit_s / steps:.2f} ms/step) "
              f"{_fmt(t[i] for t in times['fit'])}, plain median {plain_s:.3f} s {_fmt(t[i] for t in times['plain'])}")
        print(f"{clock:>4} time: ratio fit/plain {fit_s / plain_s:.3f} (median of paired ratios {paired:.3f})")


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


# ----------------------------------------------------------------------------------------------
# The FastCIFARNet recipe on CIFAR-10
# ----------------------------------------------------------------------------------------------
def bench_cifar(args):
    from course_lib.data import load_cifar10

    device = get_device(args.device)
    start = time.perf_counter()
    train, test = load_cifar10("train"), load_cifar10("test")
    if args.samples:
        train = train.sample(args.samples)
    print(f"data: {len(train)} train, {len(test)} test images, loaded in {time.perf_counter() - start:.1f} s")

    mean = train.x.reshape(-1, 3).mean(0) / 255
    std = train.x.reshape(-1, 3).std(0) / 255
    seed_everything(args.seed)
    train_loader = DeviceLoader(train.x, train.y, args.batch_size, shuffle=True, crop_padding=args.crop_padding,
                                flip=True, mean=mean, std=std, drop_last=True, device=device)
    test_loader = DeviceLoader(test.x, test.y, 1000, mean=mean, std=std, device=device)
    model = FastCIFARNet(widths=args.widths)
    print(f"FastCIFARNet{tuple(args.widths)}: {count_params(model):,} parameters, "
          f"{count_macs(model) / 1e6:.1f}M multiply-adds per image")
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=True,
                                weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, args.lr, total_steps=args.epochs * len(train_loader), pct_start=args.warmup,
        anneal_strategy="linear", div_factor=10, final_div_factor=100)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    start = time.perf_counter()
    history = fit(model, train_loader, None, args.epochs, optimizer, scheduler, loss_fn=loss_fn, device=device,
                  amp=args.amp, channels_last=args.channels_last, compile=args.compile, progress=args.progress)
    train_s = time.perf_counter() - start
    result = evaluate(model, test_loader, tta_flip=True, amp=args.amp)
    total_s = time.perf_counter() - start
    plain = evaluate(model, test_loader, amp=args.amp)
    print(f"epoch seconds: {_fmt(history.seconds)} (median {statistics.median(history.seconds):.1f})")
    print(f"test accuracy {result.accuracy:.2%} with flip averaging ({plain.accuracy:.2%} without); "
          f"training {train_s:.0f} s, training + test {total_s:.0f} s on {describe_device(device)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", action="store_true", help="train FastCIFARNet on CIFAR-10 instead")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: settings.get_device())")
    parser.add_argument("--epochs", type=int, default=None, help="default: 2 (overhead), 10 (--cifar)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=None,
                        help="training images (default: 2048 synthetic; all of CIFAR-10 with --cifar)")
    parser.add_argument("--model", choices=sorted(MODELS), default="fast", help="model for the overhead benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--amp", default="auto", type=lambda s: {"true": True, "false": False}.get(s.lower(), s),
                        help="auto, true, false, bf16 or fp16")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--lr", type=float, default=0.4, help="peak learning rate (--cifar)")
    parser.add_argument("--momentum", type=float, default=0.85)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.2)
    parser.add_argument("--crop-padding", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of steps spent warming up")
    parser.add_argument("--widths", type=int, nargs=4, default=[16, 32, 64, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cifar:
        args.epochs = args.epochs or 10
        bench_cifar(args)
    else:
        args.epochs = args.epochs or 2
        args.samples = args.samples or 2048
        bench_overhead(args)


if __name__ == "__main__":
    main()
