"""Chapter 07c (instruction tuning): its notebooks are wired to its checks, its widget is the one the
browser test moves, its result assertions keep their thresholds, and the checks accept other correct
styles of answer while rejecting the classic mistakes.

The notebooks themselves are executed by nbval (`make nbval`); these tests only read them.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from labkit.course.checks import ch07c
from labkit.course.exercises import chapter_exercises, check
from labkit.gpt import GPT
from labkit.instruct import IGNORE_INDEX, InstructionCollator, length_grouped_batches
from labkit.tokenizers import BPETokenizer
from notebook_cells import cells as _cells, code_cells as _code_cells

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.py

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "chapters" / "07c_instruction_tuning.ipynb"
SOLUTIONS = REPO / "solutions" / "07c_instruction_tuning_solutions.ipynb"
IDS = [ex.id for ex in chapter_exercises("07c")]


# --------------------------------------------------------------------------- wiring


def test_notebook_has_exercises_07_7_07_8_and_07_16_and_only_those():
    assert IDS == ["07.7", "07.8", "07.16"]


def test_the_chapter_module_registers_07c():
    assert {"07.7", "07.8", "07.16"} <= {ex.id for ex in chapter_exercises("07")}


def test_07_16_chapter_and_solution_measure_what_the_check_recomputes():
    """The measurement cell cuts random and grouped batches as `ch07c.padding_shares` does, from the
    chapter's own `length_grouped_batches` and `padding_share` (section 4.1), which the check copies."""
    for path in (CHAPTER, SOLUTIONS):
        cell = next(c for c in _code_cells(path) if c.startswith("committed = prediction"))
        assert "for batch_size in (16, 64):" in cell
        assert "torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1))" in cell
        assert "length_grouped_batches(lengths, batch_size, torch.Generator().manual_seed(1))" in cell
    section = next(c for c in _code_cells(CHAPTER) if "def length_grouped_batches(" in c)
    namespace: dict = {"torch": torch}
    exec("def length_grouped_batches(" + section.split("def length_grouped_batches(")[1].split("def padding_share")[0],
         namespace)
    lengths = torch.randint(5, 200, (1000,), generator=torch.Generator().manual_seed(3)).tolist()
    for seed, batch_size in ((1, 16), (1, 64), (7, 5)):
        assert namespace["length_grouped_batches"](lengths, batch_size, torch.Generator().manual_seed(seed)) == \
            length_grouped_batches(lengths, batch_size, torch.Generator().manual_seed(seed))


def test_first_code_cell_seeds_and_offers_a_full_run():
    first = _code_cells(CHAPTER)[0]
    assert "labkit.seed_everything(0)" in first
    assert re.search(r"^FULL_RUN = False\b", first, re.MULTILINE)
    assert "labkit.seed_everything(0)" in _code_cells(SOLUTIONS)[0]


def test_no_development_leftovers():
    for path in (CHAPTER, SOLUTIONS):
        source = "\n".join(_code_cells(path))
        assert "DEVELOPMENT ONLY" not in source, f"{path.name} still points at a development setting"
        assert "run.pt" not in source, f"{path.name} loads a training run instead of the shipped checkpoint"
        assert 'labkit.load_pretrained("base_bpe")' in source


def test_chapter_ends_with_its_summary_and_solutions_assert_every_check_passed():
    assert _code_cells(CHAPTER)[-1].strip() == 'summary("07c")'
    last = _code_cells(SOLUTIONS)[-1]
    assert 'summary("07c")' in last and "all_passed" in last and "assert" in last


def test_no_placeholder_is_left_in_the_prose():
    for path in (CHAPTER, SOLUTIONS):
        for cell in _cells(path):  # the builder fills these in with measured numbers and prose
            source = "".join(cell["source"])
            assert not re.search(r"\b[A-Z0-9]+_(PROSE|MIN|POINTS)\b", source), f"{path.name}: {source[:80]}"


def test_the_masked_pair_is_built_by_hand_before_labkit_is_used():
    cells = _code_cells(CHAPTER)
    by_hand = next(i for i, c in enumerate(cells) if "y[: len(prompt_ids) - 1] = IGNORE_INDEX" in c)
    with_labkit = next(i for i, c in enumerate(cells) if "collate_instructions([example]" in c)
    assert by_hand < with_labkit
    assert "torch.equal(x_batch[0], x) and torch.equal(y_batch[0], y)" in cells[with_labkit]
    prompt = next(c for c in cells if "def prompt_by_hand" in c)
    assert "assert prompt_by_hand(example) == format_prompt(example)" in prompt


def test_training_batches_are_grouped_by_length_and_padded_per_batch():
    source = "\n".join(_code_cells(CHAPTER))
    assert "def length_grouped_batches(" in source
    loop = next(c for c in _code_cells(CHAPTER) if "for batch in length_grouped_batches(" in c)
    assert "collator([train_set[i] for i in batch])" in loop  # padded to this batch's longest row only
    assert "instruction_loss(" in loop and "labkit.ProgressBar()" in loop


def test_result_assertions_keep_their_thresholds():
    source = "\n".join(_code_cells(CHAPTER))
    assert re.search(r'assert before\["all"\] < 0\.05\b', source)
    assert re.search(r'assert after\["all"\] >= 0\.50\b', source)
    assert re.search(r'assert after\["all"\] - before\["all"\] >= 0\.45\b', source)
    assert re.search(r"assert after\[pair\] > before\[pair\]", source)
    assert re.search(r"assert in_capitals >= 0\.8\b", source)


def test_exactly_one_browser_test_cell_and_its_first_control_is_a_slider_that_redraws():
    tagged = [c for c in _cells(CHAPTER) if "browser-test" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert source.splitlines()[0] == "# NBVAL_IGNORE_OUTPUT"
    first_control = source.index("widgets.", source.index("interact("))
    assert re.match(r"widgets\.(Float|Int|Selection)Slider\(", source[first_control:]), "the first control must be a slider"
    # The browser test moves that slider one step right: from 1.0 to 1.1 the probabilities change.
    assert "widgets.FloatSlider(1.0, min=0.1, max=2.0, step=0.1" in source
    drawn = next(c for c in _code_cells(CHAPTER) if "def show_answers(" in c)
    assert "plt.show()" in drawn and "temperature" in drawn.splitlines()[0]


# --------------------------------------------------------------------------- 07.7: other styles, classic mistakes


def test_training_pair_reference_matches_labkits_collator_on_a_real_tokenizer():
    text = "### Instruction:\nName the speaker.\n\n### Response:\nDUKE\n" * 20
    tokenizer = BPETokenizer.train(text, vocab_size=280)
    end = tokenizer.special_tokens["<|endoftext|>"]
    record = {"instruction": "Name the speaker.", "input": "DUKE:\nWhat, ho!", "output": "DUKE"}
    from labkit.instruct import format_prompt

    x, y = ch07c._reference_training_pair(tokenizer.encode(format_prompt(record)), tokenizer.encode("DUKE"), end)
    row_x, row_y = InstructionCollator(tokenizer, block_size=64).row(record)
    assert x.tolist() == row_x and y.tolist() == row_y


def test_training_pair_check_accepts_lists_and_a_mask_built_with_torch_where():
    def as_lists(prompt_ids, response_ids, end_id):
        ids = [*prompt_ids, *response_ids, end_id]
        n = len(prompt_ids) - 1
        return ids[:-1], [IGNORE_INDEX] * n + ids[1 + n:]

    def with_where(prompt_ids, response_ids, end_id):
        ids = torch.tensor(list(prompt_ids) + list(response_ids) + [end_id])
        positions = torch.arange(len(ids) - 1)
        return ids[:-1], torch.where(positions < len(prompt_ids) - 1, IGNORE_INDEX, ids[1:])

    assert check("07.7", as_lists, show=False).passed
    assert check("07.7", with_where, show=False).passed


def test_training_pair_hints_name_the_mistake():
    assert "one too many" in check("07.7", ch07c._mask_one_too_many, show=False).message
    assert "end_id" in check("07.7", ch07c._no_end_marker, show=False).message
    assert "-100, the value cross-entropy skips" in check("07.7", ch07c._mask_with_zero, show=False).message
    assert "swapped" in check("07.7", ch07c._swapped, show=False).message


# --------------------------------------------------------------------------- 07.8: other styles, classic mistakes


def test_scripted_gpt_is_a_gpt_whose_greedy_answers_follow_its_table():
    model = ch07c.ScriptedGPT()
    assert isinstance(model, GPT)
    logits = model(torch.tensor([[4, 1]]))
    assert logits.shape == (1, 2, 16) and logits[0, -1].argmax().item() == ch07c.NEXT[1]
    for (prompt, _max_new, want), got in zip(ch07c._ANSWER_CASES, ch07c._answers(ch07c._reference_answer_ids)):
        assert got == want, prompt


def test_answer_ids_check_accepts_generate_with_a_stop_token_and_a_cropping_loop():
    def with_generate(model, prompt_ids, end_id, max_new_tokens):
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens, temperature=0, stop_tokens={end_id})
        new = out[0, len(prompt_ids):]
        stops = (new == end_id).nonzero()
        return new[: stops[0, 0]] if len(stops) else new

    def cropping(model, prompt_ids, end_id, max_new_tokens):
        ids = list(prompt_ids)
        while len(ids) - len(prompt_ids) < max_new_tokens:
            logits = model(torch.tensor([ids[-model.config.block_size:]]))
            token = logits[:, -1, :].argmax(dim=-1).item()
            if token == end_id:
                break
            ids.append(token)
        return ids[len(prompt_ids):]

    assert check("07.8", with_generate, show=False).passed
    assert check("07.8", cropping, show=False).passed


def test_answer_ids_check_stops_a_loop_that_never_ends():
    def forever(model, prompt_ids, end_id, max_new_tokens):
        ids = list(prompt_ids)
        while True:  # forgot max_new_tokens and the end marker
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))

    result = check("07.8", forever, show=False)
    assert not result.passed and "called the model more than" in result.message


def test_answer_ids_hints_name_the_mistake():
    assert "ending with the end marker" in check("07.8", ch07c._with_marker, show=False).message
    assert "starts with the prompt" in check("07.8", ch07c._with_prompt, show=False).message
    assert "goes on after the end marker" in check("07.8", ch07c._never_stops, show=False).message
    assert "logits[0, -1]" in check("07.8", ch07c._first_position, show=False).message
    assert "samples" in check("07.8", ch07c._sampled, show=False).message


def test_scripted_gpt_leaves_the_random_stream_alone_when_built():
    torch.manual_seed(3)
    expected = torch.randn(2)
    torch.manual_seed(3)
    ch07c.ScriptedGPT()
    assert torch.equal(torch.randn(2), expected)


# --------------------------------------------------------------------------- all checks


