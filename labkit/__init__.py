"""labkit — the small lab kit of the course "From Zero to Large Models" (从零开始大模型开发与微调).

Each chapter builds a thing by hand first, then reuses the version kept here. The public face,
name → module (each module is imported the first time one of its names is used):
"""
from __future__ import annotations

import importlib
from typing import Any

PUBLIC: dict[str, str] = {
    # the machine
    "doctor": "machine", "get_device": "device", "seed_everything": "seed",
    # data
    "load_images": "data", "torchvision_dataset": "data", "class_names": "data", "load_table": "data",
    # training
    "fit": "training", "evaluate": "training", "History": "training",
    "Callback": "callbacks", "ProgressBar": "callbacks", "LivePlot": "callbacks", "EarlyStopping": "callbacks",
    "BestCheckpoint": "callbacks", "GradientClipping": "callbacks", "LRScheduler": "callbacks",
    # measuring and looking
    "accuracy": "metrics", "confusion_matrix": "metrics", "precision_recall_f1": "metrics",
    "classification_report": "metrics", "predict": "metrics",
    "plot_confusion_matrix": "plots", "show_images": "plots", "show_mistakes": "plots", "plot_history": "plots",
    # language models (chapter 06)
    "load_text": "data", "load_poems": "data", "load_poem_info": "data", "load_reviews": "data", "gpt2_ranks_path": "data",
    "load_instructions": "data",
    "CharTokenizer": "tokenizers", "BPETokenizer": "tokenizers", "gpt2_tokenizer": "tokenizers",
    "compare_tokenizers": "tokenizers",
    "GPT": "gpt", "GPTConfig": "gpt", "save_checkpoint": "gpt", "load_checkpoint": "gpt", "load_pretrained": "gpt",
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
    # memory and speed (chapter 08a)
    "count_saved_tensors": "memory", "activation_bytes": "memory", "gpt_training_memory": "memory",
    # interaction and exercises
    "HyperparameterPanel": "widgets", "check": "exercises", "summary": "exercises", "compare": "exercises",
}

__version__ = "0.1.0"

from .fonts import register_chinese_font as _register_chinese_font  # noqa: E402

_register_chinese_font()  # figures can label Chinese in Chinese (matplotlib has no font for it)
__all__ = sorted(PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(PUBLIC))
