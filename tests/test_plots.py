import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from course_lib.plots import plot_confusion_matrix, plot_history, show_images


def test_history_plot_has_train_and_validation_curves():
    fig = plot_history({"train_loss": [2, 1], "val_loss": [2.1, 1.2], "train_acc": [0.3, 0.5], "val_acc": [0.3, 0.4]})
    loss, acc = fig.axes
    assert [line.get_label() for line in loss.lines] == ["train", "validation"]
    np.testing.assert_array_equal(acc.lines[1].get_ydata(), [0.3, 0.4])
    plt.close(fig)


def test_image_grid_accepts_channels_first_and_names_classes():
    fig = show_images(np.random.rand(5, 3, 8, 8), labels=[0, 1, 0, 1, 1], class_names=["cat", "dog"], ncols=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(fig.axes) == 8 and titles == ["cat", "dog", "cat", "dog", "dog"]
    assert fig.axes[0].images[0].get_array().shape == (8, 8, 3)
    plt.close(fig)


def test_confusion_matrix_rows_are_fractions():
    fig = plot_confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, [[0.5, 0.5], [0, 1]])
    plt.close(fig)


def test_compare_histories_overlays_runs_and_uses_given_axes():
    from course_lib.plots import compare_histories
    from course_lib.trainer import History

    runs = {"a": History(train_loss=[2.0, 1.0], val_acc=[0.3, 0.5]), "b": {"train_loss": [2.2, 1.5], "val_acc": [0.2, 0.4]}}
    fig = compare_histories(runs, title="race")
    loss, acc = fig.axes
    assert [line.get_label() for line in acc.lines] == ["a", "b"] and loss.get_yscale() == "log"
    np.testing.assert_array_equal(acc.lines[1].get_ydata(), [0.2, 0.4])
    plt.close(fig)

    fig, axes = plt.subplots(1, 3)
    assert compare_histories(runs, keys=("val_acc",), axes=axes[2:]) is fig
    assert len(axes[2].lines) == 2 and not axes[0].lines
    plt.close(fig)


def test_compare_histories_draws_the_mean_of_seeds_with_their_range():
    import pytest

    from course_lib.errors import CourseValueError
    from course_lib.plots import compare_histories
    from course_lib.trainer import History

    seeds = [History(train_loss=[2.0, 1.0], val_acc=[0.3, 0.5]), History(train_loss=[2.0, 1.2], val_acc=[0.2, 0.6])]
    fig = compare_histories({"three seeds": seeds, "one": History(train_loss=[2.1, 1.1], val_acc=[0.25, 0.45])},
                            keys=("val_acc",))
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["three seeds (2 seeds)", "one"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.25, 0.55])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == 0.2 and band.max() == 0.6
    plt.close(fig)
    with pytest.raises(CourseValueError, match="of different lengths"):
        compare_histories({"uneven": [seeds[0], History(train_loss=[1.0], val_acc=[0.1])]})


def test_plot_spread_shows_each_seed_and_the_mean_with_its_standard_deviation():
    import pytest

    from course_lib.errors import CourseValueError
    from course_lib.plots import plot_spread

    ax = plot_spread({"a": [0.5, 0.6, 0.7], "b": np.array([0.4])}, title="races")
    bars = ax.containers
    assert len(bars) == 2 and [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    np.testing.assert_allclose(np.asarray(bars[0].lines[0].get_xdata(), dtype=float), [0.6])
    np.testing.assert_allclose(bars[0].lines[2][0].get_segments()[0][:, 0], [0.5, 0.7])    # ± one sd (0.1)
    seed_ticks = [line for line in ax.lines if len(line.get_xdata()) == 3]
    np.testing.assert_allclose(seed_ticks[0].get_xdata(), [0.5, 0.6, 0.7])                 # every seed
    plt.close(ax.figure)
    with pytest.raises(CourseValueError, match="is empty"):
        plot_spread({"a": []})
