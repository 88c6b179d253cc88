"""Tests for labkit.metrics, labkit.report, and labkit.evaluation's `predict` and per-batch metrics:
every expected number below is worked out by hand (or quoted from scikit-learn's documentation)."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labkit.evaluation import METRICS, get_metric, predict
from labkit.metrics import accuracy, confusion_matrix, precision_recall_f1
from labkit.report import Report, classification_report


def one_hot_logits(labels, num_classes):
    """Logits (N, C) whose argmax is `labels`."""
    return torch.nn.functional.one_hot(torch.as_tensor(labels), num_classes).float() * 5 - 1


# --------------------------------------------------------------------------- accuracy
def test_accuracy_perfect_all_wrong_and_partial():
    t = torch.tensor([0, 1, 2, 2])
    assert accuracy(t, t) == 1.0
    assert accuracy(torch.tensor([1, 2, 0, 0]), t) == 0.0
    assert accuracy(torch.tensor([0, 1, 0, 0]), t) == 0.5


def test_accuracy_takes_logits_like_labels():
    t = torch.tensor([0, 1, 2, 2, 1])
    preds = torch.tensor([0, 2, 2, 1, 1])
    assert accuracy(one_hot_logits(preds, 3), t) == accuracy(preds, t) == pytest.approx(3 / 5)


def test_accuracy_takes_lists():
    assert accuracy([1, 1, 0], [1, 0, 0]) == pytest.approx(2 / 3)


def test_accuracy_rejects_mismatched_lengths_and_empty_input():
    with pytest.raises(ValueError, match="same length"):
        accuracy(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="0 samples"):
        accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(N,\) or logits of shape \(N, C\)"):
        accuracy(torch.zeros(2, 3, 4), torch.tensor([0, 1]))


def test_accuracy_rejects_fractional_labels():
    with pytest.raises(ValueError, match="whole class numbers"):
        accuracy(torch.tensor([0.2, 0.9]), torch.tensor([0, 1]))


# --------------------------------------------------------------------------- confusion matrix
def test_confusion_matrix_by_hand():
    t = torch.tensor([0, 0, 0, 1, 1, 2])
    p = torch.tensor([0, 1, 0, 1, 2, 0])
    cm = confusion_matrix(t, p, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]


def test_confusion_matrix_rows_are_true_classes():
    # All three samples are truly class 0, predicted as 2: they land in row 0, column 2.
    cm = confusion_matrix(torch.tensor([0, 0, 0]), torch.tensor([2, 2, 2]), 3)
    assert cm[0, 2] == 3 and cm.sum() == 3


def test_confusion_matrix_matches_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 7, (500,), generator=g)
    p = torch.randint(0, 7, (500,), generator=g)
    expected = torch.zeros(7, 7, dtype=torch.int64)
    for true, pred in zip(t.tolist(), p.tolist()):
        expected[true, pred] += 1
    cm = confusion_matrix(t, p, 7)
    assert torch.equal(cm, expected)
    assert torch.equal(cm.sum(dim=1), torch.bincount(t, minlength=7))
    assert torch.equal(confusion_matrix(t, one_hot_logits(p, 7), 7), expected)


def test_confusion_matrix_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"targets contain the label 3, but num_classes=3"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match=r"preds contain the label -1"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, -1]), 3)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)


# --------------------------------------------------------------------------- precision / recall / F1
def test_precision_recall_f1_scikit_learn_documentation_example():
    # sklearn.metrics.precision_recall_fscore_support's docstring example
    # (cat=0, dog=1, pig=2): macro (0.22, 0.33, 0.26), micro (0.33, 0.33, 0.33),
    # weighted (0.22, 0.33, 0.26); f1_score(average=None) is [0.8, 0, 0].
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    p = torch.tensor([0, 2, 1, 0, 0, 1])
    macro = precision_recall_f1(t, p, 3, "macro")
    assert macro == pytest.approx({"precision": 2 / 9, "recall": 1 / 3, "f1": 4 / 15})
    assert precision_recall_f1(t, p, 3, "micro") == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3})
    assert precision_recall_f1(t, p, 3, "weighted") == pytest.approx({"precision": 2 / 9, "recall": 1 / 3, "f1": 4 / 15})
    per_class = precision_recall_f1(t, p, 3, average=None)
    assert per_class["f1"].tolist() == pytest.approx([0.8, 0.0, 0.0])
    assert per_class["precision"].tolist() == pytest.approx([2 / 3, 0.0, 0.0])
    assert per_class["recall"].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert per_class["support"].tolist() == [2, 2, 2]


def test_perfect_and_all_wrong_predictions():
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    for average in ("macro", "micro", "weighted"):
        assert precision_recall_f1(t, t, 3, average) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
        assert precision_recall_f1(t, (t + 1) % 3, 3, average) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_imbalanced_classes_by_hand():
    # 8 samples of class 0, 2 of class 1. The model predicts 0 for everything but one
    # class-0 sample (called 1) and one class-1 sample (found).
    t = torch.tensor([0] * 8 + [1] * 2)
    p = torch.tensor([0] * 7 + [1] + [1, 0])
    # class 0: tp=7, fp=1, fn=1 -> P = 7/8, R = 7/8, F1 = 7/8
    # class 1: tp=1, fp=1, fn=1 -> P = 1/2, R = 1/2, F1 = 1/2
    per_class = precision_recall_f1(t, p, 2, average=None)
    assert per_class["precision"].tolist() == pytest.approx([7 / 8, 1 / 2])
    assert per_class["recall"].tolist() == pytest.approx([7 / 8, 1 / 2])
    assert per_class["f1"].tolist() == pytest.approx([7 / 8, 1 / 2])
    macro = precision_recall_f1(t, p, 2, "macro")
    assert macro["f1"] == pytest.approx((7 / 8 + 1 / 2) / 2)  # 0.6875: each class counts the same
    weighted = precision_recall_f1(t, p, 2, "weighted")
    assert weighted["f1"] == pytest.approx((8 * 7 / 8 + 2 * 1 / 2) / 10)  # 0.8: the big class dominates
    micro = precision_recall_f1(t, p, 2, "micro")
    assert micro == pytest.approx({"precision": 0.8, "recall": 0.8, "f1": 0.8})
    assert micro["f1"] == pytest.approx(accuracy(p, t))


def test_class_never_predicted_scores_zero_not_nan():
    # Class 2 has two samples but is never predicted: precision is 0/0, defined as 0.
    t = torch.tensor([0, 0, 1, 1, 2, 2])
    p = torch.tensor([0, 0, 1, 1, 1, 1])
    per_class = precision_recall_f1(t, p, 3, average=None)
    # class 0: P=1, R=1; class 1: tp=2, fp=2 -> P=1/2, R=1, F1=2/3; class 2: P=0 (0/0), R=0, F1=0
    assert per_class["precision"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert per_class["recall"].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert per_class["f1"].tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    assert not any(torch.isnan(v).any() for k, v in per_class.items() if k != "support")
    macro = precision_recall_f1(t, p, 3, "macro")
    assert macro == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 5 / 9})


def test_class_missing_from_targets_and_preds_still_counts_in_macro():
    # num_classes=4 but class 3 never appears: it scores 0 and the macro mean is over 4 classes
    # (scikit-learn with labels=range(4)); the weighted mean gives it weight 0.
    t = torch.tensor([0, 1, 2])
    per_class = precision_recall_f1(t, t, 4, average=None)
    assert per_class["f1"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert per_class["support"].tolist() == [1, 1, 1, 0]
    assert precision_recall_f1(t, t, 4, "macro")["f1"] == pytest.approx(0.75)
    assert precision_recall_f1(t, t, 4, "weighted")["f1"] == pytest.approx(1.0)


def test_precision_recall_f1_with_logits_and_bad_average():
    t = torch.tensor([0, 1, 1])
    p = torch.tensor([0, 1, 0])
    assert precision_recall_f1(t, one_hot_logits(p, 2), 2) == precision_recall_f1(t, p, 2)
    with pytest.raises(ValueError, match="average must be one of"):
        precision_recall_f1(t, p, 2, average="mean")


def test_averaged_values_are_python_floats():
    t = torch.tensor([0, 1, 1])
    result = precision_recall_f1(t, t, 2, "macro")
    assert set(result) == {"precision", "recall", "f1"}
    assert all(type(v) is float for v in result.values())


# --------------------------------------------------------------------------- classification report
NAMES = ["cat", "dog", "pig"]
T = torch.tensor([0, 1, 2, 0, 1, 2])
P = torch.tensor([0, 2, 1, 0, 0, 1])


def test_report_numbers_match_precision_recall_f1():
    report = classification_report(T, P, NAMES)
    assert isinstance(report, Report)
    d = report.as_dict()
    assert list(d) == NAMES + ["accuracy", "macro avg", "weighted avg"]
    assert d["cat"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert d["pig"]["precision"] == 0.0
    assert d["accuracy"] == pytest.approx(1 / 3)
    macro = precision_recall_f1(T, P, 3, "macro")
    assert d["macro avg"] == pytest.approx({**macro, "support": 6})
    weighted = precision_recall_f1(T, P, 3, "weighted")
    assert d["weighted avg"] == pytest.approx({**weighted, "support": 6})


def test_report_text_is_a_fixed_width_table():
    text = str(classification_report(T, P, NAMES))
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    rows = {line.split()[0]: line for line in lines if line.strip()}
    assert rows["cat"].split() == ["cat", "0.67", "1.00", "0.80", "2"]
    assert rows["accuracy"].split() == ["accuracy", "0.33", "6"]
    assert "macro avg" in text and "weighted avg" in text
    # Every row ends at the same column (numbers are right-aligned).
    assert len({len(line) for line in lines if line.strip()}) == 1
    # The accuracy sits in the f1-score column.
    assert rows["accuracy"].rindex("0.33") == rows["cat"].rindex("0.80")


def test_report_aligns_chinese_class_names():
    text = str(classification_report(T, P, ["猫", "狗", "猪猪"]))
    lines = [line for line in text.splitlines() if line.strip()]
    # Chinese characters take two columns: the numbers still line up.
    widths = {sum(2 if ord(ch) > 0x2E80 else 1 for ch in line) for line in lines}
    assert len(widths) == 1


def test_report_html_and_digits():
    report = classification_report(T, P, ["<cat>", "dog", "pig"], digits=3)
    html = report._repr_html_()
    assert html.startswith("<table") and html.endswith("</table>")
    assert "&lt;cat&gt;" in html and "<cat>" not in html
    assert html.count("<tr") == 1 + 3 + 3  # header, classes, accuracy + two averages
    assert "0.667" in str(report) and "0.667" in html


def test_report_without_names_and_with_wrong_names():
    report = classification_report(T, P)
    assert report.class_names == ["0", "1", "2"]
    with pytest.raises(ValueError, match="num_classes=2"):
        classification_report(T, P, ["cat", "dog"])


# --------------------------------------------------------------------------- predict
class Recorder(nn.Module):
    """A linear model with dropout (so eval mode matters) that records the modes it ran in."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.dropout = nn.Dropout(0.5)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.dropout(self.linear(x))


def make_data(n=10):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_predict_shapes_order_and_eval_mode():
    torch.manual_seed(0)
    model, data = Recorder(), make_data(10)
    model.train()
    logits, targets = predict(model, data, batch_size=4, device="cpu")
    assert logits.shape == (10, 3) and targets.shape == (10,)
    assert logits.device.type == "cpu" and not logits.requires_grad
    assert model.modes == [False, False, False]  # 3 batches, all in eval mode
    assert model.training and model.dropout.training  # train mode restored
    x, y = data.tensors
    model.eval()
    assert torch.allclose(logits, model(x))  # same order, no dropout
    assert torch.equal(targets, y)


def test_predict_keeps_eval_mode_and_mixed_submodule_modes():
    model, data = Recorder(), make_data(5)
    model.eval()
    predict(model, data, device="cpu")
    assert not model.training
    model.train()
    model.dropout.eval()  # e.g. a layer deliberately frozen in eval mode
    predict(model, data, device="cpu")
    assert model.training and not model.dropout.training


def test_predict_restores_mode_after_an_error():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        predict(model, make_data(3), device="cpu")
    assert model.training


def test_predict_default_device_and_dataloader():
    model, data = Recorder(), make_data(6)
    logits, targets = predict(model, DataLoader(data, batch_size=2))
    assert logits.shape == (6, 3) and targets.tolist() == data.tensors[1].tolist()
    assert next(model.parameters()).device.type == "cpu"  # back where it was


def test_predict_rejects_bad_input():
    model = Recorder()
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        predict(model, make_data(3), batch_size=0, device="cpu")
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        predict(model, TensorDataset(torch.randn(3, 4)), device="cpu")
    with pytest.raises(ValueError, match="empty"):
        predict(model, TensorDataset(torch.randn(0, 4), torch.zeros(0)), device="cpu")


# --------------------------------------------------------------------------- metric registry
def test_batch_accuracy_returns_a_0d_tensor():
    fn = METRICS["accuracy"]
    logits = one_hot_logits([0, 1, 2, 2], 3).requires_grad_()
    value = fn(logits, torch.tensor([0, 1, 2, 0]))
    assert isinstance(value, torch.Tensor) and value.ndim == 0
    assert value.item() == pytest.approx(0.75)
    assert value.device == logits.device


def test_batch_accuracy_on_sequences():
    logits = one_hot_logits([[0, 1], [2, 2]], 3)  # (B=2, T=2, C=3)
    assert METRICS["accuracy"](logits, torch.tensor([[0, 1], [2, 0]])).item() == pytest.approx(0.75)


def test_batch_top5_accuracy():
    logits = torch.arange(8.0).repeat(2, 1)  # top 5 classes are 3..7
    value = METRICS["top5_accuracy"](logits, torch.tensor([7, 2]))
    assert value.ndim == 0 and value.item() == pytest.approx(0.5)
    assert METRICS["top5_accuracy"](torch.randn(4, 3), torch.tensor([0, 1, 2, 0])).item() == 1.0


def test_get_metric():
    assert get_metric("accuracy") is METRICS["accuracy"]
    assert get_metric(" Accuracy ") is METRICS["accuracy"]

    def mine(logits, targets):
        return logits.sum()

    assert get_metric(mine) is mine
    with pytest.raises(ValueError) as info:
        get_metric("acuracy")
    assert "'acuracy'" in str(info.value) and "'accuracy'" in str(info.value) and "'top5_accuracy'" in str(info.value)
    with pytest.raises(TypeError, match="got int"):
        get_metric(3)


def test_every_registered_metric_is_a_0d_tensor_between_0_and_1():
    logits, targets = torch.randn(16, 10), torch.randint(0, 10, (16,))
    for name, fn in METRICS.items():
        value = fn(logits, targets)
        assert isinstance(value, torch.Tensor) and value.ndim == 0, name
        assert 0.0 <= value.item() <= 1.0 and not math.isnan(value.item()), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_predict_and_metrics_on_a_gpu():
    model, data = Recorder(), make_data(8)
    logits, targets = predict(model, data, batch_size=3, device="cuda")
    assert logits.device.type == "cpu" and logits.shape == (8, 3)
    assert next(model.parameters()).device.type == "cpu"  # moved back after predicting
    gpu_logits, gpu_targets = logits.cuda(), targets.cuda()
    value = METRICS["accuracy"](gpu_logits, gpu_targets)
    assert value.device.type == "cuda" and value.ndim == 0
    assert torch.equal(confusion_matrix(gpu_targets, gpu_logits, 3).cpu(), confusion_matrix(targets, logits, 3))
    assert precision_recall_f1(gpu_targets, gpu_logits, 3) == pytest.approx(precision_recall_f1(targets, logits, 3))
