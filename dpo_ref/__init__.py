"""dpo_ref: a small, readable Direct Preference Optimization trainer.

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model", arXiv 2305.18290. The names below are the public API (the book's overview
page has the map of the modules): records to pairs (``prepare_pairs``), pairs to batches
(``collate``, or the row ``Layout`` that ``train`` chooses), log-probs
(``sequence_logps``, ``concatenated_forward``), the loss (``dpo_loss``; the losses
that followed it: ``preference_loss``, ``LOSS_TYPES``), π_ref
(``CopyReference``, ``LoraReference``, ``PrecomputedReference``,
``TrustRegionReference``, ``NoReference``), the run (``DPOConfig``, ``train``) and
loading a model (``load_model_and_tokenizer``). Errors that name what to fix:
``DataError``, ``ConfigError``, ``CheckpointError``, ``ModelLoadError``.
"""

from .batching import collate
from .checkpoint import CheckpointError
from .config import ConfigError, DPOConfig
from .data import DataError, PreferenceData, PreferencePair, prepare_pairs
from .layouts import ROWS, Layout
from .loading import ModelLoadError, load_model_and_tokenizer
from .logprobs import concatenated_forward, sequence_logps
from .losses import LOSS_TYPES, dpo_loss, preference_loss
from .reference import (CopyReference, LoraReference, NoReference, PrecomputedReference,
                        TrustRegionReference)
from .trainer import TrainResult, train

__all__ = [
    "prepare_pairs", "PreferenceData", "PreferencePair", "DataError", "collate",
    "Layout", "ROWS", "sequence_logps", "concatenated_forward", "LOSS_TYPES",
    "dpo_loss", "preference_loss", "CopyReference", "LoraReference",
    "PrecomputedReference", "TrustRegionReference", "NoReference", "DPOConfig",
    "ConfigError",
    "TrainResult", "train", "load_model_and_tokenizer",
    "CheckpointError", "ModelLoadError",
]
__version__ = "0.1.0"
