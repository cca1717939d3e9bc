"""Training and evaluation for the course's PyTorch notebooks (03-06).

    train = DeviceLoader(x_train, y_train, batch_size=256, shuffle=True, crop_padding=4, flip=True)
    test = DeviceLoader(x_test, y_test, batch_size=1000)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=10 * len(train))
    history = fit(model, train, test, 10, optimizer, scheduler)
    result = evaluate(model, test, tta_flip=True)     # result.accuracy, result.predictions
    save_checkpoint("model.pt", model, optimizer, history)

What ``fit`` does for you, and the rules it follows:

- Device: ``device=None`` uses the data's device for a ``DeviceLoader`` and ``settings.get_device()``
  (CUDA > MPS > CPU, or ``COURSE_DEVICE``) otherwise. The model (and any optimizer state) is moved
  to that device in place, and the progress header says so; every batch is copied there too.
- Mixed precision: ``amp="auto"`` turns autocast on for CUDA only (bfloat16 from compute capability
  8.0 on, as on an A100 or H100; float16 with a ``GradScaler`` below, as on Colab's T4); ``amp="native"``
  also on CPUs with bfloat16 instructions (AVX512-BF16 or AMX: about twice as fast for convolutions);
  ``amp=True`` on any CPU (bfloat16) and MPS.
- No host synchronisation per step: loss and correct counts are summed on the device and read
  once per epoch, or when the progress bar refreshes (at most twice a second).
- Schedulers: OneCycleLR and CyclicLR are stepped after every batch, every other scheduler once
  per epoch (ReduceLROnPlateau with the validation loss, or the training loss when ``val`` is
  None). ``scheduler_step="batch"`` or ``"epoch"`` overrides the rule.
- Models may output (N, K) logits with K >= 2 (cross-entropy, prediction = argmax) or a single
  logit (N,) / (N, 1) for two classes (binary cross-entropy, prediction = logit > 0).
- Mistakes stop before training, with a message that says what to do (``course_lib.errors``): a
  pair (x, y) or an array instead of batches, epochs < 0, an optimizer built on another model's
  parameters, images of a shape the model does not take (found by the first batch), labels beyond
  the model's outputs. A loss that turns NaN or infinite stops ``fit`` at once on a CPU, and at the
  next progress-bar refresh or epoch end on a GPU (so as not to wait for the GPU at every step),
  naming the epoch and step where it first happened; ``stop_on_nonfinite=False`` trains on.
- Time budget: ``time_limit=seconds`` ends training after the step that reaches it (that epoch is
  still validated and recorded); ``History.time_limit_reached`` says whether it did.

The package, one module per topic (``from course_lib.trainer import ...`` gives all the names below):

- ``loaders``: ``DeviceLoader``, ``random_crop``, ``random_flip``
- ``training``: ``fit``, ``evaluate``, ``History``, ``EvalResult``
- ``checkpoints``: ``save_checkpoint``, ``load_checkpoint``
- ``lr_range``: ``lr_range_test``, ``RangeTest``
- ``steps``: what those share: ``default_loss``, ``predict``, and the checks of the first batch
"""
from course_lib.trainer.checkpoints import load_checkpoint, save_checkpoint
from course_lib.trainer.loaders import DeviceLoader, random_crop, random_flip
from course_lib.trainer.lr_range import RangeTest, lr_range_test
from course_lib.trainer.steps import default_loss, predict
from course_lib.trainer.training import EvalResult, History, evaluate, fit

__all__ = [
    "History", "EvalResult", "DeviceLoader", "fit", "evaluate", "save_checkpoint", "load_checkpoint",
    "random_crop", "random_flip", "RangeTest", "lr_range_test", "default_loss", "predict",
]
