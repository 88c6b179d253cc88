"""Exercises that make a learner think (issue 18, part 6): checks whose hints
cannot be solved by trial and error, and predict-measure-explain exercises whose checks verify the
measurement and the explanation, report the prediction without failing on it, and notice a
prediction changed after the measurement ran. (test_exercises proves every check accepts its
reference and rejects its stub and its `wrong` answers; these tests add what is particular.)"""
from __future__ import annotations

import itertools

import pytest
import torch

from labkit.course.checks import (
    ch00,
    ch01,
    ch02,
    ch03,
    ch04,
    ch05,
    ch06a,
    ch06b,
    ch06c,
    ch07a,
    ch07b,
    ch07c,
    ch08d,
    ch11a,
)
from labkit.course.exercises import check

# --------------------------------------------------------------------------- 02.5


@pytest.mark.parametrize("size", [1, 2, 4])
def test_02_5_hint_says_how_many_are_wrong_but_never_which(size):
    """Every set of candidates that is wrong: the hint holds the count and names none of them, so
    flipping one item at a time and reading the hint does not solve the exercise."""
    right = set(ch02.HYPERPARAMETERS)
    for flipped in itertools.combinations(ch02.CANDIDATES, size):
        answer = right ^ set(flipped)
        if not answer:
            continue
        message = check("02.5", answer, show=False).message
        assert message.startswith("✗ 02.5"), message
        assert f"{size} of the {len(ch02.CANDIDATES)}" in message, message
        hint = message.split(": ", 1)[1]
        named = [name for name in ch02.CANDIDATES if name in hint]
        assert not named, f"the hint names {named}: {message}"


def test_02_5_right_answer_passes():
    assert check("02.5", set(ch02.HYPERPARAMETERS), show=False).passed


# --------------------------------------------------------------------------- predict, measure, explain


PME = {
    "00.4": ch00.PLUS_ONE,
    "01.5": ch01.MOMENTUM_MEMORY,
    "02.6": ch02.SHAPE_TRAP,
    "03.6": ch03.LOSS_SCALE,
    "04.6": ch04.FINITE_STEP,
    "05.6": ch05.CONV_WORK,
    "06.14": ch06a.POSITIONS,
    "06.15": ch06b.INIT_SCALE,
    "06.16": ch06c.COLD_NUCLEUS,
    "06.17": ch06c.TOP_K_ONE,
    "07.15": ch07b.LORA_MEMORY,
    "07.16": ch07c.GROUPED_PADDING,
    "07.17": ch07a.FROZEN_DRIFT,
    "11.7": ch11a.SYSTEMATIC_NOISE,
    "08.15": ch08d.SHARE,
}


@pytest.mark.parametrize("exercise_id", sorted(PME))
def test_a_wrong_prediction_then_the_right_measurement_and_explanation_passes(exercise_id):
    """The prediction is reported, never graded: a wrong one that is then explained passes."""
    pme = PME[exercise_id]
    right = pme.answer()
    for option in pme.predictions:
        result = check(exercise_id, pme.answer(committed=option, prediction=option), show=False)
        assert result.passed, result.message
        said = "your prediction was right" if option == right["prediction"] else f"you predicted {option!r}"
        assert said in result.message, result.message


@pytest.mark.parametrize("exercise_id", sorted(PME))
def test_a_prediction_changed_after_measuring_fails_and_says_so(exercise_id):
    pme = PME[exercise_id]
    right = pme.answer()["prediction"]
    for before in pme.predictions:
        if before == right:
            continue
        message = check(exercise_id, pme.answer(committed=before, prediction=right), show=False).message
        assert message.startswith(f"✗ {exercise_id}") and "changed it" in message, message
    message = check(exercise_id, pme.answer(committed=...), show=False).message
    assert "before you had predicted" in message, message


@pytest.mark.parametrize("exercise_id", sorted(PME))
def test_each_wrong_explanation_fails_and_the_right_one_fits_the_measurement(exercise_id):
    pme = PME[exercise_id]
    measured = pme.measure()
    right = pme.explained(measured)
    assert right in pme.explanations
    for option in pme.explanations:
        result = check(exercise_id, pme.answer(explanation=option), show=False)
        assert result.passed == (option == right), result.message


@pytest.mark.parametrize("exercise_id", sorted(PME))
def test_a_made_up_measurement_fails(exercise_id):
    pme = PME[exercise_id]
    measured = pme.measure()
    for made_up in {measured * 0.5, measured * 1.5, measured * 10, measured + 1, measured - 0.5} - {measured}:
        result = check(exercise_id, pme.answer(measured=made_up), show=False)
        assert not result.passed and "measured" in result.message, result.message


@pytest.mark.parametrize("exercise_id", sorted(PME))
def test_the_stub_says_to_replace_the_dots(exercise_id):
    message = check(exercise_id, PME[exercise_id].stub(), show=False).message
    assert message.startswith(f"✗ {exercise_id} not done yet: replace each `...`"), message


def test_03_6_measures_adam_unchanged_and_sgd_moving_further():
    """The measurement the chapter's cell prints: Adam's distance does not depend on the loss's scale
    (to float rounding), SGD's grows (not 100-fold: with the loss × 100 it reaches the bottom)."""
    assert abs(ch03._adam_ratio() - 1) < 1e-4
    assert 10 < ch03._sgd_ratio() < 100


def test_04_6_float32_is_best_at_a_middle_step_and_float64_at_a_smaller_one():
    """Rounding against truncation: in float32 the best step lies strictly inside 1e-7 … 0.1, well above
    float64's (which keeps ~16 digits, so rounding bites only at smaller h)."""
    errors32, errors64 = ch04.central_difference_errors(), ch04.central_difference_errors(torch.float64)
    best32, best64 = min(errors32, key=errors32.get), min(errors64, key=errors64.get)
    assert 1e-7 < best32 < 0.1 and best64 < best32
    assert errors32[1e-7] > 100 * errors32[best32]


def test_00_4_float32_loses_the_one_at_2_to_the_24_but_not_below_or_in_float64():
    assert ch00.growth_when_adding_one() == 0.0
    assert ch00.growth_when_adding_one(ch00.BIG - 1) == 1.0
    assert ch00.growth_when_adding_one(dtype=torch.float64) == 1.0


def test_01_5_counts_8_12_and_16_bytes_per_parameter_for_sgd_momentum_and_adam():
    """Counted from the tensors a real optimizer holds after one step (Adam's step counters add a few bytes)."""
    plain = ch01.bytes_per_parameter(lambda params: torch.optim.SGD(params, lr=0.1))
    assert plain == 8 and ch01._momentum_bytes() == 12
    assert 16 <= ch01._adam_bytes() < 16.01


def test_02_6_the_loss_is_0_with_matching_shapes_and_the_mean_over_all_pairs_with_mismatched_ones():
    predictions, targets = ch02.perfect_predictions()
    assert ((predictions[:, 0] - targets) ** 2).mean().item() == 0
    pairs = ((predictions - targets.unsqueeze(0)) ** 2)
    assert pairs.shape == (100, 100) and ch02._broadcast_loss() == pytest.approx(pairs.mean().item())
    assert ch02._broadcast_loss() > 0.1  # for values spread over 0..1: the mean squared gap between two of them


def test_05_6_the_convolution_does_a_fifth_of_the_work_with_a_two_thousandth_of_the_parameters():
    """Counted by hooks: conv 26·26·32·9, dense 5408·128 and 128·10 multiply-adds for one image."""
    counts = ch05.multiply_adds(ch05._articles_cnn())
    assert counts == {"0": 26 * 26 * 32 * 9, "4": 5408 * 128, "6": 128 * 10}
    assert 0.15 < ch05._conv_share() < 0.3 and ch05._conv_parameter_share() < 0.001


def test_05_6_the_parameter_counts_the_chapter_states():
    """The chapter's question quotes the convolution's 320 of 693,962 parameters (about 0.05 %)."""
    model = ch05._articles_cnn()
    assert sum(p.numel() for p in model[0].parameters()) == 320
    assert sum(p.numel() for p in model.parameters()) == 693_962


def test_07_15_lora_saves_a_fixed_amount_so_its_share_grows_with_the_batch():
    """At batch 16 LoRA needs about half of full fine-tuning's memory (section 5's table); what it saves
    (gradients and Adam states of the frozen weights) does not grow with the batch, so the share does."""
    shares = [ch07b.memory_share(batch) for batch in (16, 64)]
    assert 0.4 < shares[0] < 0.7 and shares[1] > shares[0] + 0.1 and shares[1] < 1


def test_07_16_grouping_keeps_padding_low_at_any_batch_while_random_batches_pad_more_as_they_grow():
    small, large = ch07c.padding_shares(16), ch07c.padding_shares(64)
    assert large["random"] > small["random"] + 0.03                       # random: more padding at 64
    assert abs(large["grouped"] - small["grouped"]) < 0.015 < large["random"] - large["grouped"]
