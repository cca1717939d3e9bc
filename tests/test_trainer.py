"""course_lib.trainer: fit, evaluate, checkpoints and DeviceLoader, on CPU with scikit-learn's digits."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.data import load_digits
from course_lib.models import MLP1, PlainCNN
from course_lib.settings import seed_everything
from course_lib.trainer import (
    DeviceLoader, History, evaluate, fit, load_checkpoint, random_crop, random_flip, save_checkpoint,
)
from course_lib.trainer.training import autocast_dtype as _amp_dtype

DIGITS = load_digits()          # 1,797 uint8 images (N, 8, 8), labels 0..9
N_TRAIN = 1400


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    """Every test runs on the CPU, also on a machine with a GPU."""
    monkeypatch.setenv("COURSE_DEVICE", "cpu")


def digits(batch_size=64, **augment):
    train = DeviceLoader(DIGITS.x[:N_TRAIN], DIGITS.y[:N_TRAIN], batch_size, shuffle=True, **augment)
    val = DeviceLoader(DIGITS.x[N_TRAIN:], DIGITS.y[N_TRAIN:], 200)
    return train, val


def mlp(num_classes=10):
    return MLP1(in_channels=1, num_classes=num_classes, image_size=8, hidden=64)


def sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


# ----------------------------------------------------------------------------------------------
# fit and History
# ----------------------------------------------------------------------------------------------
def test_history_has_one_finite_entry_per_epoch():
    seed_everything(0)
    train, val = digits()
    model = mlp()
    optimizer = sgd(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = fit(model, train, val, 3, optimizer, scheduler, progress=False)

    assert len(history) == 3 and not history.time_limit_reached
    for name, values in history.as_dict().items():
        if name == "time_limit_reached":
            continue
        assert len(values) == 3, name
        assert all(math.isfinite(v) for v in values), name
    assert history.lr == pytest.approx([0.1, 0.05, 0.025])          # the lr each epoch started with
    assert all(s > 0 for s in history.seconds)
    assert all(0 <= a <= 1 for a in history.train_acc + history.val_acc)
    assert history.best("val_acc") == max(history.val_acc)
    assert history.best_epoch("val_loss") == int(np.argmin(history.val_loss)) + 1
    record = json.loads(json.dumps(history.as_dict()))
    assert History.from_dict(record) == history
    assert not model.training


def test_without_validation_the_val_lists_stay_empty():
    train, _ = digits()
    model = mlp()
    history = fit(model, train, None, 2, sgd(model), progress=False)
    assert len(history.train_loss) == 2 and history.val_loss == [] and history.val_acc == []
    with pytest.raises(ValueError, match="val=None"):
        history.best("val_acc")


def test_fit_learns_digits_and_evaluate_agrees():
    seed_everything(0)
    train, val = digits()
    model = mlp()
    history = fit(model, train, val, 8, sgd(model), progress=False)
    assert history.train_loss[-1] < history.train_loss[0] / 5
    assert history.val_acc[-1] >= 0.9 and history.train_acc[-1] >= 0.9

    result = evaluate(model, val)
    assert result.accuracy == pytest.approx(history.val_acc[-1])
    assert result.loss == pytest.approx(history.val_loss[-1], rel=1e-5)
    np.testing.assert_array_equal(result.targets, DIGITS.y[N_TRAIN:])
    matrix = result.confusion_matrix(10)
    assert matrix.shape == (10, 10) and matrix.sum() == len(val.y)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(result.accuracy)
    np.testing.assert_array_equal(matrix.sum(1), np.bincount(DIGITS.y[N_TRAIN:], minlength=10))


def test_on_step_sees_every_step_with_its_gradients():
    train, _ = digits()
    model = mlp()
    norms = []
    fit(model, train, None, 2, sgd(model), progress=False,
        on_step=lambda m: norms.append(m.net[1].weight.grad.norm().item()))
    assert len(norms) == 2 * len(train)
    assert all(n > 0 for n in norms) and len(set(norms)) > 1


def test_on_epoch_sees_each_finished_epoch_and_can_stop_the_fit():
    train, val = digits()
    model = mlp()
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(epoch, history):
        seen.append((epoch, len(history), history.val_acc[epoch]))
        if epoch == 1:
            raise Stop()

    with pytest.raises(Stop):
        fit(model, train, val, 5, sgd(model), progress=False, on_epoch=on_epoch)
    assert [(epoch, length) for epoch, length, _ in seen] == [(0, 1), (1, 2)]
    assert all(0 <= acc <= 1 for *_, acc in seen)
    assert not model.training


class StepClock:
    """Stands in for the trainer's clock: one second passes per optimizer step, none otherwise."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def tick(self, model):
        self.now += 1.0


@pytest.mark.parametrize("limit, steps", [(2.5, 3), (3.0, 3), (5.5, 6), (100.0, 12)])
def test_time_limit_stops_after_the_step_that_reaches_it(monkeypatch, limit, steps):
    import course_lib.trainer.training as trainer          # the module whose clock fit reads
    from types import SimpleNamespace

    clock = StepClock()
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=clock.perf_counter, monotonic=clock.perf_counter))
    train, val = digits(batch_size=350)                      # 4 steps per epoch
    model = mlp()
    epochs_seen = []
    history = fit(model, train, val, 3, sgd(model), progress=False, on_step=clock.tick, time_limit=limit,
                  on_epoch=lambda epoch, history: epochs_seen.append(epoch))
    assert clock.now == steps
    epochs = -(-steps // len(train))                         # the partial epoch counts
    assert len(history) == len(history.val_acc) == len(history.lr) == epochs == len(epochs_seen)
    assert history.time_limit_reached == (steps < 3 * len(train))
    assert not model.training
    assert History.from_dict(json.loads(json.dumps(history.as_dict()))) == history


def test_time_limit_must_be_a_positive_number():
    train, _ = digits()
    model = mlp()
    for bad, error in ((0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("60", TypeError),
                       (True, TypeError)):
        with pytest.raises(error, match="time_limit must be a (finite )?number"):
            fit(model, train, None, 1, sgd(model), progress=False, time_limit=bad)


def test_history_of_an_older_checkpoint_loads_without_the_time_limit_flag():
    record = {"train_loss": [1.0], "train_acc": [0.5], "val_loss": [], "val_acc": [], "lr": [0.1], "seconds": [2.0]}
    assert History.from_dict(record).time_limit_reached is False


def test_a_plain_dataloader_works_too():
    seed_everything(0)
    x = torch.tensor(DIGITS.x[:N_TRAIN, None] / 255, dtype=torch.float32)
    data = torch.utils.data.TensorDataset(x, torch.tensor(DIGITS.y[:N_TRAIN]))
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    model = mlp()
    history = fit(model, loader, loader, 5, sgd(model), progress=False)
    assert history.val_acc[-1] >= 0.9


def test_a_single_logit_is_a_binary_classifier():
    seed_everything(0)
    keep = DIGITS.y < 2                                          # zeros against ones
    x, y = DIGITS.x[keep], DIGITS.y[keep]
    train = DeviceLoader(x[:250], y[:250], 32, shuffle=True)
    val = DeviceLoader(x[250:], y[250:], 100)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))       # logits (N, 1)
    history = fit(model, train, val, 3, sgd(model), progress=False)
    assert history.val_acc[-1] >= 0.95
    assert set(np.unique(evaluate(model, val).predictions)) <= {0, 1}


def test_schedulers_step_per_batch_or_per_epoch():
    train, _ = digits()
    epochs = 2
    model = mlp()
    optimizer = sgd(model)
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=epochs * len(train))
    fit(model, train, None, epochs, optimizer, one_cycle, progress=False)
    assert one_cycle.last_epoch == epochs * len(train)            # "auto": OneCycleLR steps every batch

    optimizer = sgd(model)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    fit(model, train, None, epochs, optimizer, step, progress=False)
    assert step.last_epoch == epochs

    optimizer = sgd(model)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    fit(model, train, None, epochs, optimizer, step, scheduler_step="batch", progress=False)
    assert step.last_epoch == epochs * len(train)

    optimizer = sgd(model)
    too_short = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=len(train))
    with pytest.raises(ValueError, match="OneCycleLR has .* steps left but fit needs"):
        fit(model, train, None, epochs, optimizer, too_short, progress=False)


def test_progress_bar_prints_a_line_per_epoch(capsys):
    train, val = digits()
    model = mlp()
    fit(model, train, val, 2, sgd(model))
    out = capsys.readouterr().out
    assert "training on cpu" in out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "val loss" in out


# ----------------------------------------------------------------------------------------------
# Reproducibility, devices, mixed precision
# ----------------------------------------------------------------------------------------------
def seeded_run(seed):
    seed_everything(seed)
    train, val = digits(crop_padding=2, flip=True)
    model = PlainCNN(depth=3, in_channels=1, num_classes=10, width=8)
    history = fit(model, train, val, 2, sgd(model, lr=0.05), progress=False)
    record = history.as_dict()
    del record["seconds"]
    return record, model.state_dict()


def test_two_seeded_cpu_runs_are_identical():
    first, weights = seeded_run(0)
    second, weights_again = seeded_run(0)
    assert first == second
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    other, _ = seeded_run(1)
    assert other != first


def test_course_device_picks_the_cpu(monkeypatch):
    train, _ = digits()
    assert train.device == torch.device("cpu")
    model = mlp()
    fit(model, train, None, 1, sgd(model), progress=False)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_asking_for_a_missing_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train, _ = digits()
    model = mlp()
    with pytest.raises(RuntimeError, match="'cuda' was asked for .* not available"):
        fit(model, train, None, 1, sgd(model), device="cuda", progress=False)
    with pytest.raises(RuntimeError, match="not available"):
        DeviceLoader(DIGITS.x, DIGITS.y, device="cuda")


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                   ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
                         ids=["T4", "V100", "A100", "H100"])
def test_automatic_precision_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected):
    """bf16 from compute capability 8.0 on; below it fp16, even where torch emulates bf16 (Colab's T4)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert _amp_dtype("auto", torch.device("cuda")) is expected
    assert _amp_dtype(True, torch.device("cuda", 0)) is expected
    assert _amp_dtype("bf16", torch.device("cuda")) is torch.bfloat16  # asked for by name: as asked


def test_bf16_autocast_runs_on_cpu_when_asked():
    seed_everything(0)
    train, val = digits()
    model = mlp()
    dtypes = set()
    model.net[1].register_forward_hook(lambda layer, inputs, output: dtypes.add(output.dtype))
    history = fit(model, train, val, 3, sgd(model), amp="bf16", progress=False)
    assert dtypes == {torch.bfloat16}
    assert history.val_acc[-1] >= 0.85 and all(math.isfinite(v) for v in history.train_loss)

    dtypes.clear()
    fit(model, train, None, 1, sgd(model), progress=False)        # "auto": full precision on a CPU
    assert dtypes == {torch.float32}
    dtypes.clear()
    evaluate(model, val, amp=True)                                # True: bfloat16 on a CPU
    assert dtypes == {torch.bfloat16}


@pytest.mark.parametrize("instructions, expected", [((True, False), torch.bfloat16), ((False, True), torch.bfloat16),
                                                     ((False, False), None)])
def test_native_autocast_on_a_cpu_follows_its_bf16_instructions(monkeypatch, instructions, expected):
    """"native": bfloat16 where the CPU has AVX512-BF16 or AMX, full precision where bf16 would be emulated."""
    for probe, present in zip(("_is_avx512_bf16_supported", "_is_amx_tile_supported"), instructions):
        monkeypatch.setattr(torch.cpu, probe, lambda present=present: present, raising=False)
    assert _amp_dtype("native", torch.device("cpu")) is expected
    assert _amp_dtype("auto", torch.device("cpu")) is None              # "auto" stays full precision on a CPU
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert _amp_dtype("native", torch.device("cpu")) is None            # a torch without the probes: no autocast


def test_native_autocast_on_cuda_is_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert _amp_dtype("native", torch.device("cuda")) is torch.bfloat16


def test_fp16_with_a_grad_scaler_on_cpu():
    seed_everything(0)
    train, val = digits()
    model = mlp()
    history = fit(model, train, val, 3, sgd(model), amp="fp16", progress=False)
    assert history.val_acc[-1] >= 0.85


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    seed_everything(0)
    train, val = digits()
    model = mlp()
    optimizer = sgd(model)
    history = fit(model, train, val, 2, optimizer, progress=False)
    path = save_checkpoint(tmp_path / "run" / "model.pt", model, optimizer, history)

    restored = mlp()
    restored_optimizer = sgd(restored)
    assert load_checkpoint(path, restored, restored_optimizer) == history
    for key, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    momentum = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    restored_momentum = [restored_optimizer.state[p]["momentum_buffer"] for p in restored.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, restored_momentum))
    assert evaluate(restored, val).accuracy == pytest.approx(history.val_acc[-1])

    save_checkpoint(path, model)                                  # replacing your own checkpoint is fine
    assert load_checkpoint(path, mlp()) is None
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]   # no temporary files left
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, restored, restored_optimizer)


# ----------------------------------------------------------------------------------------------
# DeviceLoader and its augmentations
# ----------------------------------------------------------------------------------------------
def test_device_loader_batches_uint8_grayscale_in_order():
    loader = DeviceLoader(DIGITS.x[:100], DIGITS.y[:100], batch_size=32)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    x, y = batches[0]
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_allclose(x[:, 0].numpy(), DIGITS.x[:32] / 255, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), DIGITS.y[:32])
    assert len(DeviceLoader(DIGITS.x[:100], DIGITS.y[:100], batch_size=32, drop_last=True)) == 3


def test_device_loader_colour_images_and_normalisation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 4, 5, 3), dtype=np.uint8)           # (N, H, W, C)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    batch, _ = next(iter(DeviceLoader(x, np.zeros(10), batch_size=10, mean=mean, std=std)))
    expected = (x.transpose(0, 3, 1, 2) / 255 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    assert batch.shape == (10, 3, 4, 5)
    np.testing.assert_allclose(batch.numpy(), expected, rtol=1e-5, atol=1e-5)

    floats = torch.rand(10, 3, 4, 5)                                  # float (N, C, H, W) is used as given
    batch, _ = next(iter(DeviceLoader(floats, torch.zeros(10), batch_size=10)))
    assert torch.equal(batch, floats)


def test_device_loader_shuffles_every_sample_once_per_epoch():
    loader = DeviceLoader(DIGITS.x[:200], np.arange(200), batch_size=64, shuffle=True, seed=0)
    first = torch.cat([y for _, y in loader])
    second = torch.cat([y for _, y in loader])
    assert torch.equal(first.sort().values, torch.arange(200))
    assert not torch.equal(first, torch.arange(200)) and not torch.equal(first, second)


def test_device_loader_is_deterministic_for_a_seed():
    def batches(seed):
        loader = DeviceLoader(DIGITS.x[:300], DIGITS.y[:300], 64, shuffle=True, crop_padding=2, flip=True, seed=seed)
        return [(x.clone(), y.clone()) for _ in range(2) for x, y in loader]

    first, again, other = batches(7), batches(7), batches(8)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_random_flip_mirrors_about_half_of_the_images():
    x = torch.rand(64, 3, 6, 6)
    flipped = random_flip(x, torch.Generator().manual_seed(0))
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all())                        # every image is itself or its mirror
    assert 10 < int(mirrored.sum()) < 54


def test_random_crop_takes_windows_of_the_reflect_padded_image():
    padding = 4
    x = torch.arange(16 * 3 * 32 * 32, dtype=torch.float32).reshape(16, 3, 32, 32)
    crops = random_crop(x, padding, torch.Generator().manual_seed(0))
    assert crops.shape == x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                   if torch.equal(crops[i], padded[i, :, dy:dy + 32, dx:dx + 32])]
        assert len(matches) == 1, f"image {i} is not a window of the padded image"
        offsets.add(matches[0])
    assert len(offsets) > 8                                      # offsets differ between images


def test_device_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        DeviceLoader(DIGITS.x[:0], DIGITS.y[:0])
    with pytest.raises(ValueError, match="100 samples but y has 99"):
        DeviceLoader(DIGITS.x[:100], DIGITS.y[:99])
    with pytest.raises(ValueError, match=r"float images must be \(N, C, H, W\)"):
        DeviceLoader(torch.rand(10, 64), torch.zeros(10))


# ----------------------------------------------------------------------------------------------
# Clear errors and evaluate's options
# ----------------------------------------------------------------------------------------------
def test_labels_beyond_the_model_outputs_are_a_clear_error():
    train, _ = digits()
    model = mlp(num_classes=5)
    with pytest.raises(ValueError, match=r"labels go up to 9 but the model has 5 outputs .* num_classes=10"):
        fit(model, train, None, 1, sgd(model), progress=False)

    x = torch.rand(8, 1, 8, 8)
    bad = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])), 4)
    with pytest.raises(ValueError, match="labels go up to 7 but the model has 5 outputs"):
        fit(model, bad, None, 1, sgd(model), progress=False)
    negative = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, -torch.ones(8, dtype=torch.int64)), 4)
    with pytest.raises(ValueError, match="found the label -1"):
        fit(model, negative, None, 1, sgd(model), progress=False)
    with pytest.raises(ValueError, match="labels go up to 9 but the model has 5 outputs"):
        evaluate(model, train)
    one_logit = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    with pytest.raises(ValueError, match="1 output .* num_classes=10"):
        fit(one_logit, train, None, 1, sgd(one_logit), progress=False)


def test_empty_training_data_is_a_clear_error():
    model = mlp()
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="no batches"):
        fit(model, torch.utils.data.DataLoader(empty, 8), None, 1, sgd(model), progress=False)
    small = torch.utils.data.TensorDataset(torch.zeros(5, 1, 8, 8), torch.zeros(5, dtype=torch.int64))
    loader = torch.utils.data.DataLoader(small, 8, drop_last=True)
    with pytest.raises(ValueError, match="batch_size larger than the data set with drop_last=True"):
        fit(model, loader, None, 1, sgd(model), progress=False)
    with pytest.raises(ValueError, match="no batches"):
        fit(model, iter([]), None, 1, sgd(model), progress=False)   # no len(): found after the epoch


def test_bad_options_are_named():
    train, _ = digits()
    model = mlp()
    with pytest.raises(ValueError, match="amp must be"):
        fit(model, train, None, 1, sgd(model), amp="fp8", progress=False)
    with pytest.raises(ValueError, match="scheduler_step must be"):
        fit(model, train, None, 1, sgd(model), scheduler_step="step", progress=False)


def test_evaluate_with_flip_averaging_and_mode_restored():
    seed_everything(0)
    _, val = digits()
    model = PlainCNN(depth=3, in_channels=1, num_classes=10, width=8)
    model.train()
    result = evaluate(model, val, tta_flip=True)
    assert model.training                                         # evaluate puts the mode back

    model.eval()
    with torch.no_grad():
        x = torch.tensor(DIGITS.x[N_TRAIN:, None] / 255, dtype=torch.float32)
        logits = (model(x) + model(x.flip(3))) / 2
    np.testing.assert_array_equal(result.predictions, logits.argmax(1).numpy())
    assert result.loss == pytest.approx(F.cross_entropy(logits, torch.tensor(DIGITS.y[N_TRAIN:])).item(), rel=1e-5)


# ----------------------------------------------------------------------------------------------
# lr_range_test
# ----------------------------------------------------------------------------------------------
def test_range_test_sweeps_exponentially_finds_a_slope_and_changes_nothing():
    from course_lib.trainer import lr_range_test

    seed_everything(0)
    train, _ = digits(batch_size=32)
    model = mlp()
    optimizer = sgd(model, lr=0.05)
    optimizer.step()                                   # some state to keep: the momentum buffers stay absent
    weights = [p.detach().clone() for p in model.parameters()]
    model.eval()
    result = lr_range_test(model, train, optimizer, 1e-4, 10.0, steps=100)

    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights)), "weights restored"
    assert not model.training and optimizer.param_groups[0]["lr"] == 0.05 and not optimizer.state
    n = len(result.lrs)
    assert 10 < n <= 100 and result.losses.shape == result.smoothed.shape == (n,)
    np.testing.assert_allclose(result.lrs, 1e-4 * 1e5 ** (np.arange(n) / 99))      # 100 steps from 1e-4 to 10
    assert n < 100, "a learning rate of 10 makes the loss explode: the test stops early"
    assert 1e-3 < result.steepest() < result.minimum() < 10
    assert result.smoothed.min() < result.smoothed[0] - 0.5                           # the loss fell on the way
    import matplotlib.pyplot as plt

    plt.close(result.plot().figure)


def test_range_test_rejects_bad_ranges():
    from course_lib.trainer import lr_range_test

    train, _ = digits()
    model = mlp()
    with pytest.raises(ValueError, match="0 < lr_min < lr_max"):
        lr_range_test(model, train, sgd(model), 1.0, 0.1)
