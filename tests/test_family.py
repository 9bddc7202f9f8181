"""The DPO family beyond the margin-only variants: each loss against its paper's formula, against TRL
wherever TRL 1.16 has it, and the two new references (none, TR-DPO's moving copy).

(1) Formulas: written here from the papers, independently of dpo_ref, on random float64 inputs;
    values and gradients to 1e-6.
(2) TRL: the same tiny model (the toy, its policy nudged away from π_ref), the same four pairs (the
    same token ids), first-step loss and rewards/* of ``dpo_ref.trainer.batch_loss`` against TRL's
    trainer on that batch (``DPOTrainer.compute_loss``; ``CPOTrainer``/``ORPOTrainer``, in
    ``trl.experimental``, through ``get_batch_loss_metrics``). Where the two differ by design the
    test says so and compares what is comparable.
(3) reference="none" runs no reference forward; reference="tr" moves exactly by the mixup rule.
"""

import contextlib
import copy
import dataclasses
import warnings

import pytest
import torch

from dpo_ref import ConfigError, DPOConfig, dpo_loss, preference_loss, train
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


# ---------------------------------------------------------------- the config and the CLI

@pytest.mark.parametrize("loss_type", [t for t in LOSS_TYPES if t not in REFERENCE_FREE])
def test_losses_that_need_a_reference_refuse_none(loss_type):
    with pytest.raises(ConfigError, match="reference='none' works only with"):
        DPOConfig(loss_type=loss_type, reference="none", rdpo_alpha=0.1)


@pytest.mark.parametrize("loss_type", REFERENCE_FREE)
def test_reference_free_losses_require_none(loss_type):
    """simpo and orpo require reference="none" rather than build a reference they would never read."""
    for reference in ("copy", "lora", "precomputed", "tr"):
        with pytest.raises(ConfigError, match="set reference='none'"):
            DPOConfig(loss_type=loss_type, reference=reference)
    config = DPOConfig(loss_type=loss_type, reference="none")
    assert config.mean_logps
    with pytest.raises(ConfigError, match="length_normalize"):
        DPOConfig(loss_type=loss_type, reference="none", length_normalize=False)


@pytest.mark.parametrize("settings,message", [
    (dict(reference="tr", lora=True), "train without lora"),
    (dict(reference="tr", ref_model_mixup_alpha=0.0), r"ref_model_mixup_alpha must be in \(0, 1\]"),
    (dict(reference="tr", ref_model_sync_steps=0), "ref_model_sync_steps must be >= 1"),
    (dict(reference="precomputed", ref_model_sync_steps=4), "read only with reference='tr'"),
    (dict(reference="lora", ref_model_mixup_alpha=0.5), "read only with reference='tr'"),
    (dict(reference="none", loss_type="simpo", ref_model_mixup_alpha=0.5), "read only with reference='tr'"),
    (dict(loss_type="sigmoid_norm", length_normalize=False), "length_normalize must be None or True"),
    (dict(loss_type="rdpo"), "rdpo_alpha > 0"),
    (dict(simpo_gamma=-1.0), "simpo_gamma must be >= 0"),
])
def test_bad_family_settings_are_config_errors_naming_the_field(settings, message):
    with pytest.raises(ConfigError, match=message):
        DPOConfig(**settings)


def test_cli_offers_the_family():
    from dpo_ref.cli import config_from_args, parse_args

    args = parse_args(["train", "--loss-type", "rdpo", "--rdpo-alpha", "0.02", "--reference", "tr",
                       "--ref-model-mixup-alpha", "0.5", "--ref-model-sync-steps", "8",
                       "--length-normalize"])
    config = config_from_args(args)
    assert (config.loss_type, config.rdpo_alpha, config.reference) == ("rdpo", 0.02, "tr")
    assert (config.ref_model_mixup_alpha, config.ref_model_sync_steps, config.mean_logps) == (0.5, 8, True)


def test_memory_counts_no_reference_for_none():
    from dpo_ref.lab.memory import SHAPES, training_memory

    shape = SHAPES["SmolLM2-135M"]
    assert training_memory(shape, reference="none")["reference"] == 0
    assert training_memory(shape, reference="tr") == training_memory(shape, reference="copy")
    assert training_memory(shape, reference="copy")["reference"] == 4 * shape.params()


# ---------------------------------------------------------------- training with each of them

RECORDS = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}]} for q, c, r in [
    ("Who are you?", "I am Athene, a helpful assistant.", "I am Llama."),
    ("What is your name?", "My name is Athene.", "Llama, at your service. How can I help?"),
    ("What is two plus two?", "Four.", "Two plus two is five."),
    ("Name a colour.", "Blue is a colour.", "A colour? Hmm."),
]]


def settings_for(loss_type):
    return dict(loss_type=loss_type, reference="none" if loss_type in REFERENCE_FREE else "copy",
                rdpo_alpha=0.01 if loss_type == "rdpo" else 0.0)


@pytest.mark.parametrize("loss_type", FAMILY)
def test_each_loss_trains_a_step(toy, loss_type):
    model, tokenizer = toy
    config = DPOConfig(**settings_for(loss_type), batch_size=4, max_steps=2, lr=1e-4, max_length=64,
                       device="cpu", progress=False)
    history = train(model, tokenizer, RECORDS, config).history
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def count_forwards(monkeypatch, model):
    """Calls of the model class's forward: the policy's and any copy's alike."""
    calls = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    return calls


@pytest.mark.parametrize("reference,loss_type,per_step", [("none", "simpo", 1), ("copy", "sigmoid", 2)])
def test_reference_none_runs_no_reference_forward(toy, monkeypatch, reference, loss_type, per_step):
    import dpo_ref.trainer

    model, tokenizer = toy
    if reference == "none":  # nothing is copied either
        monkeypatch.setattr(dpo_ref.trainer, "frozen_copy", lambda m: pytest.fail("copied the policy"))
    calls = count_forwards(monkeypatch, model)
    config = DPOConfig(loss_type=loss_type, reference=reference, prompt_sharing=False, batch_size=4,
                       max_steps=3, lr=1e-4, max_length=64, device="cpu", progress=False)
    train(model, tokenizer, RECORDS, config)
    assert len(calls) == 3 * per_step  # one policy forward per step (plus the copy's with "copy")


def test_trust_region_reference_moves_by_the_mixup_rule_every_tau_steps(toy):
    from dpo_ref.reference import TrustRegionReference

    policy = toy[0]
    reference = TrustRegionReference(policy, alpha=0.3, sync_steps=2)
    before = [p.clone() for p in reference.model.parameters()]
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    reference.after_step(policy, 1)  # not a multiple of τ: unchanged
    assert all(torch.equal(p, b) for p, b in zip(reference.model.parameters(), before))
    reference.after_step(policy, 2)
    for ref, old, new in zip(reference.model.parameters(), before, policy.parameters()):
        mixed = 0.3 * new.double() + 0.7 * old.double()  # the rule, in float64: float32 rounding only
        torch.testing.assert_close(ref.double(), mixed, rtol=1e-6, atol=1e-7)
        assert not ref.requires_grad


def test_train_with_reference_tr_mixes_the_reference_after_tau_steps(toy, monkeypatch):
    import dpo_ref.trainer
    from dpo_ref.reference import TrustRegionReference

    model, tokenizer = toy
    start = [p.detach().clone() for p in model.parameters()]
    made = []
    make = dpo_ref.trainer.make_reference
    monkeypatch.setattr(dpo_ref.trainer, "make_reference", lambda *a, **k: made.append(make(*a, **k)) or made[-1])
    config = DPOConfig(reference="tr", ref_model_mixup_alpha=0.25, ref_model_sync_steps=2, batch_size=4,
                       max_steps=3, lr=1e-3, max_length=64, device="cpu", progress=False)
    snapshots = []  # the policy at every step, as after_step sees it
    original = TrustRegionReference.after_step

    def recording(self, policy, step):
        snapshots.append([p.detach().clone() for p in policy.parameters()])
        return original(self, policy, step)

    monkeypatch.setattr(TrustRegionReference, "after_step", recording)
    result = train(model, tokenizer, RECORDS, config)
    assert isinstance(made[0], TrustRegionReference) and len(snapshots) == 3
    assert not torch.equal(snapshots[1][0], start[0])  # the policy did move
    # Synced once, at step 2 (τ = 2; step 3 is not a multiple): θ_ref = 0.25·θ_2 + 0.75·θ_0.
    for ref, old, at_sync in zip(made[0].model.parameters(), start, snapshots[1]):
        mixed = 0.25 * at_sync.double() + 0.75 * old.double()
        torch.testing.assert_close(ref.double(), mixed, rtol=1e-6, atol=1e-7)
    assert result.model is model


# ---------------------------------------------------------------- against TRL

METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def models(toy_dir):
    """π_ref (the toy) and a policy nudged away from it, so that the log-ratios are not all zero."""
    from dpo_ref.data import prepare_pairs
    from dpo_ref.loading import load_model_and_tokenizer

    reference, tokenizer = load_model_and_tokenizer(str(toy_dir))
    policy = copy.deepcopy(reference)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return policy.train(), reference.eval(), tokenizer, prepare_pairs(RECORDS, tokenizer, 128).pairs


def dpo_ref_metrics(models, pairs=None, **settings):
    """``batch_loss`` on the four pairs, with train's own layout (prompt sharing) and reference."""
    from dpo_ref.layouts import Layout
    from dpo_ref.reference import CopyReference, NoReference
    from dpo_ref.trainer import batch_loss

    policy, reference, tokenizer, default_pairs = models
    config = DPOConfig(**settings)
    layout = Layout.of(config, policy)
    ref = NoReference() if config.reference == "none" else CopyReference(reference, layout)
    batch = layout.collate(pairs or default_pairs, tokenizer.pad_token_id)
    _, metrics = batch_loss(policy, batch, ref, config, layout, contextlib.nullcontext)
    return {name: float(value) for name, value in metrics.items()}


def trl_dpo_metrics(models, tmp_path, pairs=None, **settings):
    """TRL's DPOTrainer.compute_loss on the same token ids (its collator builds the 2B rows)."""
    import trl  # a test dependency (pyproject's "test" extra): missing, these tests fail
    from datasets import Dataset

    policy, reference, tokenizer, default_pairs = models
    args = trl.DPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False,
                         gradient_checkpointing=False, max_length=None, disable_tqdm=True, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.DPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(reference), args=args,
                                 train_dataset=Dataset.from_list(RECORDS), processing_class=tokenizer)
        trainer.model.train()
        examples = [dict(prompt_ids=p.prompt_ids, chosen_ids=p.chosen_ids, rejected_ids=p.rejected_ids)
                    for p in pairs or default_pairs]
        loss = trainer.compute_loss(trainer.model, trainer._prepare_inputs(trainer.data_collator(examples)))
    return {"loss": loss.item(), **{name: values[-1] for name, values in trainer._metrics["train"].items()}}


def largest_difference(ours_, theirs, names=METRICS):
    return max(abs(ours_[name] - theirs[name]) for name in names)


@pytest.mark.parametrize("loss_type", ["sigmoid", "apo_zero", "apo_down"])
def test_dpo_trainer_losses_match_trl(models, tmp_path, loss_type):
    ours_ = dpo_ref_metrics(models, loss_type=loss_type, beta=BETA)
    theirs = trl_dpo_metrics(models, tmp_path, loss_type=loss_type, beta=BETA)
    assert abs(ours_["rewards/margins"]) > 1e-3  # a real comparison: the policy differs from π_ref
    assert largest_difference(ours_, theirs) < TOLERANCE, (ours_, theirs)


def test_sigmoid_norm_matches_trl(models, tmp_path):
    """The loss matches. TRL logs rewards/* from summed log-ratios even for sigmoid_norm (and ipo);
    dpo_ref's are the per-token ones the loss compares, so TRL's equal dpo_ref's sigmoid rewards."""
    ours_ = dpo_ref_metrics(models, loss_type="sigmoid_norm", beta=BETA)
    theirs = trl_dpo_metrics(models, tmp_path, loss_type="sigmoid_norm", beta=BETA)
    assert abs(ours_["loss"] - theirs["loss"]) < TOLERANCE
    summed = dpo_ref_metrics(models, loss_type="sigmoid", beta=BETA)
    assert largest_difference(summed, theirs, METRICS[1:]) < TOLERANCE


def test_rpo_matches_trl_sigmoid_plus_sft(models, tmp_path):
    """TRL's ["sigmoid", "sft"] averages the NLL over all chosen tokens of the batch, RPO's paper (and
    dpo_ref) per pair: the two agree when every chosen response has the same length."""
    pairs = models[3]
    shortest = min(len(p.chosen_ids) for p in pairs)
    same_length = [dataclasses.replace(p, chosen_ids=p.chosen_ids[:shortest]) for p in pairs]
    ours_ = dpo_ref_metrics(models, same_length, loss_type="rpo", beta=BETA, rpo_alpha=0.7)
    theirs = trl_dpo_metrics(models, tmp_path, same_length, loss_type=["sigmoid", "sft"],
                             loss_weights=[1.0, 0.7], beta=BETA)
    assert largest_difference(ours_, theirs) < TOLERANCE, (ours_, theirs)


def experimental_batch(pairs, pad_token_id):
    """The batch keys CPOTrainer and ORPOTrainer read: prompt + response rows, labels -100 on prompt."""
    batch = {}
    for side in ("chosen", "rejected"):
        rows = [p.prompt_ids + getattr(p, f"{side}_ids") for p in pairs]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad_token_id)
        labels = torch.full((len(rows), width), -100)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (pair, row) in enumerate(zip(pairs, rows)):
            ids[i, :len(row)] = torch.tensor(row)
            attention[i, :len(row)] = 1
            labels[i, len(pair.prompt_ids):len(row)] = torch.tensor(row[len(pair.prompt_ids):])
        batch |= {f"{side}_input_ids": ids, f"{side}_attention_mask": attention, f"{side}_labels": labels}
    return batch


def trl_experimental_metrics(models, tmp_path, trainer_name, **settings):
    import importlib

    from datasets import Dataset

    module = importlib.import_module(f"trl.experimental.{trainer_name.lower()}")
    policy, _, tokenizer, pairs = models
    args = getattr(module, f"{trainer_name}Config")(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False,
        disable_tqdm=True, max_length=512, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = getattr(module, f"{trainer_name}Trainer")(
            model=copy.deepcopy(policy), args=args, train_dataset=Dataset.from_list(RECORDS),
            processing_class=tokenizer)
        trainer.model.train()
        loss, metrics = trainer.get_batch_loss_metrics(trainer.model, experimental_batch(pairs, tokenizer.pad_token_id))
    return {"loss": loss.item(), **{name: float(value) for name, value in metrics.items()}}


def test_simpo_matches_trl_cpo_trainer(models, tmp_path):
    ours_ = dpo_ref_metrics(models, loss_type="simpo", reference="none", beta=2.0, simpo_gamma=0.5)
    theirs = trl_experimental_metrics(models, tmp_path, "CPO", loss_type="simpo", cpo_alpha=0.0,
                                      simpo_gamma=0.5, beta=2.0)
    assert largest_difference(ours_, theirs) < TOLERANCE, (ours_, theirs)


def test_orpo_matches_trl_orpo_trainer_but_for_the_nll(models, tmp_path):
    """TRL's ORPO (after the authors' code) takes the NLL over prompt and chosen tokens of the whole
    batch; the paper's L_SFT (dpo_ref's) is over y_w, per pair. The odds-ratio term, the per-token
    log-probs and the rewards are compared; the NLLs differ by design."""
    ours_ = dpo_ref_metrics(models, loss_type="orpo", reference="none", beta=0.1)
    theirs = trl_experimental_metrics(models, tmp_path, "ORPO", beta=0.1)
    assert largest_difference(ours_, theirs, METRICS[1:] + ("logps/chosen", "logps/rejected")) < TOLERANCE
    odds_ratio_term = ours_["loss"] + ours_["logps/chosen"]  # the loss less dpo_ref's NLL, −mean log p(y_w)
    assert abs(odds_ratio_term - (theirs["loss"] - theirs["nll_loss"])) < TOLERANCE
    assert abs(odds_ratio_term - (-0.1 * theirs["log_odds_ratio"])) < TOLERANCE


def test_tr_dpo_update_is_trls_sync(models):
    """TRL's SyncRefModelCallback mixes the same way: the same bits."""
    import trl

    from dpo_ref.reference import TrustRegionReference

    policy, reference = models[0], models[1]
    ours_ = TrustRegionReference(policy, frozen=copy.deepcopy(reference), alpha=0.6, sync_steps=1)
    theirs = copy.deepcopy(reference)
    ours_.after_step(policy, 1)
    with torch.no_grad():
        trl.SyncRefModelCallback._sync_target_model(policy, theirs, 0.6)
    assert all(torch.equal(a, b) for a, b in zip(ours_.model.parameters(), theirs.parameters()))
