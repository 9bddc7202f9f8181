"""The DPO loss and its variants, as functions of per-sequence log-probabilities.

Nothing here knows about models, tokenizers or data: every function takes the summed (or
length-averaged) log-probabilities of the chosen response y_w and the rejected response
y_l under the policy π_θ and the reference π_ref, one value per preference pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "unweighted", "ipo", "hinge", "cdpo", "robust", "sigmoid_norm",
              "rpo", "dpop", "rdpo", "apo_zero", "apo_down", "simpo", "orpo")
# no π_ref in the loss: trained with reference="none"
REFERENCE_FREE = ("simpo", "orpo")
PER_TOKEN = ("sigmoid_norm", "simpo", "orpo")  # defined on per-token mean log-probs
# The run's settings that dpo_loss reads (DPOConfig's fields of the same names).
LOSS_SETTINGS = ("beta", "loss_type", "label_smoothing", "rpo_alpha", "dpop_lambda",
                 "rdpo_alpha", "simpo_gamma")


def check_loss_settings(beta: float, loss_type: str, label_smoothing: float = 0.0,
                        rpo_alpha: float = 1.0, dpop_lambda: float = 50.0,
                        rdpo_alpha: float = 0.0, simpo_gamma: float = 0.5) -> None:
    """Raise ``ValueError`` for settings no variant accepts (``DPOConfig`` checks with
    this too)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; "
                         f"choose one of {', '.join(LOSS_TYPES)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    # at ε = 0.5 a label says nothing; robust divides by 1 − 2ε
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    for name, value in (("rpo_alpha", rpo_alpha), ("dpop_lambda", dpop_lambda),
                        ("rdpo_alpha", rdpo_alpha), ("simpo_gamma", simpo_gamma)):
        # each weighs a penalty or a target margin: < 0 would reward the failure
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    # the paper tunes α per dataset: no default to offer
    if loss_type == "rdpo" and rdpo_alpha == 0:
        raise ValueError("loss_type 'rdpo' needs rdpo_alpha > 0 "
                         "(with α = 0 it is the sigmoid loss)")


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, without cancellation: two forms, switched at
    x = −ln 2 (Mächler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)),
                       torch.log(-torch.expm1(x)))


def per_token_mean(logps: torch.Tensor, n_tokens: torch.Tensor | None,
                   mean_logps: bool) -> torch.Tensor:
    """log π(y|x)/|y|: ``logps`` itself when it is a per-token mean already
    (``mean_logps``)."""
    if mean_logps:
        return logps
    if n_tokens is None:
        raise ValueError("summed log-probs need their token counts "
                         "(chosen_tokens) here")
    return logps / n_tokens.clamp(min=1)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    *,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
    mean_logps: bool = False,
    rpo_alpha: float = 1.0,
    dpop_lambda: float = 50.0,
    rdpo_alpha: float = 0.0,
    simpo_gamma: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference losses and implicit rewards.

    With Δ = log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x), the
    variants are

    - ``sigmoid``: −log σ(βΔ), the DPO loss (Rafailov et al. 2023,
      arXiv 2305.18290, Eq. 7).
    - ``unweighted``: −βΔ. Its gradient is the DPO gradient (the paper's §4) with
      the weight σ(r̂_l − r̂_w) replaced by 1: the course's reading of the paper's
      "naïve version ... without the weighting coefficient". It is β times the
      gradient of the sequence-level objective −log π_θ(y_w|x) + log π_θ(y_l|x),
      not that of token-level unlikelihood (book/04_gradient.md).
    - ``ipo``: (Δ − 1/(2β))², IPO (Azar et al. 2023, arXiv 2310.12036, Eq. 17) as
      written in the DPO authors' code. Whether Δ is built from summed or
      per-token-averaged log-probs is decided by the caller (see ``dpo_ref.logprobs``);
      TRL averages per token, following the IPO authors.
    - ``hinge``: max(0, 1 − βΔ), the hinge-norm loss of RSO (Liu et al. 2023,
      arXiv 2309.06657), with β as RSO's γ, as TRL's ``hinge``: a hinge on the
      log-ratios against π_ref. SLiC's calibration loss (Zhao et al. 2023,
      arXiv 2305.10425), max(0, δ − log π_θ(y_w|x) + log π_θ(y_l|x)), has no
      π_ref.
    - ``cdpo``: −(1−ε) log σ(βΔ) − ε log σ(−βΔ), conservative DPO with
      label smoothing ε, as in the DPO authors' code (``label_smoothing``). ε = 0
      gives ``sigmoid``.
    - ``robust``: (−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε), robust
      DPO (Chowdhury et al. 2024, arXiv 2403.00409) as TRL's ``robust`` loss;
      ε ∈ [0, 0.5).
    - ``sigmoid_norm``: −log σ(βΔ) with Δ from per-token means, log π(y|x)/|y|:
      the length-normalised DPO of Tülu 3 (Lambert et al. 2024, arXiv 2411.15124),
      TRL's ``sigmoid_norm``. The rewards are per token too (the ones the loss
      compares); TRL logs summed ones for it.
    - ``rpo``: −log σ(βΔ) − α·log π_θ(y_w|x)/|y_w|, DPO plus the NLL of y_w
      per token of y_w (Pang et al. 2024, arXiv 2404.19733; α = ``rpo_alpha``). TRL's
      ``loss_type=["sigmoid", "sft"]`` averages the NLL over all chosen tokens of the
      batch instead of per pair.
    - ``dpop``:
      −log σ(β(Δ − λ·max(0, log π_ref(y_w|x) − log π_θ(y_w|x)))),
      DPO-Positive (Pal et al. 2024, arXiv 2402.13228; λ = ``dpop_lambda``, the
      paper's 50 by default): a penalty once π_θ(y_w|x) falls below π_ref(y_w|x),
      inside the sigmoid as the paper writes it.
    - ``rdpo``: −log σ(βΔ + α(|y_w| − |y_l|)), length-regularised DPO
      (Park et al. 2024, arXiv 2403.19159; α = ``rdpo_alpha`` per token): a longer
      y_w needs less margin, so length wins less.
    - ``apo_zero``: 1 − σ(β r_w) + σ(β r_l) and ``apo_down``:
      σ(β r_w) + 1 − σ(βΔ), with r the log-ratios: APO
      (D'Oosterlinck et al. 2024, arXiv 2408.06266, Eqs. 7 and 8) plus the constant 1
      that TRL adds (the gradients are the paper's). Zero: y_w better than the model;
      down: worse.
    - ``simpo``:
      −log σ(β(log π_θ(y_w|x)/|y_w| − log π_θ(y_l|x)/|y_l|) − γ), SimPO
      (Meng et al. 2024, arXiv 2405.14734, Eq. 6; γ = ``simpo_gamma``), TRL's CPO
      trainer with ``loss_type="simpo"``, ``cpo_alpha=0``.
    - ``orpo``:
      −log π_θ(y_w|x)/|y_w| − λ·log σ(log odds(y_w) − log odds(y_l)),
      odds(y) = p/(1 − p) with p = exp(log π_θ(y|x)/|y|): ORPO (Hong et al. 2024,
      arXiv 2403.07691, Eqs. 4–7), λ = β as in TRL's ORPO trainer (the paper's
      λ = 0.1 is dpo_ref's default β).

    ``simpo`` and ``orpo`` use no reference (``REFERENCE_FREE``: ``ref_*_logps`` may be
    None and are not read); ``sigmoid_norm``, ``simpo`` and ``orpo`` want per-token
    means (``PER_TOKEN``: say so with ``mean_logps=True``). ``chosen_tokens``,
    ``rejected_tokens``: |y_w| and |y_l| (read by ``rdpo``, and by ``rpo`` on summed
    log-probs).

    Returns ``(losses, chosen_rewards, rejected_rewards)``, each of shape (batch,),
    where the rewards are the implicit rewards r̂ = β·(log π_θ − log π_ref),
    detached (they are for logging); without a reference, r̂ = β·log π_θ (per
    token), as TRL's CPO and ORPO trainers log them.
    """
    check_loss_settings(beta, loss_type, label_smoothing, rpo_alpha, dpop_lambda,
                        rdpo_alpha, simpo_gamma)
    if loss_type in PER_TOKEN and not mean_logps:
        raise ValueError(f"loss_type {loss_type!r} is defined on per-token mean "
                         "log-probs: pass those, with mean_logps=True")
    # log π_ref ≡ 0: the "log-ratios" are the policy's log-probs
    if loss_type in REFERENCE_FREE:
        chosen_logratios, rejected_logratios = (policy_chosen_logps,
                                                policy_rejected_logps)
    elif ref_chosen_logps is None or ref_rejected_logps is None:
        raise ValueError(f"loss_type {loss_type!r} needs the reference log-probs")
    else:
        chosen_logratios = policy_chosen_logps - ref_chosen_logps
        rejected_logratios = policy_rejected_logps - ref_rejected_logps
    margin = chosen_logratios - rejected_logratios  # Δ, in nats

    # sigmoid_norm: Δ of means
    if loss_type in ("sigmoid", "cdpo", "sigmoid_norm", "rpo"):
        # logsigmoid, never log(sigmoid(...)): the latter underflows to log(0) = -inf
        # for large |βΔ|.
        eps = label_smoothing
        losses = (-(1 - eps) * F.logsigmoid(beta * margin)
                  - eps * F.logsigmoid(-beta * margin))
        # + α·NLL(y_w), per token: the paper's normalisation, pair by pair
        if loss_type == "rpo":
            nll = -per_token_mean(policy_chosen_logps, chosen_tokens, mean_logps)
            losses = losses + rpo_alpha * nll
    elif loss_type == "unweighted":
        losses = -beta * margin
    elif loss_type == "ipo":
        losses = (margin - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        # RSO's hinge-norm: zero once βΔ ≥ 1, i.e. Δ ≥ 1/β
        losses = torch.relu(1 - beta * margin)
    elif loss_type == "dpop":
        # relu(−r_w) = max(0, log π_ref(y_w|x) − log π_θ(y_w|x))
        losses = -F.logsigmoid(
            beta * (margin - dpop_lambda * torch.relu(-chosen_logratios)))
    elif loss_type == "rdpo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("loss_type 'rdpo' needs chosen_tokens and rejected_tokens")
        losses = -F.logsigmoid(beta * margin
                               + rdpo_alpha * (chosen_tokens - rejected_tokens))
    elif loss_type == "apo_zero":  # raise r_w, lower r_l, each through its own sigmoid
        losses = (1 - torch.sigmoid(beta * chosen_logratios)
                  + torch.sigmoid(beta * rejected_logratios))
    elif loss_type == "apo_down":  # lower r_w, and r_l more
        losses = (torch.sigmoid(beta * chosen_logratios) + 1
                  - torch.sigmoid(beta * margin))
    elif loss_type == "simpo":
        # Δ here is the margin of per-token log-probs, no π_ref
        losses = -F.logsigmoid(beta * margin - simpo_gamma)
    elif loss_type == "orpo":
        # log odds = log p − log(1 − p), p the per-token mean probability
        log_odds = margin - (log1mexp(policy_chosen_logps)
                             - log1mexp(policy_rejected_logps))
        losses = -policy_chosen_logps - beta * F.logsigmoid(log_odds)
    else:  # robust (check_loss_settings has refused any other name)
        eps = label_smoothing
        losses = ((-(1 - eps) * F.logsigmoid(beta * margin)
                   + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps))

    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards
