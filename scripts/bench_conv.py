"""Benchmark notebook 02's convolutions on one CPU thread: conv2d_naive, conv2d_fast and torch's conv2d.

The two NumPy implementations are the solution notebook's own cells
(solutions/02_convolution/02_convolution.ipynb), read with nbformat and executed here, so no
answer is copied into the repository as plain code. The setting is the notebook's: the first 64
CIFAR-10 test images as float32, 16 random filters 3×3, padding 1, stride 1.

    PYTHONPATH=. COURSE_DATA_DIR=../shared/data python scripts/bench_conv.py [--naive-images 8]
"""
import os

# One thread for every BLAS and OpenMP pool, set before NumPy and torch are imported;
# course_lib.checks.conv.one_thread() also limits them at run time (threadpoolctl).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import nbformat  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "02_convolution" / "02_convolution.ipynb"


def load_solutions(path: Path = NOTEBOOK, names=("conv2d_naive", "conv2d_fast")) -> dict:
    """Execute the solution cells ``names`` (nbgrader grade_ids) of ``path``; returns the functions."""
    cells = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell.source
             for cell in nbformat.read(path, as_version=4).cells}
    namespace = {"np": np}
    for name in names:
        if name not in cells:
            raise SystemExit(f"{path} has no cell with grade_id {name!r}")
        exec(compile(cells[name], f"<{path.name}: {name}>", "exec"), namespace)
    return {name: namespace[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="CIFAR-10 test images (default 64)")
    parser.add_argument("--filters", type=int, default=16, help="3×3 filters (default 16)")
    parser.add_argument("--naive-images", type=int, default=None,
                        help="time conv2d_naive on this many images and scale up (default: all of them)")
    parser.add_argument("--repeats", type=int, default=20, help="runs of conv2d_fast and torch; the best counts")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help="solution notebook to take the code from")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()

    from course_lib.checks.conv import benchmark_conv2d
    from course_lib.data import load_cifar10

    functions = load_solutions(args.notebook)
    x = np.ascontiguousarray(load_cifar10("test").x[:args.images].transpose(0, 3, 1, 2), dtype=np.float32) / 255
    w = (np.random.default_rng(0).standard_normal((args.filters, 3, 3, 3)) / np.sqrt(27)).astype(np.float32)
    b = np.zeros(args.filters, dtype=np.float32)
    result = benchmark_conv2d(functions["conv2d_naive"], functions["conv2d_fast"], x, w, b, stride=1, padding=1,
                              naive_images=args.naive_images, repeats=args.repeats)
    print(f"conv2d_fast / torch = {result['fast_vs_torch']:.2f} (goal: at most 3)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
