"""labkit — the small lab kit of the course "From Zero to Large Models" (从零开始大模型开发与微调).

Each chapter builds a thing by hand first, then reuses the version kept here. The public face is
PUBLIC below, name → module (each module is imported the first time one of its names is used);
the TYPE_CHECKING block names the same things for editors and type checkers.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # What editors and type checkers see (`name as name`: re-exported, PEP 484). At run time
    # __getattr__ below imports each module the first time one of its names is used.
    from .align import (
        bandit_optimum as bandit_optimum,
        dpo_loss as dpo_loss,
        group_advantages as group_advantages,
        grpo_loss as grpo_loss,
        sequence_logprobs as sequence_logprobs,
    )
    from .callbacks import (
        BestCheckpoint as BestCheckpoint,
        Callback as Callback,
        EarlyStopping as EarlyStopping,
        GradientClipping as GradientClipping,
        LivePlot as LivePlot,
        LRScheduler as LRScheduler,
        ProgressBar as ProgressBar,
    )
    from .checkpoints import (
        load_checkpoint as load_checkpoint,
        load_pretrained as load_pretrained,
        save_checkpoint as save_checkpoint,
    )
    from .course.exercises import check as check, compare as compare, summary as summary
    from .data import (
        class_names as class_names,
        gpt2_ranks_path as gpt2_ranks_path,
        load_images as load_images,
        load_instructions as load_instructions,
        load_poem_info as load_poem_info,
        load_poems as load_poems,
        load_reviews as load_reviews,
        load_table as load_table,
        load_text as load_text,
        torchvision_dataset as torchvision_dataset,
    )
    from .device import get_device as get_device
    from .evaluation import evaluate as evaluate, predict as predict
    from .finetune import (
        GPTClassifier as GPTClassifier,
        LoRALinear as LoRALinear,
        apply_lora as apply_lora,
        encode_batch as encode_batch,
        freeze as freeze,
        load_adapters as load_adapters,
        merge_lora as merge_lora,
        parameter_counts as parameter_counts,
        save_adapters as save_adapters,
        trainable_summary as trainable_summary,
        training_memory as training_memory,
        unfreeze as unfreeze,
    )
    from .gpt import GPT as GPT, GPTConfig as GPTConfig
    from .instruct import (
        InstructionCollator as InstructionCollator,
        collate_instructions as collate_instructions,
        exact_match as exact_match,
        format_prompt as format_prompt,
        instruction_loss as instruction_loss,
        normalized_exact_match as normalized_exact_match,
        respond as respond,
    )
    from .llama import Llama as Llama, LlamaConfig as LlamaConfig
    from .lm import (
        SampleText as SampleText,
        estimate_loss as estimate_loss,
        get_batch as get_batch,
        lm_loss as lm_loss,
        train_lm as train_lm,
    )
    from .machine import fastest_dtype as fastest_dtype
    from .memory import (
        activation_bytes as activation_bytes,
        count_saved_tensors as count_saved_tensors,
        gpt_training_memory as gpt_training_memory,
    )
    from .metrics import (
        accuracy as accuracy,
        confusion_matrix as confusion_matrix,
        precision_recall_f1 as precision_recall_f1,
    )
    from .plots import (
        plot_confusion_matrix as plot_confusion_matrix,
        plot_history as plot_history,
        show_images as show_images,
        show_mistakes as show_mistakes,
    )
    from .readiness import doctor as doctor
    from .report import classification_report as classification_report
    from .rnn import CharRNN as CharRNN, LSTMLayer as LSTMLayer, RNNLayer as RNNLayer
    from .seed import seed_everything as seed_everything
    from .smollm2 import SmolLM2Tokenizer as SmolLM2Tokenizer, chat as chat, load_smollm2 as load_smollm2
    from .tokenizers import (
        BPETokenizer as BPETokenizer,
        CharTokenizer as CharTokenizer,
        compare_tokenizers as compare_tokenizers,
        gpt2_tokenizer as gpt2_tokenizer,
    )
    from .training import History as History, fit as fit
    from .widgets import HyperparameterPanel as HyperparameterPanel

PUBLIC: dict[str, str] = {
    # the machine
    "doctor": "readiness", "get_device": "device", "seed_everything": "seed", "fastest_dtype": "machine",
    # data
    "load_images": "data", "torchvision_dataset": "data", "class_names": "data", "load_table": "data",
    # training
    "fit": "training", "evaluate": "evaluation", "History": "training",
    "Callback": "callbacks", "ProgressBar": "callbacks", "LivePlot": "callbacks", "EarlyStopping": "callbacks",
    "BestCheckpoint": "callbacks", "GradientClipping": "callbacks", "LRScheduler": "callbacks",
    # measuring and looking
    "accuracy": "metrics", "confusion_matrix": "metrics", "precision_recall_f1": "metrics",
    "classification_report": "report", "predict": "evaluation",
    "plot_confusion_matrix": "plots", "show_images": "plots", "show_mistakes": "plots", "plot_history": "plots",
    # language models (chapter 06)
    "load_text": "data", "load_poems": "data", "load_poem_info": "data", "load_reviews": "data", "gpt2_ranks_path": "data",
    "load_instructions": "data",
    "CharTokenizer": "tokenizers", "BPETokenizer": "tokenizers", "gpt2_tokenizer": "tokenizers",
    "compare_tokenizers": "tokenizers",
    "GPT": "gpt", "GPTConfig": "gpt",
    "save_checkpoint": "checkpoints", "load_checkpoint": "checkpoints", "load_pretrained": "checkpoints",
    "train_lm": "lm", "get_batch": "lm", "lm_loss": "lm", "estimate_loss": "lm", "SampleText": "lm",
    "CharRNN": "rnn", "RNNLayer": "rnn", "LSTMLayer": "rnn",
    # fine-tuning (chapter 07)
    "freeze": "finetune", "unfreeze": "finetune", "parameter_counts": "finetune", "trainable_summary": "finetune",
    "GPTClassifier": "finetune", "encode_batch": "finetune", "LoRALinear": "finetune", "apply_lora": "finetune",
    "merge_lora": "finetune", "save_adapters": "finetune", "load_adapters": "finetune",
    "training_memory": "finetune",
    # a real LLM (chapter 06d)
    "Llama": "llama", "LlamaConfig": "llama", "load_smollm2": "smollm2", "SmolLM2Tokenizer": "smollm2",
    "chat": "smollm2",
    "format_prompt": "instruct", "collate_instructions": "instruct", "InstructionCollator": "instruct",
    "instruction_loss": "instruct", "respond": "instruct", "exact_match": "instruct", "normalized_exact_match": "instruct",
    # preference tuning and RL (chapter 07d)
    "sequence_logprobs": "align", "dpo_loss": "align", "group_advantages": "align", "grpo_loss": "align",
    "bandit_optimum": "align",
    # memory and speed (chapter 08a)
    "count_saved_tensors": "memory", "activation_bytes": "memory", "gpt_training_memory": "memory",
    # interaction and exercises
    "HyperparameterPanel": "widgets", "check": "course.exercises", "summary": "course.exercises", "compare": "course.exercises",
}

__version__ = "0.1.0"

from .fonts import register_chinese_font as _register_chinese_font  # noqa: E402
from .threads import install as _choose_threads  # noqa: E402

_register_chinese_font()  # figures can label Chinese in Chinese (matplotlib has no font for it)
_choose_threads()  # in Jupyter: as many torch threads as other programs leave cores free (labkit.threads)
__all__ = sorted(PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(PUBLIC))
