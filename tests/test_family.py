"""The DPO family beyond the margin-only variants, each loss against its paper's formula:
written here from the papers, independently of dpo_ref, on random float64 inputs; values and
gradients to 1e-6. Against TRL: tests/test_family_trl.py; their settings: test_config.py;
training a step with each: test_trainer.py; TR-DPO's reference: test_reference.py.
"""

import dataclasses

import pytest
import torch

from dpo_ref import dpo_loss, preference_loss
from dpo_ref.losses import LOSS_TYPES, PER_TOKEN, REFERENCE_FREE

BETA = 0.3


def nls(z):
    """−log σ(z) = log(1 + e^−z), as log-sum-exp (float64; no dpo_ref code)."""
    return torch.logaddexp(torch.zeros_like(z), -z)


def sigma(z):
    return 1 / (1 + torch.exp(-z))


# Each: the published loss from summed log-probs (pc, pr: π_θ; rc, rr: π_ref) and lengths nc, nr.
FAMILY = {
    # Tülu 3 (arXiv 2411.15124): −log σ(β/|y_w| · log π_θ/π_ref(y_w) − β/|y_l| · log π_θ/π_ref(y_l))
    "sigmoid_norm": lambda s: nls(BETA * (s.pc - s.rc) / s.nc - BETA * (s.pr - s.rr) / s.nr),
    # RPO (arXiv 2404.19733): L_DPO + α · (−log π_θ(y_w|x) / |y_w|)
    "rpo": lambda s: nls(BETA * s.delta) + s.alpha * (-s.pc / s.nc),
    # DPOP (arXiv 2402.13228): −log σ(β(Δ − λ·max(0, log π_ref(y_w|x)/π_θ(y_w|x))))
    "dpop": lambda s: nls(BETA * (s.delta - s.lam * torch.clamp(s.rc - s.pc, min=0))),
    # R-DPO (arXiv 2403.19159): −log σ(βΔ + α|y_w| − α|y_l|)
    "rdpo": lambda s: nls(BETA * s.delta + s.alpha * s.nc - s.alpha * s.nr),
    # APO (arXiv 2408.06266) Eq. 7, −σ(β r_w) + σ(β r_l), plus the constant 1 of TRL
    "apo_zero": lambda s: 1 + (-sigma(BETA * (s.pc - s.rc)) + sigma(BETA * (s.pr - s.rr))),
    # APO Eq. 8, σ(β r_w) − σ(β(r_w − r_l)), plus 1
    "apo_down": lambda s: 1 + (sigma(BETA * (s.pc - s.rc)) - sigma(BETA * s.delta)),
    # SimPO (arXiv 2405.14734) Eq. 6: −log σ(β/|y_w| log π_θ(y_w|x) − β/|y_l| log π_θ(y_l|x) − γ)
    "simpo": lambda s: nls(BETA * s.pc / s.nc - BETA * s.pr / s.nr - s.gamma),
    # ORPO (arXiv 2403.07691): L_SFT + λ·L_OR, odds = P/(1 − P), P = exp(mean token log-prob), λ = β
    "orpo": lambda s: -s.pc / s.nc + BETA * nls(torch.log(odds(s.pc / s.nc) / odds(s.pr / s.nr))),
}
COEFFICIENTS = dict(rpo_alpha=0.7, dpop_lambda=2.0, rdpo_alpha=0.05, simpo_gamma=0.4)


def odds(mean_logp):
    p = torch.exp(mean_logp)
    return p / (1 - p)


@dataclasses.dataclass
class Sample:
    pc: torch.Tensor
    pr: torch.Tensor
    rc: torch.Tensor
    rr: torch.Tensor
    nc: torch.Tensor
    nr: torch.Tensor
    alpha: float = 0.0
    lam: float = COEFFICIENTS["dpop_lambda"]
    gamma: float = COEFFICIENTS["simpo_gamma"]

    @property
    def delta(self):
        return (self.pc - self.rc) - (self.pr - self.rr)


def random_sample(loss_type, seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    logps = [-(torch.rand(n, generator=g, dtype=torch.float64) * 50 + 1) for _ in range(4)]
    lengths = [torch.randint(1, 41, (n,), generator=g).double() for _ in range(2)]
    alpha = COEFFICIENTS["rdpo_alpha"] if loss_type == "rdpo" else COEFFICIENTS["rpo_alpha"]
    return Sample(*[x.requires_grad_(True) for x in logps[:2]], *logps[2:], *lengths, alpha=alpha)


def ours(loss_type, s, beta=BETA):
    """dpo_ref on the sample: per-token means where the loss is defined on them."""
    mean = loss_type in PER_TOKEN
    pc, pr, rc, rr = (s.pc / s.nc, s.pr / s.nr, s.rc / s.nc, s.rr / s.nr) if mean else (s.pc, s.pr, s.rc, s.rr)
    ref = (None, None) if loss_type in REFERENCE_FREE else (rc, rr)
    return preference_loss(pc, pr, *ref, beta, loss_type, chosen_tokens=s.nc, rejected_tokens=s.nr,
                    mean_logps=mean, **COEFFICIENTS)


@pytest.mark.parametrize("loss_type", FAMILY)
@pytest.mark.parametrize("seed", [0, 1])
def test_family_matches_published_formulas_in_value_and_gradient(loss_type, seed):
    s = random_sample(loss_type, seed)
    losses, chosen_rewards, rejected_rewards = ours(loss_type, s)
    expected = FAMILY[loss_type](s)
    torch.testing.assert_close(losses, expected, rtol=1e-6, atol=1e-6)
    got = torch.autograd.grad(losses.sum(), (s.pc, s.pr))
    want = torch.autograd.grad(expected.sum(), (s.pc, s.pr))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)
    # Rewards: β·log-ratio; without π_ref (as TRL's CPO/ORPO log them), β·log π_θ per token.
    with torch.no_grad():
        if loss_type in REFERENCE_FREE:
            want_c, want_r = BETA * s.pc / s.nc, BETA * s.pr / s.nr
        elif loss_type in PER_TOKEN:
            want_c, want_r = BETA * (s.pc - s.rc) / s.nc, BETA * (s.pr - s.rr) / s.nr
        else:
            want_c, want_r = BETA * (s.pc - s.rc), BETA * (s.pr - s.rr)
    torch.testing.assert_close(chosen_rewards, want_c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rejected_rewards, want_r, rtol=1e-12, atol=1e-12)


def test_rpo_on_per_token_means_takes_the_mean_as_it_is():
    s = random_sample("rpo")
    mc, mr, rc, rr = s.pc / s.nc, s.pr / s.nr, s.rc / s.nc, s.rr / s.nr
    losses, _, _ = preference_loss(mc, mr, rc, rr, BETA, "rpo", mean_logps=True, rpo_alpha=0.7)
    torch.testing.assert_close(losses, nls(BETA * ((mc - rc) - (mr - rr))) - 0.7 * mc)


def test_special_cases_reduce_to_dpo():
    s = random_sample("rpo")
    dpo = dpo_loss(s.pc, s.pr, s.rc, s.rr, BETA)[0]
    for loss_type, zero in (("rpo", dict(rpo_alpha=0.0, chosen_tokens=s.nc)), ("dpop", dict(dpop_lambda=0.0))):
        torch.testing.assert_close(preference_loss(s.pc, s.pr, s.rc, s.rr, BETA, loss_type, **zero)[0], dpo)
    # DPOP's penalty is zero while π_θ(y_w) ≥ π_ref(y_w): there it is DPO.
    above = preference_loss(s.pc, s.pr, s.pc - 1, s.rr, BETA, "dpop")[0]
    torch.testing.assert_close(above, dpo_loss(s.pc, s.pr, s.pc - 1, s.rr, BETA)[0])
    # R-DPO at equal lengths is DPO, whatever α.
    torch.testing.assert_close(preference_loss(s.pc, s.pr, s.rc, s.rr, BETA, "rdpo", chosen_tokens=s.nc,
                                        rejected_tokens=s.nc, rdpo_alpha=3.0)[0], dpo)


def test_orpo_is_stable_where_the_mean_probability_is_near_one():
    x = torch.tensor([-1e-6, -1e-3, -0.5, -30.0], dtype=torch.float32)
    losses, _, _ = preference_loss(x, x.flip(0), loss_type="orpo", mean_logps=True)
    assert torch.isfinite(losses).all()


def test_what_each_loss_needs_is_asked_for():
    x = torch.full((2,), -1.0)
    with pytest.raises(ValueError, match="per-token mean"):
        preference_loss(x, x, loss_type="simpo")
    with pytest.raises(ValueError, match="needs the reference"):
        preference_loss(x, x, loss_type="dpop")
    with pytest.raises(ValueError, match="rdpo_alpha > 0"):
        preference_loss(x, x, x, x, loss_type="rdpo")
    with pytest.raises(ValueError, match="chosen_tokens"):
        preference_loss(x, x, x, x, loss_type="rpo")
    with pytest.raises(ValueError, match="dpop_lambda must be >= 0"):
        preference_loss(x, x, x, x, loss_type="dpop", dpop_lambda=-1.0)
