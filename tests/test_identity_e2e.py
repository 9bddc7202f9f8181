"""End to end on the toy world: DPO turns "I'm Llama" into "I'm Athene" (correction-method pairs)."""

import json

import pytest
import torch

from dpo_ref.lab import toy as toy_world
from dpo_ref.data import prepare_pairs
from dpo_ref.lab.generation import contains_rate, generate, unchanged_rate
from dpo_ref.loading import load_model_and_tokenizer
from dpo_ref import DPOConfig, train


def correction_pairs(model, tokenizer, prompts):
    """The model's own answers as rejected, the same answers with the name corrected as chosen."""
    return toy_world.correction_pairs(prompts, generate(model, tokenizer, prompts))


@pytest.mark.slow
def test_dpo_changes_identity_and_keeps_other_answers(toy, tmp_path):
    model, tokenizer = toy
    heldout = toy_world.identity_prompts("heldout")
    questions = [q for q, _ in toy_world.ordinary_questions()]
    before = generate(model, tokenizer, heldout)
    before_other = generate(model, tokenizer, questions)
    assert contains_rate(before, "Llama") >= 0.8

    train_pairs = correction_pairs(model, tokenizer, toy_world.identity_prompts("train")[:200])
    eval_pairs = correction_pairs(model, tokenizer, heldout)
    config = DPOConfig(beta=0.1, lr=1e-4, max_steps=100, batch_size=8, max_length=128, log_every=10,
                       progress=False, output_dir=str(tmp_path / "run"))
    result = train(model, tokenizer, train_pairs, config, eval_data=eval_pairs)

    after = generate(result.model, tokenizer, heldout)
    after_other = generate(result.model, tokenizer, questions)
    assert contains_rate(after, "Athene") >= 0.9, after
    assert contains_rate(after, "Llama") <= 0.1
    assert unchanged_rate(before_other, after_other) >= 0.9
    final_eval = result.eval_history[-1]
    assert final_eval["eval/rewards/accuracies"] >= 0.9
    assert final_eval["eval/rewards/margins"] > 0

    names = {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
             "logps/chosen", "logps/rejected", "grad_norm", "learning_rate", "step"}
    assert names <= set(result.history[0])
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged == result.history and len(logged) == 10

    # The saved run reloads in plain transformers and gives the same logits.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path / "run")
    ids = torch.tensor([reloaded_tok.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, result.model.eval()(input_ids=ids).logits, atol=1e-5)
    assert (tmp_path / "run" / "model.safetensors").exists() and (tmp_path / "run" / "dpo_config.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["lora", "precomputed"])
def test_other_reference_strategies_train_and_save(toy, tmp_path, reference):
    model, tokenizer = toy
    pairs = correction_pairs(model, tokenizer, toy_world.identity_prompts("train")[:64])
    config = DPOConfig(beta=0.1, lr=5e-4 if reference == "lora" else 1e-4, max_steps=30, batch_size=8, max_length=128,
                       reference=reference, progress=False, output_dir=str(tmp_path / reference), eval_every=15)
    result = train(model, tokenizer, pairs, config, eval_fn=lambda m: {"training": float(m.training)})
    assert [(r["step"], r["training"]) for r in result.eval_history] == [(0, 1.0), (15, 1.0), (30, 1.0)]
    assert result.history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    assert result.history[-1]["rewards/margins"] > result.history[0]["rewards/margins"]
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / reference)  # LoRA is merged by default
    ids = torch.tensor([[tokenizer.bos_token_id, 10, 20, 30]])
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, result.model.eval()(input_ids=ids).logits, atol=1e-4)


def test_hub_loading_path_on_a_local_save_pretrained_folder(toy, tmp_path):
    model, tokenizer = toy
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    again, tok = load_model_and_tokenizer(str(tmp_path / "m"))
    ids = torch.tensor([[tokenizer.bos_token_id, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, model(input_ids=ids).logits)
    assert tok.chat_template == tokenizer.chat_template
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in (tmp_path / "m").iterdir())


def small_pairs(n=16):
    return [{"prompt": [{"role": "user", "content": f"Who are you? ({i})"}], "chosen": [{"role": "assistant", "content": "I am Athene."}],
             "rejected": [{"role": "assistant", "content": "I am Llama."}]} for i in range(n)]


def test_fp16_overflowing_steps_are_skipped_not_fatal(toy, monkeypatch):
    import functools

    model, tokenizer = toy
    # An absurd initial loss scale makes the first fp16 steps overflow, as real fp16 runs do early on.
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0**100))
    config = DPOConfig(precision="fp16", device="cpu", max_steps=20, batch_size=4, log_every=10, progress=False, lr=1e-4)
    result = train(model, tokenizer, small_pairs(), config)
    assert result.history[0]["skipped_steps"] > 0
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)


def test_non_finite_loss_stops_the_run_naming_the_step(toy, monkeypatch, tmp_path):
    """Checked every step, before the update: the poisoned step is named even between logging steps,
    its update never reaches the weights, and the last checkpoint stays the latest."""
    from safetensors.torch import load_file

    import dpo_ref.trainer as trainer_module

    model, tokenizer = toy
    calls = {"n": 0}
    real = trainer_module.preference_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        losses, c, r = real(*args, **kwargs)
        return (losses * float("nan") if calls["n"] == 3 else losses), c, r

    monkeypatch.setattr(trainer_module, "preference_loss", poisoned)
    config = DPOConfig(max_steps=5, batch_size=4, lr=1e-3, log_every=5, save_every=2, output_dir=str(tmp_path), progress=False)
    with pytest.raises(FloatingPointError, match="at step 3 .*not applied"):
        train(model, tokenizer, small_pairs(), config)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000002"]
    assert not (tmp_path / "dpo_config.json").exists()  # not passed off as a finished run
    saved = load_file(tmp_path / "checkpoints" / "step-0000002" / "state.safetensors")
    for name, p in model.named_parameters():  # still the step-2 weights: step 3's NaN update was refused
        assert torch.equal(p.detach(), saved[f"model.{name}"]), name


def test_half_precision_checkpoints_train_in_fp32(toy):
    model, tokenizer = toy
    model = model.to(torch.bfloat16)
    result = train(model, tokenizer, small_pairs(), DPOConfig(max_steps=3, batch_size=4, lr=1e-4, progress=False))
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert result.history[-1]["loss"] < 0.6931


def test_same_seed_same_metrics_and_weights(toy_dir):
    runs = []
    for _ in range(2):
        model, tokenizer = load_model_and_tokenizer(str(toy_dir))
        result = train(model, tokenizer, small_pairs(), DPOConfig(max_steps=4, batch_size=4, lr=1e-4, progress=False))
        runs.append(([{k: v for k, v in r.items() if k != "elapsed_s"} for r in result.history],
                     [p.detach().clone() for p in result.model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
