"""Chapter 07d (preferences and rewards: DPO and GRPO): its notebooks are wired to its checks, the
checks' references agree with the formulas, the notebook keeps its result assertions, and the
widget's slice of the notebook runs on its own.

tests/test_notebook_wiring.py checks what every chapter shares (seeding, stubs, solutions, tags).
"""
from __future__ import annotations

from pathlib import Path

import torch

from labkit.align import bandit_optimum, group_advantages
from labkit.course.checks import ch07d
from labkit.course.exercises import chapter_exercises
from notebook_cells import code_cells as _code_cells, run_widget_slice

REPO = Path(__file__).resolve().parent.parent
NAME = "07d_preference_and_rl"
CHAPTER = REPO / "chapters" / f"{NAME}.ipynb"
IDS = [ex.id for ex in chapter_exercises("07d")]


def test_the_notebook_has_exercises_07_9_to_07_11():
    assert IDS == ["07.9", "07.10", "07.11"]


def test_no_compared_cell_prints_a_time():
    """nbval runs with --nbval-lax: only cells marked NBVAL_CHECK_OUTPUT are compared, and a time differs run to run."""
    for source in _code_cells(CHAPTER):
        if "NBVAL_CHECK_OUTPUT" in source:
            assert "perf_counter" not in source, source[:120]


def test_the_widget_slice_runs_on_its_own():
    """What the browser test runs: the cells tagged browser-setup, then the widget's drawing at the ends."""
    namespace = run_widget_slice(CHAPTER, with_widget=False)
    for beta in (0.01, 10.0):                                  # the slider's ends
        namespace["show_leash"](beta)
    namespace["plt"].close("all")


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert 'assert gap < 0.03' in source
    assert 'assert best_share[-1] > 0.95' in source
    assert 'assert min(grpo_after) > before["all"] + 0.1' in source
    assert 'assert min(acc for _, acc in dpo_seeds) > before["all"] + 0.05' in source
    assert 'hacking[0.0]["proxy"] > start_proxy + 0.2 and hacking[0.0]["true"] < start_true - 0.2' in source
    assert 'hacking[beta]["kl"][-1] < hacking[0.0]["kl"][-1] / 5 and abs(hacking[beta]["true"] - start_true) < 0.12' in source
    assert 'assert accuracy(clean_model) >= max(dpo_mean, mean) - 0.02' in source
    # section 9: SmolLM2's shipped adapters, scored again here, and the claims the prose makes of them
    assert 'abs(here[run["run"]] - run["held_out_exact_match"]) <= 2 / len(refs)' in source
    assert 'assert dpo_drift[0] < 0 < anchored_drift[0]' in source
    assert 'assert here["untouched"] <= here["dpo"] < here["dpo+nll"] < here["sft"]' in source
    assert 'assert empty > len(refs) / 2' in source


def test_section_9_asks_the_questions_the_tool_scored():
    """The notebook, the tool and chapter 07e pick the held-out questions with one function."""
    import json
    import sys

    from labkit.data import exact_match_questions

    sys.path.insert(0, str(REPO / "tools"))
    try:
        from dpo_smollm2 import HELD_OUT_PER_TASK, questions
    finally:
        sys.path.pop(0)
    meta = json.loads((REPO / "checkpoints" / "smollm2_dpo" / "meta.json").read_text(encoding="utf-8"))
    assert meta["held_out_per_task"] == HELD_OUT_PER_TASK and meta["command"].startswith("python tools/dpo_smollm2.py")
    cell = next(c for c in _code_cells(CHAPTER) if c.startswith('DPO_DIR = CHECKPOINTS_DIR / "smollm2_dpo"'))
    assert 'held_out = exact_match_questions("test", meta["held_out_per_task"])' in cell
    assert questions(meta["seed"], meta["per_task"])[0] == exact_match_questions("test", meta["held_out_per_task"])
    e07 = REPO / "chapters" / "07e_real_llm_finetuning.ipynb"
    assert any('questions = exact_match_questions("test", PER_TASK)' in c for c in _code_cells(e07))


def test_the_exercise_bandit_is_the_notebooks():
    source = "\n".join(_code_cells(CHAPTER))
    assert "REFERENCE = torch.tensor([0.30, 0.40, 0.10, 0.12, 0.08])" in source
    assert "PROXY = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.5])" in source
    assert "REWARD = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])" in source
    assert torch.equal(ch07d.REFERENCE, torch.tensor([0.30, 0.40, 0.10, 0.12, 0.08]))


# --------------------------------------------------------------------------- the checks' references


def test_leave_one_out_reference_is_a_loop_over_the_others():
    rewards = torch.rand(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = torch.stack([torch.stack([rewards[n, g] - torch.cat([rewards[n, :g], rewards[n, g + 1:]]).mean()
                                     for g in range(5)]) for n in range(3)])
    assert torch.allclose(ch07d._reference_leave_one_out(rewards), want)
    centred = rewards - rewards.mean(dim=1, keepdim=True)               # and it is the centred reward × G/(G−1)
    assert torch.allclose(ch07d._reference_leave_one_out(rewards), centred * 5 / 4)
    assert not torch.allclose(ch07d._reference_leave_one_out(rewards), group_advantages(rewards).double())


def test_dpo_reference_is_the_papers_formula():
    pc, pr, rc, rr = ch07d._log_probs(0, 6)
    beta = 0.3
    want = -torch.log(torch.sigmoid(beta * (pc - rc) - beta * (pr - rr))).mean()
    assert torch.isclose(ch07d._reference_dpo_loss(pc, pr, rc, rr, beta), want)


def test_the_leash_measurement_falls_below_beta_one():
    assert ch07d.true_reward_of_optimum(0.1) < ch07d.true_reward_of_optimum(1.0)
    by_hand = ch07d.REFERENCE * torch.exp(ch07d.PROXY / 0.1)
    assert abs(ch07d.true_reward_of_optimum(0.1) - float(by_hand[0] / by_hand.sum())) < 1e-6
    assert torch.allclose(bandit_optimum(ch07d.REFERENCE, ch07d.PROXY, 0.1), by_hand / by_hand.sum())
