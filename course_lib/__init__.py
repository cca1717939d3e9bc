"""course_lib: the small library the course's notebooks import.

- ``settings``: fast mode, data and cache folders, seeds, device
- ``data``: CIFAR-10, MNIST, Fashion-MNIST, image folders and archives, splits
- ``checks``: public checks that give students immediate feedback
- ``plots``: training curves, image grids, confusion matrices, runs compared
- ``trainer``: ``fit``, ``evaluate``, ``DeviceLoader``, checkpoints, the learning-rate range test
- ``models``: the course's classifiers; ``widgets``: interactive explorers
- ``landscapes``: two-dimensional losses for watching optimizers move
- ``notebook``: the set-up and summary cells; ``results``: recorded numbers
- ``errors``: the errors a user can act on (``CourseError`` and its kinds); ``validation``: the
  checks public functions run on their arguments first
"""
from course_lib.notebook import setup_notebook
from course_lib.settings import fast_or_full, get_device, is_fast, seed_everything

__all__ = ["setup_notebook", "fast_or_full", "get_device", "is_fast", "seed_everything"]
__version__ = "0.1.0"
