"""labkit.align's DPO and GRPO equal TRL's (Hugging Face's trainers) on the same model and batch.

Chapter 07d builds DPO's and GRPO's losses by hand and `labkit.align` keeps them; TRL's
`DPOTrainer` and `GRPOTrainer` are what a learner would use outside the course. Here both sides
see one tiny random GPT-2 (Hugging Face's on TRL's side, the same weights in labkit's GPT through
`GPT.from_gpt2` on ours) and one batch, and must agree on the loss and on its gradient. TRL's
batch is made by TRL itself (its tokenisation, the end-of-sequence token it appends, its padding and
completion mask), so the test also proves that `sequence_logprobs` scores the tokens TRL scores.
Nothing is downloaded: the tokenizer is a word list built here, the models are random.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl", reason="TRL is a test dependency (pip install -e '.[test]')")

from datasets import Dataset  # noqa: E402  (TRL's trainers take a datasets.Dataset)
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast  # noqa: E402
from transformers.pytorch_utils import Conv1D  # noqa: E402
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer  # noqa: E402
from trl.trainer.utils import nanstd  # noqa: E402

from labkit.align import dpo_loss, group_advantages, grpo_loss, sequence_logprobs, token_logprobs  # noqa: E402
from labkit.gpt import GPT  # noqa: E402

pytestmark = pytest.mark.slow

WORDS = "<pad> <eos> <unk> what is two plus three five six red blue sky the colour of".split()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a test that tried to download would fail, not hang
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_gpt2(seed: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=1,
                        eos_token_id=1, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def assert_same_gradients(hf_model: GPT2LMHeadModel, ours: GPT) -> None:
    """Every parameter's gradient equal; Hugging Face's Conv1D weights are the transpose of our nn.Linear's."""
    theirs = dict(hf_model.named_parameters())
    compared = 0
    for name, param in ours.named_parameters():
        if name == "lm_head.weight":  # tied to transformer.wte.weight on both sides
            continue
        grad = theirs[name].grad
        if isinstance(hf_model.get_submodule(name.rpartition(".")[0]), Conv1D):
            grad = grad.T
        torch.testing.assert_close(param.grad, grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
        compared += 1
    assert compared == len(theirs)


def test_dpo_loss_and_gradient_equal_trls_dpo_trainer(tmp_path):
    policy, reference = tiny_gpt2(seed=0), tiny_gpt2(seed=1)
    data = Dataset.from_dict({
        "prompt": ["what is two plus three", "the colour of the sky", "what is two plus"],
        "chosen": [" five", " blue", " two five"],
        "rejected": [" six", " red red", " three"],   # lengths differ: TRL pads, and the mask must skip the padding
    })
    args = DPOConfig(output_dir=str(tmp_path), beta=0.3, per_device_train_batch_size=3, report_to="none",
                     use_cpu=True, bf16=False, max_length=None, save_strategy="no")  # TRL's default is bf16
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data,
                         processing_class=tiny_tokenizer())
    batch = next(iter(trainer.get_train_dataloader()))   # rows: the 3 chosen answers, then the 3 rejected
    ours, ours_reference = GPT.from_gpt2(trainer.model), GPT.from_gpt2(reference)
    assert batch["completion_mask"][:, -1].any() and not batch["attention_mask"].all()  # some padding, some not

    trainer.model.train()
    their_loss = trainer.compute_loss(trainer.model, batch)
    their_loss.backward()
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}

    ids, response = batch["input_ids"], batch["completion_mask"].bool()
    logps = sequence_logprobs(ours, ids, response)                                   # (6,)
    with torch.no_grad():
        reference_logps = sequence_logprobs(ours_reference, ids, response)
    chosen, rejected = logps.chunk(2)
    loss, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, *reference_logps.chunk(2), beta=0.3)
    loss.backward()

    torch.testing.assert_close(loss, their_loss.detach(), rtol=1e-5, atol=1e-6)
    assert abs(chosen_rewards.mean().item() - metrics["rewards/chosen"]) < 1e-5
    assert abs(rejected_rewards.mean().item() - metrics["rewards/rejected"]) < 1e-5
    assert abs(chosen.mean().item() - metrics["logps/chosen"]) < 1e-4
    assert abs(loss.item() - 0.6931) > 1e-3      # the reference differs from the policy: not the trivial log 2
    assert_same_gradients(trainer.model, ours)


def test_grpo_loss_and_gradient_equal_trls_grpo_trainer(tmp_path):
    tiny_gpt2(seed=0).save_pretrained(tmp_path / "tiny")   # GRPOTrainer loads its reference from the policy's folder
    tiny_tokenizer().save_pretrained(tmp_path / "tiny")
    # GRPO as DeepSeekMath wrote it (loss_type "grpo": each answer's tokens averaged, then the answers), in fp32 (TRL's
    # default is bf16), and without the KL correction TRL 1.16 adds by default (use_bias_correction_kl multiplies
    # the KL term by π/π_old, after DeepSeek-V3.2: the same loss on-policy, a different gradient).
    args = GRPOConfig(output_dir=str(tmp_path / "out"), loss_type="grpo", beta=0.04, epsilon=0.2, temperature=1.0,
                      use_bias_correction_kl=False, num_generations=2, per_device_train_batch_size=4,
                      max_completion_length=4, report_to="none", use_cpu=True, bf16=False, save_strategy="no")
    trainer = GRPOTrainer(model=str(tmp_path / "tiny"), reward_funcs=lambda completions, **_: [0.0] * len(completions),
                          args=args, train_dataset=Dataset.from_dict({"prompt": ["what is two plus three"] * 2}))
    ours = GPT.from_gpt2(trainer.model)

    # One batch as GRPO's generation step leaves it: 4 answers of up to 4 tokens (right-padded) to 5-token prompts,
    # the log-probabilities of the policy that sampled them and of the reference, and group-normalised advantages
    # (+, −, −, +). The sampling policy is set apart from the current one so that the ratio π/π_old leaves
    # [0.8, 1.2] where each case of the clipped objective shows: clipped above (row 0), clipped below (row 1),
    # outside the range on the side the min keeps unclipped (rows 2 and 3).
    g = torch.Generator().manual_seed(0)
    prompt_ids, completion_ids = torch.randint(3, len(WORDS), (4, 5), generator=g), torch.randint(3, len(WORDS), (4, 4), generator=g)
    completion_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    with torch.no_grad():
        sampled = token_logprobs(ours(ids), ids)[:, 4:]                              # (4, 4): the answers' tokens
    old_logp = sampled + torch.tensor([[-0.5, 0.1, 0.0, 0.3], [0.5, -0.1, 0.0, 0.0],
                                       [0.2, -0.4, 0.05, 0.0], [0.3, 0.0, 0.0, 0.0]])     # ratio = exp(−offset)
    reference_logp = sampled + 0.5 * torch.randn(sampled.shape, generator=g)
    advantages = group_advantages(torch.tensor([[1.0, 0.0], [0.3, 0.9]])).flatten()
    inputs = dict(prompt_ids=prompt_ids, prompt_mask=torch.ones_like(prompt_ids), completion_ids=completion_ids,
                  completion_mask=completion_mask, advantages=advantages, old_per_token_logps=old_logp,
                  ref_per_token_logps=reference_logp, num_items_in_batch=completion_mask.sum())

    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1   # what the training loop sets before each step
    their_loss = trainer._compute_loss(trainer.model, inputs)
    their_loss.backward()
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    assert metrics["clip_ratio/low_mean"] > 0 and metrics["clip_ratio/high_mean"] > 0   # both clips are exercised

    logp = token_logprobs(ours(ids), ids)[:, 4:]
    loss, _ = grpo_loss(logp, old_logp, reference_logp, advantages, completion_mask.bool(), clip=0.2, beta=0.04)
    loss.backward()

    torch.testing.assert_close(loss, their_loss.detach(), rtol=1e-5, atol=1e-6)
    assert_same_gradients(trainer.model, ours)


def test_group_advantages_equal_trls_normalisation():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.2, 0.9, 0.4, 0.4], [3.0, 3.0, 3.0, 3.0]])
    mean = rewards.mean(dim=1, keepdim=True)
    theirs = (rewards - mean) / (nanstd(rewards, dim=1)[:, None] + 1e-4)   # GRPOTrainer, scale_rewards="group"
    torch.testing.assert_close(group_advantages(rewards), theirs)
