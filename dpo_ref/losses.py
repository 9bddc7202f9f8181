"""The DPO loss and its variants, as functions of per-sequence log-probabilities.

Nothing here knows about models, tokenizers or data: every function takes the summed (or
length-averaged) log-probabilities of the chosen response y_w and the rejected response y_l under the
policy π_θ and the reference π_ref, one value per preference pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "unweighted", "ipo", "hinge", "cdpo", "robust")


def check_loss_settings(beta: float, loss_type: str, label_smoothing: float = 0.0) -> None:
    """Raise ``ValueError`` for settings no variant accepts (``DPOConfig`` checks with this too)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {', '.join(LOSS_TYPES)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:  # at ε = 0.5 a label says nothing; robust divides by 1 − 2ε
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference losses and implicit rewards.

    With Δ = log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x), the variants are

    - ``sigmoid``: −log σ(βΔ), the DPO loss (Rafailov et al. 2023, arXiv 2305.18290, Eq. 7).
    - ``unweighted``: −βΔ. Its gradient is the DPO gradient (the paper's §4) with the weight
      σ(r̂_l − r̂_w) replaced by 1: the course's reading of the paper's "naïve version ... without the
      weighting coefficient". It is β times the gradient of the sequence-level objective
      −log π_θ(y_w|x) + log π_θ(y_l|x), not that of token-level unlikelihood (book/04_gradient.md).
    - ``ipo``: (Δ − 1/(2β))², IPO (Azar et al. 2023, arXiv 2310.12036, Eq. 17) as written in the
      DPO authors' code. Whether Δ is built from summed or per-token-averaged log-probs is decided by
      the caller (see ``dpo_ref.logprobs``); TRL averages per token, following the IPO authors.
    - ``hinge``: max(0, 1 − βΔ), the hinge-norm loss of RSO (Liu et al. 2023, arXiv 2309.06657), with β
      as RSO's γ, as TRL's ``hinge``: a hinge on the log-ratios against π_ref. SLiC's calibration loss
      (Zhao et al. 2023, arXiv 2305.10425), max(0, δ − log π_θ(y_w|x) + log π_θ(y_l|x)), has no π_ref.
    - ``cdpo``: −(1−ε) log σ(βΔ) − ε log σ(−βΔ), conservative DPO with label smoothing ε, as in the
      DPO authors' code (``label_smoothing``). ε = 0 gives ``sigmoid``.
    - ``robust``: (−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε), robust DPO (Chowdhury et al. 2024,
      arXiv 2403.00409) as TRL's ``robust`` loss; ε ∈ [0, 0.5).

    Returns ``(losses, chosen_rewards, rejected_rewards)``, each of shape (batch,), where the rewards
    are the implicit rewards r̂ = β·(log π_θ − log π_ref), detached (they are for logging).
    """
    check_loss_settings(beta, loss_type, label_smoothing)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    margin = chosen_logratios - rejected_logratios  # Δ, in nats

    if loss_type in ("sigmoid", "cdpo"):
        # logsigmoid, never log(sigmoid(...)): the latter underflows to log(0) = -inf for large |βΔ|.
        eps = label_smoothing
        losses = -(1 - eps) * F.logsigmoid(beta * margin) - eps * F.logsigmoid(-beta * margin)
    elif loss_type == "unweighted":
        losses = -beta * margin
    elif loss_type == "ipo":
        losses = (margin - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * margin)  # RSO's hinge-norm: zero once βΔ ≥ 1, i.e. Δ ≥ 1/β
    else:  # robust (check_loss_settings has refused any other name)
        eps = label_smoothing
        losses = (-(1 - eps) * F.logsigmoid(beta * margin) + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps)

    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards
