"""dpo_ref: a small, readable Direct Preference Optimization trainer.

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
arXiv 2305.18290. Each concept lives in its own module: ``losses``, ``logprobs``, ``prompt_sharing``,
``data``, ``reference``, ``trainer``, ``checkpoint``, ``distributed``, ``generation``, ``sft`` (the
Preferred-FT baseline), ``toy`` (the offline toy world), ``reward_task`` (the studies' task with a known
reward), ``loading`` and ``cli``.
"""

from .data import DataError, PreferenceData, collate, prepare_pairs
from .logprobs import concatenated_forward, sequence_logps
from .losses import LOSS_TYPES, dpo_loss
from .trainer import ConfigError, DPOConfig, TrainResult, evaluate, train

__all__ = [
    "LOSS_TYPES", "dpo_loss", "sequence_logps", "concatenated_forward", "DataError", "PreferenceData",
    "prepare_pairs", "collate", "ConfigError", "DPOConfig", "TrainResult", "train", "evaluate",
]
__version__ = "0.1.0"
