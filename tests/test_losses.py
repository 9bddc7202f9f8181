import math

import numpy as np
import pytest
import torch

from dpo_ref import LOSS_TYPES, dpo_loss, preference_loss


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def random_logps(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g, dtype=torch.float64) * 50 + 1) for _ in range(4)]


def test_closed_form_on_hand_computed_inputs():
    # Δ = (−1 − −3) − (−4 − −2) = 2 − (−2) = 4 ; β = 0.5 → βΔ = 2 ; loss = −log σ(2) = log(1 + e^−2)
    losses, chosen, rejected = dpo_loss(torch.tensor([-1.0]), torch.tensor([-4.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), beta=0.5)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-2.0)), abs=1e-6)
    assert chosen.item() == pytest.approx(0.5 * 2.0) and rejected.item() == pytest.approx(0.5 * -2.0)


def test_policy_equal_reference_gives_ln2_and_zero_rewards():
    pc, pr, _, _ = random_logps()
    losses, chosen, rejected = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.3)
    assert torch.allclose(losses, torch.full_like(losses, math.log(2)))
    assert torch.all(chosen == 0) and torch.all(rejected == 0)


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_sigmoid_gradient_is_sigma_weighted(beta):
    pc, pr, rc, rr = random_logps()
    pc.requires_grad_(True), pr.requires_grad_(True)
    losses, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=beta)
    losses.sum().backward()
    weight = torch.sigmoid(rejected_rewards - chosen_rewards)  # σ(r̂_l − r̂_w)
    assert torch.allclose(pc.grad, -beta * weight, atol=1e-12)
    assert torch.allclose(pr.grad, beta * weight, atol=1e-12)


def test_unweighted_gradient_is_exactly_beta():
    pc, pr, rc, rr = random_logps()
    pc.requires_grad_(True), pr.requires_grad_(True)
    preference_loss(pc, pr, rc, rr, beta=0.2, loss_type="unweighted")[0].sum().backward()
    assert torch.all(pc.grad == -0.2) and torch.all(pr.grad == 0.2)


def published(loss_type, delta, beta, eps):
    """The formulas as their sources write them (numpy, independent of dpo_ref)."""
    z = beta * delta
    if loss_type == "sigmoid":  # DPO paper Eq. 7
        return -log_sigmoid(z)
    if loss_type == "unweighted":
        return -z
    if loss_type == "ipo":  # IPO Eq. 17 as in the DPO authors' trainers.py: (logits - 1/(2β))²
        return (delta - 1 / (2 * beta)) ** 2
    if loss_type == "hinge":  # SLiC as TRL's hinge: relu(1 − β·logits)
        return np.maximum(0.0, 1 - z)
    if loss_type == "cdpo":  # DPO authors' code with label_smoothing
        return -log_sigmoid(z) * (1 - eps) - log_sigmoid(-z) * eps
    if loss_type == "robust":  # TRL's robust loss (Chowdhury et al. 2024)
        return (-log_sigmoid(z) * (1 - eps) + log_sigmoid(-z) * eps) / (1 - 2 * eps)
    raise AssertionError(loss_type)


# The variants of Δ alone; the ones with more inputs (lengths, no reference) are in test_family.py.
MARGIN_ONLY = ("sigmoid", "unweighted", "ipo", "hinge", "cdpo", "robust")


def test_every_loss_type_is_checked_here_or_in_test_family():
    from test_family import FAMILY

    assert set(LOSS_TYPES) == set(MARGIN_ONLY) | set(FAMILY)


@pytest.mark.parametrize("loss_type", MARGIN_ONLY)
@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_variants_match_published_formulas(loss_type, beta):
    pc, pr, rc, rr = random_logps(seed=1)
    eps = 0.2 if loss_type in ("cdpo", "robust") else 0.0
    losses, _, _ = preference_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type, label_smoothing=eps)
    delta = ((pc - rc) - (pr - rr)).numpy()
    np.testing.assert_allclose(losses.numpy(), published(loss_type, delta, beta, eps), rtol=1e-6, atol=1e-6)


def test_cdpo_with_zero_smoothing_is_dpo_and_robust_is_unbiased():
    pc, pr, rc, rr = random_logps(seed=2)
    assert torch.allclose(preference_loss(pc, pr, rc, rr, loss_type="cdpo")[0], dpo_loss(pc, pr, rc, rr)[0])
    # rDPO's point: its expectation under ε-flipped labels equals the clean DPO loss.
    eps = 0.3
    robust = preference_loss(pc, pr, rc, rr, loss_type="robust", label_smoothing=eps)[0]
    robust_flipped = preference_loss(pr, pc, rr, rc, loss_type="robust", label_smoothing=eps)[0]
    assert torch.allclose((1 - eps) * robust + eps * robust_flipped, dpo_loss(pc, pr, rc, rr)[0])


def test_numerically_stable_for_huge_margins():
    big = torch.tensor([1e4, -1e4], dtype=torch.float32)
    zero = torch.zeros(2)
    losses, _, _ = dpo_loss(big, zero, zero, zero, beta=1.0)
    assert torch.isfinite(losses).all()
    assert losses[0].item() == pytest.approx(0.0, abs=1e-6) and losses[1].item() == pytest.approx(1e4, rel=1e-6)


def test_bad_arguments_raise():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="unknown loss_type"):
        preference_loss(x, x, x, x, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        preference_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        preference_loss(x, x, x, x, loss_type="robust", label_smoothing=0.5)


def test_the_papers_loss_is_one_short_function_and_the_sigmoid_variant():
    import inspect

    source = inspect.getsource(dpo_loss)
    assert len(source.splitlines()) <= 35 and "loss_type" not in source
    pc, pr, rc, rr = random_logps()
    for eps in (0.0, 0.2):
        ours = dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=eps)
        for loss_type in ("sigmoid", "cdpo"):
            family = preference_loss(pc, pr, rc, rr, beta=0.3, loss_type=loss_type,
                                     label_smoothing=eps)
            assert all(torch.equal(a, b) for a, b in zip(ours, family))


def test_each_setting_is_written_once_and_read_by_the_config_and_the_cli(capsys):
    from dataclasses import fields

    from dpo_ref import DPOConfig
    from dpo_ref.cli import parse_args
    from dpo_ref.losses import SETTINGS, VARIANTS

    assert tuple(VARIANTS) == LOSS_TYPES
    defaults = {f.name: f.default for f in fields(DPOConfig)}
    assert {name: defaults[name] for name in SETTINGS} == {
        name: s.default for name, s in SETTINGS.items()}
    with pytest.raises(SystemExit):
        parse_args(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name, setting in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        assert flag in shown and f"(default {setting.default:g})" in shown, flag
    assert f"(default {defaults['ref_model_sync_steps']})" in shown
    with pytest.raises(ValueError, match="unknown loss setting"):
        preference_loss(*random_logps(), dpop_lamda=1.0)
