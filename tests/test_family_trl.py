"""The family against TRL 1.16 wherever TRL has the loss: the same tiny model (the toy, its
policy nudged away from π_ref), the same four pairs (the same token ids), first-step loss and
rewards/* of ``dpo_ref.trainer.batch_loss`` against TRL's trainer on that batch
(``DPOTrainer.compute_loss``; ``CPOTrainer``/``ORPOTrainer``, in ``trl.experimental``, through
``get_batch_loss_metrics``). Where the two differ by design the test says so and compares what
is comparable. TRL is a test dependency: missing, these tests fail.
"""

import contextlib
import copy
import dataclasses
import warnings

import pytest
import torch

from conftest import FOUR_PAIRS as RECORDS
from dpo_ref import DPOConfig

BETA = 0.3

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
