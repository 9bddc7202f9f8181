"""The DPO loss and the losses that followed it, as functions of per-sequence
log-probabilities.

Nothing here knows about models, tokenizers or data. ``dpo_loss`` is the paper's loss in
the shape of the authors' code: the four log-probabilities of a batch of pairs, β and
label smoothing. Each member of the family is a short function of its own, registered in
``VARIANTS`` with what it needs (π_ref or none, per-token means, its settings);
``preference_loss`` computes any of them, and ``DPOConfig`` and the command line read
their names, defaults and help from here (``SETTINGS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .logprobs import per_token_mean


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of each pair, −log σ(βΔ) (Rafailov et al. 2023, arXiv 2305.18290,
    Eq. 7), with Δ = log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x).

    ``label_smoothing`` ε > 0 gives conservative DPO as in the authors' code,
    −(1−ε) log σ(βΔ) − ε log σ(−βΔ). Returns ``(losses, chosen_rewards,
    rejected_rewards)``, each of shape (batch,): the implicit rewards
    r̂ = β·log π_θ(y|x)/π_ref(y|x), detached (they are for logging).
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    margin = chosen_logratios - rejected_logratios  # Δ, in nats
    # logsigmoid, never log(sigmoid(...)): that underflows to log(0) for large |βΔ|
    losses = (-(1 - label_smoothing) * F.logsigmoid(beta * margin)
              - label_smoothing * F.logsigmoid(-beta * margin))
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards


@dataclass(frozen=True)
class Pairs:
    """A batch of pairs as the family's losses read it, each tensor of shape (batch,).

    ``chosen``, ``rejected``: log π_θ(y|x), summed over the response or its per-token
    mean (``mean``); ``ref_*``: the same under π_ref, None without a reference;
    ``*_tokens``: |y_w| and |y_l|.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None
    ref_rejected: torch.Tensor | None
    chosen_tokens: torch.Tensor | None = None
    rejected_tokens: torch.Tensor | None = None
    mean: bool = False

    @property
    def chosen_logratio(self) -> torch.Tensor:
        """r_w = log π_θ(y_w|x) − log π_ref(y_w|x); log π_θ alone without π_ref."""
        return (self.chosen if self.ref_chosen is None
                else self.chosen - self.ref_chosen)

    @property
    def rejected_logratio(self) -> torch.Tensor:
        return (self.rejected if self.ref_rejected is None
                else self.rejected - self.ref_rejected)

    @property
    def margin(self) -> torch.Tensor:
        """Δ = r_w − r_l, in nats."""
        return self.chosen_logratio - self.rejected_logratio

    def chosen_per_token(self) -> torch.Tensor:
        """log π_θ(y_w|x)/|y_w|."""
        if self.mean:
            return self.chosen
        if self.chosen_tokens is None:
            raise ValueError("summed log-probs need their token counts "
                             "(chosen_tokens) here")
        return per_token_mean(self.chosen, self.chosen_tokens)


def sigmoid_loss(x: Pairs, beta: float, label_smoothing: float,
                 **_) -> torch.Tensor:
    """DPO, ``dpo_loss``; with ε > 0 conservative DPO (``cdpo``); on per-token means
    the length-normalised DPO of Tülu 3 (Lambert et al. 2024, arXiv 2411.15124), TRL's
    ``sigmoid_norm``, whose rewards are per token too (TRL logs summed ones)."""
    return dpo_loss(x.chosen, x.rejected, x.ref_chosen, x.ref_rejected, beta,
                    label_smoothing)[0]


def unweighted(x: Pairs, beta: float, **_) -> torch.Tensor:
    """−βΔ: the DPO gradient (the paper's §4) with the weight σ(r̂_l − r̂_w) replaced by
    1, the course's reading of the paper's "naïve version ... without the weighting
    coefficient". It is β times the gradient of the sequence-level objective
    −log π_θ(y_w|x) + log π_θ(y_l|x), not that of token-level unlikelihood
    (book/04_gradient.md)."""
    return -beta * x.margin


def ipo(x: Pairs, beta: float, **_) -> torch.Tensor:
    """(Δ − 1/(2β))², IPO (Azar et al. 2023, arXiv 2310.12036, Eq. 17) as written in
    the DPO authors' code. Summed or per-token log-probs are the caller's choice
    (``DPOConfig.length_normalize``); TRL averages per token, following the IPO
    authors."""
    return (x.margin - 1 / (2 * beta)) ** 2


def hinge(x: Pairs, beta: float, **_) -> torch.Tensor:
    """max(0, 1 − βΔ), the hinge-norm loss of RSO (Liu et al. 2023, arXiv 2309.06657)
    with β as RSO's γ, TRL's ``hinge``: zero once Δ ≥ 1/β. SLiC's calibration loss
    (Zhao et al. 2023, arXiv 2305.10425) is a hinge without π_ref."""
    return torch.relu(1 - beta * x.margin)


def robust(x: Pairs, beta: float, label_smoothing: float, **_) -> torch.Tensor:
    """(−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε), robust DPO (Chowdhury et al.
    2024, arXiv 2403.00409) as TRL's ``robust``; ε ∈ [0, 0.5)."""
    eps, margin = label_smoothing, x.margin
    return ((-(1 - eps) * F.logsigmoid(beta * margin)
             + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps))


def rpo(x: Pairs, beta: float, label_smoothing: float, rpo_alpha: float,
        **_) -> torch.Tensor:
    """−log σ(βΔ) − α·log π_θ(y_w|x)/|y_w|: DPO plus the NLL of y_w per token of y_w,
    pair by pair (Pang et al. 2024, arXiv 2404.19733). TRL's ``["sigmoid", "sft"]``
    averages the NLL over all chosen tokens of the batch instead."""
    return sigmoid_loss(x, beta, label_smoothing) + rpo_alpha * -x.chosen_per_token()


def dpop(x: Pairs, beta: float, dpop_lambda: float, **_) -> torch.Tensor:
    """−log σ(β(Δ − λ·max(0, log π_ref(y_w|x) − log π_θ(y_w|x)))), DPO-Positive (Pal
    et al. 2024, arXiv 2402.13228): a penalty once π_θ(y_w|x) falls below
    π_ref(y_w|x), inside the sigmoid as the paper writes it."""
    # relu(−r_w) = max(0, log π_ref(y_w|x) − log π_θ(y_w|x))
    return -F.logsigmoid(beta * (x.margin
                                 - dpop_lambda * torch.relu(-x.chosen_logratio)))


def rdpo(x: Pairs, beta: float, rdpo_alpha: float, **_) -> torch.Tensor:
    """−log σ(βΔ + α(|y_w| − |y_l|)), length-regularised DPO (Park et al. 2024, arXiv
    2403.19159): a longer y_w needs less margin, so length wins less."""
    if x.chosen_tokens is None or x.rejected_tokens is None:
        raise ValueError("loss_type 'rdpo' needs chosen_tokens and rejected_tokens")
    return -F.logsigmoid(beta * x.margin
                         + rdpo_alpha * (x.chosen_tokens - x.rejected_tokens))


def apo_zero(x: Pairs, beta: float, **_) -> torch.Tensor:
    """1 − σ(β r_w) + σ(β r_l): APO-zero (D'Oosterlinck et al. 2024, arXiv 2408.06266,
    Eq. 7) plus the constant 1 that TRL adds. Raises r_w and lowers r_l, each through
    its own sigmoid: for a y_w better than the model."""
    return (1 - torch.sigmoid(beta * x.chosen_logratio)
            + torch.sigmoid(beta * x.rejected_logratio))


def apo_down(x: Pairs, beta: float, **_) -> torch.Tensor:
    """σ(β r_w) + 1 − σ(βΔ): APO-down (Eq. 8 of the same paper, plus TRL's 1). Lowers
    r_w, and r_l more: for a y_w worse than the model."""
    return (torch.sigmoid(beta * x.chosen_logratio) + 1
            - torch.sigmoid(beta * x.margin))


def simpo(x: Pairs, beta: float, simpo_gamma: float, **_) -> torch.Tensor:
    """−log σ(β(log π_θ(y_w|x)/|y_w| − log π_θ(y_l|x)/|y_l|) − γ), SimPO (Meng et
    al. 2024, arXiv 2405.14734, Eq. 6): no π_ref; TRL's CPO trainer with
    ``loss_type="simpo"``, ``cpo_alpha=0``."""
    return -F.logsigmoid(beta * x.margin - simpo_gamma)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, without cancellation: two forms, switched at
    x = −ln 2 (Mächler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)),
                       torch.log(-torch.expm1(x)))


def orpo(x: Pairs, beta: float, **_) -> torch.Tensor:
    """−log π_θ(y_w|x)/|y_w| − λ·log σ(log odds(y_w) − log odds(y_l)), with
    odds(y) = p/(1 − p), p = exp(log π_θ(y|x)/|y|): ORPO (Hong et al. 2024, arXiv
    2403.07691, Eqs. 4–7), no π_ref, λ = β as in TRL's ORPO trainer (the paper's
    λ = 0.1 is dpo_ref's default β)."""
    # log odds = log p − log(1 − p), p the per-token mean probability
    log_odds = x.margin - (log1mexp(x.chosen) - log1mexp(x.rejected))
    return -x.chosen - beta * F.logsigmoid(log_odds)


@dataclass(frozen=True)
class Variant:
    """A member of the family: its loss, and what it needs."""

    loss: Callable[..., torch.Tensor]
    reference_free: bool = False   # no π_ref: trained with reference="none"
    per_token: bool = False        # defined on per-token mean log-probs
    mean_by_default: bool = False  # per-token means unless length_normalize=False


VARIANTS = {
    "sigmoid": Variant(sigmoid_loss),
    "unweighted": Variant(unweighted),
    "ipo": Variant(ipo, mean_by_default=True),  # as TRL
    "hinge": Variant(hinge),
    "cdpo": Variant(sigmoid_loss),
    "robust": Variant(robust),
    "sigmoid_norm": Variant(sigmoid_loss, per_token=True),
    "rpo": Variant(rpo),
    "dpop": Variant(dpop),
    "rdpo": Variant(rdpo),
    "apo_zero": Variant(apo_zero),
    "apo_down": Variant(apo_down),
    "simpo": Variant(simpo, reference_free=True, per_token=True),
    "orpo": Variant(orpo, reference_free=True, per_token=True),
}
LOSS_TYPES = tuple(VARIANTS)
REFERENCE_FREE = tuple(n for n, v in VARIANTS.items() if v.reference_free)
PER_TOKEN = tuple(n for n, v in VARIANTS.items() if v.per_token)


@dataclass(frozen=True)
class Setting:
    default: float
    help: str


# The variants' own settings, written once: DPOConfig's defaults and the CLI's help.
SETTINGS = {
    "label_smoothing": Setting(0.0, "ε of sigmoid (cdpo) and robust: the share of "
                               "labels assumed flipped, in [0, 0.5)"),
    "rpo_alpha": Setting(1.0, "rpo: weight α of the NLL of y_w, per token"),
    "dpop_lambda": Setting(50.0, "dpop: weight λ of the penalty (the paper's value)"),
    "rdpo_alpha": Setting(0.0, "rdpo: α per token of length difference (rdpo needs "
                          "> 0: the paper tunes it per dataset)"),
    "simpo_gamma": Setting(0.5, "simpo: target margin γ (TRL's default)"),
}
# The run's settings that preference_loss reads (DPOConfig's fields of the same names).
LOSS_SETTINGS = ("beta", "loss_type", *SETTINGS)


def check_loss_settings(beta: float, loss_type: str, **settings: float) -> None:
    """Raise ``ValueError`` for settings no variant accepts (``DPOConfig`` checks with
    this too); a setting not given takes its default."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown loss setting(s): {', '.join(unknown)}")
    if loss_type not in VARIANTS:
        raise ValueError(f"unknown loss_type {loss_type!r}; "
                         f"choose one of {', '.join(LOSS_TYPES)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    values = {name: s.default for name, s in SETTINGS.items()} | settings
    # at ε = 0.5 a label says nothing; robust divides by 1 − 2ε
    if not 0 <= values["label_smoothing"] < 0.5:
        raise ValueError("label_smoothing must be in [0, 0.5), "
                         f"got {values['label_smoothing']}")
    for name in ("rpo_alpha", "dpop_lambda", "rdpo_alpha", "simpo_gamma"):
        # each weighs a penalty or a target margin: < 0 would reward the failure
        if not values[name] >= 0:
            raise ValueError(f"{name} must be >= 0, got {values[name]}")
    # the paper tunes α per dataset: no default to offer
    if loss_type == "rdpo" and values["rdpo_alpha"] == 0:
        raise ValueError("loss_type 'rdpo' needs rdpo_alpha > 0 "
                         "(with α = 0 it is the sigmoid loss)")


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    *,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
    mean_logps: bool = False,
    **settings: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses and implicit rewards of any member of ``VARIANTS``.

    ``mean_logps``: the log-probs are per-token means (``PER_TOKEN`` losses need them);
    ``chosen_tokens``, ``rejected_tokens``: |y_w| and |y_l| (read by ``rdpo``, and by
    ``rpo`` on summed log-probs); ``settings``: ``SETTINGS`` by name, defaults
    otherwise. A reference-free loss reads no ``ref_*_logps`` (they may be None).
    Returns ``(losses, chosen_rewards, rejected_rewards)`` as ``dpo_loss`` does;
    without a reference r̂ = β·log π_θ (per token), as TRL's CPO and ORPO trainers log
    them.
    """
    check_loss_settings(beta, loss_type, **settings)
    variant = VARIANTS[loss_type]
    if variant.per_token and not mean_logps:
        raise ValueError(f"loss_type {loss_type!r} is defined on per-token mean "
                         "log-probs: pass those, with mean_logps=True")
    if variant.reference_free:  # log π_ref ≡ 0: the log-ratios are log π_θ
        ref_chosen_logps = ref_rejected_logps = None
    elif ref_chosen_logps is None or ref_rejected_logps is None:
        raise ValueError(f"loss_type {loss_type!r} needs the reference log-probs")
    pairs = Pairs(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                  ref_rejected_logps, chosen_tokens, rejected_tokens, mean_logps)
    values = {name: s.default for name, s in SETTINGS.items()} | settings
    losses = variant.loss(pairs, beta, **values)
    chosen_rewards = beta * pairs.chosen_logratio.detach()
    rejected_rewards = beta * pairs.rejected_logratio.detach()
    return losses, chosen_rewards, rejected_rewards
