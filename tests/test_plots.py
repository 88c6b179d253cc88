"""Tests for labkit.plots: each function returns a Figure with the right axes, images and
text, and none leaves a figure behind in pyplot."""
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from labkit.plots import (  # noqa: E402
    draw_history,
    plot_confusion_matrix,
    plot_history,
    show_images,
    show_mistakes,
)

RED = "#d62728"
NAMES = ["T-shirt", "Trouser", "Pullover"]


@pytest.fixture(autouse=True)
def no_leaked_figures():
    """Every test: pyplot's list of open figures is the same after as before."""
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a plotting function left a figure open in pyplot"


def images_of(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def titles_of(fig):
    return [ax.title for ax in fig.axes]


# --------------------------------------------------------------------------- confusion matrix
CM = torch.tensor([[50, 2, 0], [5, 40, 5], [0, 1, 9]])


def test_confusion_matrix_counts_labels_and_colorbar():
    fig = plot_confusion_matrix(CM, NAMES)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # the matrix and its colorbar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in CM.flatten().tolist()]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert ax.get_xlabel() == "Predicted class" and ax.get_ylabel() == "True class"
    assert ax.get_title() == "Confusion matrix"
    assert len(ax.get_images()) == 1


def test_confusion_matrix_text_is_readable_on_dark_and_light_cells():
    fig = plot_confusion_matrix(CM, NAMES)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in fig.axes[0].texts}
    assert texts[(0, 0)].get_color() == "white"  # 50: the darkest cell
    assert texts[(0, 1)].get_color() == "black"  # 2: a light cell
    assert texts[(0, 2)].get_color() != "white"  # 0: light grey on white


def test_confusion_matrix_normalized_shows_row_percentages():
    fig = plot_confusion_matrix(CM, NAMES, normalize=True)
    texts = [t.get_text() for t in fig.axes[0].texts]
    # row 1 has 50 samples: 5 -> 10%, 40 -> 80%; row 2 has 10: 1 -> 10%, 9 -> 90%
    assert texts[3:] == ["10%", "80%", "10%", "0", "10%", "90%"]
    assert texts[1] == "3.8%"  # 2 of 52
    assert "%" in fig.axes[0].get_title()
    assert fig.axes[0].get_images()[0].get_array().max() == pytest.approx(100 * 50 / 52)


def test_confusion_matrix_row_without_samples_is_zero_not_nan():
    cm = torch.tensor([[3, 1], [0, 0]])
    fig = plot_confusion_matrix(cm, ["a", "b"], normalize=True)
    assert not np.isnan(fig.axes[0].get_images()[0].get_array()).any()


def test_confusion_matrix_into_existing_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_confusion_matrix(CM.numpy(), NAMES, ax=ax, title="Test set") is fig
    assert ax.get_title() == "Test set"


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(torch.zeros(2, 3), ["a", "b"])
    with pytest.raises(ValueError, match="2 names but the matrix has 3 classes"):
        plot_confusion_matrix(CM, ["a", "b"])


def test_confusion_matrix_many_classes_skips_numbers():
    fig = plot_confusion_matrix(torch.ones(40, 40, dtype=torch.long))
    assert len(fig.axes[0].texts) == 0


# --------------------------------------------------------------------------- image grids
def test_show_images_grid_and_captions():
    images = torch.randint(0, 256, (10, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    fig = show_images(images, labels, NAMES, ncols=4)
    assert len(images_of(fig)) == 10
    assert len(fig.axes) == 10  # the two empty cells of the 3 x 4 grid are removed
    assert [t.get_text() for t in titles_of(fig)] == [NAMES[i] for i in labels.tolist()]
    assert fig._suptitle.get_text() == "10 images"
    shown = images_of(fig)[0].get_array()
    assert np.allclose(shown, images[0].numpy() / 255)


@pytest.mark.parametrize(
    "images",
    [
        torch.rand(3, 28, 28),
        torch.rand(3, 1, 28, 28),
        (torch.rand(3, 1, 28, 28) - 0.1307) / 0.3081,  # normalised like MNIST
        np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8),
    ],
)
def test_show_images_accepts_every_layout_and_scales_to_0_1(images):
    fig = show_images(images)
    shown = [im.get_array() for im in images_of(fig)]
    assert len(shown) == 3 and all(a.shape == (28, 28) for a in shown)
    values = np.stack(shown)
    assert values.min() >= 0 and values.max() <= 1
    assert values.max() - values.min() > 0.5  # not washed out


def test_show_images_colour():
    fig = show_images(torch.rand(2, 3, 32, 32))
    assert images_of(fig)[0].get_array().shape == (32, 32, 3)


def test_show_images_true_and_predicted_with_wrong_ones_in_red():
    labels = torch.tensor([0, 1, 2, 2])
    preds = torch.tensor([0, 2, 2, 1])
    fig = show_images(torch.rand(4, 28, 28), labels, NAMES, preds=preds)
    titles = titles_of(fig)
    assert [t.get_text().replace("\n", " ") for t in titles] == [
        "T-shirt → T-shirt", "Trouser → Pullover", "Pullover → Pullover", "Pullover → Trouser",
    ]
    colours = [to_hex(t.get_color()) for t in titles]
    assert colours[1] == colours[3] == RED
    assert colours[0] != RED and colours[2] != RED
    assert fig._suptitle.get_text() == "2 of 4 predictions wrong (red)"


def test_show_images_preds_may_be_logits():
    logits = torch.eye(3)[[2, 1, 0]] * 4
    fig = show_images(torch.rand(3, 28, 28), [2, 1, 1], preds=logits)
    assert [t.get_text() for t in titles_of(fig)] == ["2 → 2", "1 → 1", "1 → 0"]


def test_show_images_limits_the_number_of_images():
    fig = show_images(torch.rand(100, 28, 28), max_images=12, title="")
    assert len(images_of(fig)) == 12
    assert fig._suptitle is None


def test_show_images_rejects_bad_input():
    with pytest.raises(ValueError, match="4-D images"):
        show_images(torch.rand(2, 5, 28, 28))
    with pytest.raises(ValueError, match="0 images"):
        show_images(torch.rand(0, 28, 28))
    with pytest.raises(ValueError, match="only 2 labels"):
        show_images(torch.rand(3, 28, 28), [0, 1])
    with pytest.raises(ValueError, match="label 5 has no name"):
        show_images(torch.rand(1, 28, 28), [5], NAMES)


# --------------------------------------------------------------------------- mistakes
def mistake_case():
    """6 images; samples 1, 3 and 4 are wrong, with confidences 0.6, 0.9 and 0.75."""
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    probs = torch.tensor([
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],  # wrong: 1 -> 0 at 60%
        [0.1, 0.1, 0.8],
        [0.05, 0.05, 0.9],  # wrong: 0 -> 2 at 90%
        [0.05, 0.2, 0.75],  # wrong: 1 -> 2 at 75%
        [0.0, 0.0, 1.0],
    ])
    images = torch.arange(6).float().reshape(6, 1, 1, 1).expand(6, 1, 28, 28).clone()
    return images, targets, probs


def test_show_mistakes_most_confident_first():
    images, targets, probs = mistake_case()
    fig = show_mistakes(images, targets, probs, ["a", "b", "c"])
    captions = [t.get_text() for t in titles_of(fig)]
    assert captions == ["a → c\n90%", "b → c\n75%", "b → a\n60%"]
    assert all(to_hex(t.get_color()) == RED for t in titles_of(fig))
    # The images follow their captions: samples 3, 4, 1, whose pixels are 3, 4, 1, shown
    # rescaled from 1..4 to 0..1.
    firsts = [float(im.get_array()[0, 0]) for im in images_of(fig)]
    assert firsts == pytest.approx([2 / 3, 1.0, 0.0])
    assert "3 of 6 wrong (50.0%)" in fig._suptitle.get_text()


def test_show_mistakes_logits_give_the_same_order_as_probabilities():
    images, targets, probs = mistake_case()
    logits = torch.log(probs.clamp_min(1e-6)) + 3.0  # any shift of logits keeps softmax the same
    a = [t.get_text() for t in titles_of(show_mistakes(images, targets, logits))]
    b = [t.get_text() for t in titles_of(show_mistakes(images, targets, probs))]
    assert [x.split("\n")[0] for x in a] == [x.split("\n")[0] for x in b]


def test_show_mistakes_with_labels_keeps_data_order_and_limit():
    images, targets, probs = mistake_case()
    fig = show_mistakes(images, targets, probs.argmax(1), n=2)
    assert [t.get_text() for t in titles_of(fig)] == ["1 → 0", "0 → 2"]


def test_show_mistakes_reads_only_what_it_shows_from_a_dataset():
    images, targets, probs = mistake_case()

    class Counting(TensorDataset):
        reads = []

        def __getitem__(self, i):
            self.reads.append(i)
            return super().__getitem__(i)

    data = Counting(images, targets)
    fig = show_mistakes(data, targets, probs, n=2)
    assert len(images_of(fig)) == 2
    assert sorted(Counting.reads) == [3, 4]


def test_show_mistakes_when_there_are_none():
    targets = torch.tensor([0, 1])
    fig = show_mistakes(torch.rand(2, 28, 28), targets, targets)
    assert images_of(fig) == []
    assert "No mistakes" in fig.axes[0].texts[0].get_text()


def test_show_mistakes_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="got 3 images but 2 targets"):
        show_mistakes(torch.rand(3, 28, 28), torch.tensor([0, 1]), torch.tensor([1, 0]))


# --------------------------------------------------------------------------- history
HISTORY = {
    "train_loss": [1.0, 0.6, 0.4],
    "val_loss": [1.1, 0.8, 0.7],
    "train_accuracy": [0.6, 0.8, 0.9],
    "val_accuracy": [0.55, 0.7, 0.75],
    "lr": [0.01, 0.01, 0.001],
    "epoch_time": [1.0, 1.1, 0.9],
}


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_history_loss_beside_accuracy():
    fig = plot_history(HISTORY)
    assert len(fig.axes) == 2  # lr and epoch_time are not drawn unless asked for
    loss_ax, acc_ax = fig.axes
    loss = lines_by_label(loss_ax)
    assert set(loss) == {"train", "val"}
    assert list(loss["train"].get_xdata()) == [1, 2, 3]  # epochs start at 1
    assert list(loss["val"].get_ydata()) == HISTORY["val_loss"]
    assert list(lines_by_label(acc_ax)["val"].get_ydata()) == HISTORY["val_accuracy"]
    assert loss_ax.get_title() == "Loss" and acc_ax.get_title() == "Accuracy"
    assert loss_ax.get_xlabel() == acc_ax.get_xlabel() == "epoch"
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy"
    assert loss_ax.get_legend() is not None


def test_plot_history_without_validation():
    fig = plot_history({k: v for k, v in HISTORY.items() if not k.startswith("val_")})
    assert [set(lines_by_label(ax)) for ax in fig.axes] == [{"train"}, {"train"}]


def test_plot_history_loss_only_and_chosen_metrics():
    assert len(plot_history({"train_loss": [1.0, 0.5]}).axes) == 1
    fig = plot_history(HISTORY, metrics=["accuracy", "lr"])
    assert len(fig.axes) == 3
    assert fig.axes[2].get_title() == "Learning rate"
    assert list(fig.axes[2].get_lines()[0].get_ydata()) == HISTORY["lr"]
    with pytest.raises(ValueError, match="history has no 'f1'"):
        plot_history(HISTORY, metrics=["f1"])


def test_plot_history_accepts_tensors_and_one_epoch():
    fig = plot_history({"train_loss": [torch.tensor(0.5)], "train_accuracy": [torch.tensor(0.7)]})
    assert list(fig.axes[0].get_xticks()) == [1]


def test_draw_history_redraws_in_place():
    fig = Figure()
    axes = fig.subplots(1, 2)
    short = {k: v[:1] for k, v in HISTORY.items()}
    draw_history(axes, short)
    draw_history(axes, HISTORY)  # the second draw replaces the first, no duplicate lines
    assert len(fig.axes) == 2
    assert [len(ax.get_lines()) for ax in axes] == [2, 2]
    assert list(axes[0].get_lines()[0].get_xdata()) == [1, 2, 3]


def test_draw_history_puts_extra_metrics_on_the_last_axes():
    fig = Figure()
    axes = fig.subplots(1, 2)
    history = {**HISTORY, "train_top5_accuracy": [0.9, 0.95, 1.0]}
    draw_history(axes, history)
    assert axes[1].get_title() == "Metrics"
    assert set(lines_by_label(axes[1])) == {"train accuracy", "val accuracy", "train top5_accuracy"}


def test_draw_history_needs_a_second_axes_for_metrics():
    ax = Figure().add_subplot()
    with pytest.raises(ValueError, match="only one Axes"):
        draw_history(ax, HISTORY)
    draw_history(ax, HISTORY, metrics=[])
    assert len(ax.get_lines()) == 2


def test_empty_history_before_the_first_epoch():
    fig = Figure()
    axes = fig.subplots(1, 2)
    draw_history(axes, {})
    assert axes[0].get_title() == "Loss" and len(axes[0].get_lines()) == 0


# --------------------------------------------------------------------------- notebooks and files
def test_figures_show_in_notebooks_and_save(tmp_path):
    figures = [
        plot_confusion_matrix(CM, NAMES),
        show_images(torch.rand(3, 28, 28), [0, 1, 2]),
        show_mistakes(*mistake_case()),
        plot_history(HISTORY),
    ]
    for k, fig in enumerate(figures):
        assert fig._repr_png_().startswith(b"\x89PNG")  # what Jupyter displays
        assert repr(fig).startswith("<Figure size")
        fig.savefig(tmp_path / f"{k}.png")
        assert (tmp_path / f"{k}.png").stat().st_size > 1000


def test_chinese_labels_render_with_the_shipped_font(recwarn):
    """matplotlib warns "Glyph … missing from font(s)" and draws boxes when no font has a character."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import labkit  # noqa: F401  (registers the font)
    from labkit.fonts import CHINESE_FONT

    assert CHINESE_FONT in matplotlib.rcParams["font.family"]
    fig = Figure(figsize=(4, 2))
    ax = fig.subplots()
    ax.set_title("唐诗 · 字频：春眠不觉晓")
    ax.set_xticks([0, 1], ["正面 positive", "负面 negative"])
    ax.text(0.5, 0.5, "床前明月光，疑是地上霜。")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph fails the test
        fig.savefig(io.BytesIO(), format="png")


def test_bold_text_draws_without_a_missing_weight_warning(caplog):
    """The shipped font has one weight; bold text (Latin or Chinese) must not log matplotlib's
    "Failed to find font weight bold for Noto Sans CJK SC" (02's and 06a's bold labels did)."""
    import logging

    import matplotlib
    from matplotlib import font_manager

    matplotlib.use("Agg")
    import labkit  # noqa: F401  (registers the font)

    font_manager.FontManager._findfont_cached.cache_clear()  # an earlier test may have looked bold up already
    fig = Figure(figsize=(4, 2))
    ax = fig.subplots()
    ax.text(0.2, 0.5, "4 train", weight="bold")
    ax.set_title("唐诗 · 字频", fontweight="bold")
    with caplog.at_level(logging.WARNING, logger="matplotlib.font_manager"):
        fig.savefig(io.BytesIO(), format="png")
    assert not [r.getMessage() for r in caplog.records if "font weight" in r.getMessage()]


def test_every_character_of_the_shipped_chinese_texts_is_in_the_font():
    from fontTools.ttLib import TTFont

    from labkit.data import DATA_DIR, cjk_font_path

    covered = set(TTFont(cjk_font_path()).getBestCmap())
    texts = ["tang_poems/poems.txt", "chinese_reviews/train.tsv", "instructions/train.jsonl"]
    private_use = range(0xE000, 0xF900)  # a few reviews hold old phone emoji coded there: no font has them
    used = {ord(c) for rel in texts for c in (DATA_DIR / rel).read_text(encoding="utf-8")
            if ord(c) >= 0x2E80 and ord(c) not in private_use}
    assert not used - covered, f"{len(used - covered)} characters missing, e.g. {[chr(c) for c in list(used - covered)[:5]]}"
