"""How far a run moved the likelihood of its own training responses.

DPO's loss sees only the margin between y_w and y_l, so log π_θ(y_w|x) may fall during
training as long as log π_θ(y_l|x) falls faster: "likelihood displacement", as Razin
et al. 2024 (arXiv 2410.08847) name it; Pal et al. 2024 (arXiv 2402.13228) analyse the
failure mode without that name. ``pair_logps`` measures the summed log-probs of both
responses of every pair, so that two models (the start and a trained policy) can be
compared pair by pair, whatever loss trained them.
"""

from __future__ import annotations

import torch

from ..batching import collate, in_order
from ..data import PreferenceData
from ..devices import eval_mode
from ..logprobs import concatenated_forward


@torch.no_grad()
def pair_logps(model: torch.nn.Module, data: PreferenceData, pad_id: int,
               batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Summed log π(y_w|x) and log π(y_l|x) of every pair of ``data``, in its order
    (on the CPU).

    Returns ``chosen``, ``rejected`` (nats per response) and ``chosen_tokens``,
    ``rejected_tokens``.
    """
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    with eval_mode(model):
        for _, batch in in_order(data, batch_size, pad_id, device, collate):
            out = concatenated_forward(model, batch)
            for name in ("chosen", "rejected"):
                parts.setdefault(name, []).append(out[f"{name}_logps"].float().cpu())
                parts.setdefault(f"{name}_tokens", []).append(
                    out[f"{name}_tokens"].cpu())
    return {name: torch.cat(values) for name, values in parts.items()}


def displacement(before: dict[str, torch.Tensor],
                 after: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean change of log π(y_w|x) and log π(y_l|x) between two ``pair_logps`` of the
    same pairs, the change of their margin, and the share of pairs whose chosen log-prob
    fell while the margin grew.
    """
    d_chosen = after["chosen"] - before["chosen"]
    d_rejected = after["rejected"] - before["rejected"]
    d_margin = d_chosen - d_rejected
    return {"chosen": d_chosen.mean().item(), "rejected": d_rejected.mean().item(),
            "margin": d_margin.mean().item(),
            "displaced": ((d_chosen < 0) & (d_margin > 0)).float().mean().item()}
