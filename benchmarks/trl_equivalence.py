"""dpo_ref against TRL's DPOTrainer on the same model and pairs, step by step.

Both trainers run the same few optimizer steps on the same identity pairs (each step
sees every pair: the batch is the whole set, so shuffling cannot differ), with the same
β, learning rate, schedule, clipping and optimizer (``torch.optim.AdamW``: TRL is set to
``adamw_torch`` instead of its fused default). Compared, for each reference strategy
(copy, precomputed, LoRA) and each of dpo_ref's row layouts (full or chunked log-probs,
prompt sharing on or off):

- the token ids of every pair, as each trainer's own tokenizer pipeline makes them;
- per step, TRL's metrics (loss, rewards/*, logps/*), computed before the step's update;
- the trained weights, as ``‖θ_dpo_ref − θ_TRL‖ / ‖θ_dpo_ref − θ_0‖``: the difference
  between the two trainers in units of the update itself;
- the greedy answers of the trained models (copy reference).

Two dpo_ref layouts of the same run compute the same numbers in a different order:
their difference is the float noise a comparison can expect, reported beside TRL's.

    python benchmarks/trl_equivalence.py             # SmolLM2-135M-Instruct, 3 steps
    python benchmarks/trl_equivalence.py --model toy --steps 5

TRL is a benchmark and test dependency; nothing in dpo_ref imports it. LoRA adapters
are drawn from the same seed in both trainers; their starting weights are compared too.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)
# dpo_ref runs: a name, its reference strategy and layout
RUNS = {
    "copy, full logits, 2B rows": dict(
        reference="copy", chunked_logps=False, prompt_sharing=False
    ),
    "copy, chunked, 2B rows": dict(
        reference="copy", chunked_logps=True, prompt_sharing=False
    ),
    "copy, full logits, shared prompt": dict(
        reference="copy", chunked_logps=False, prompt_sharing=True
    ),
    "copy, chunked, shared prompt": dict(
        reference="copy", chunked_logps=True, prompt_sharing=True
    ),
    "precomputed, chunked, shared prompt": dict(
        reference="precomputed", chunked_logps=True, prompt_sharing=True
    ),
    "LoRA, chunked, shared prompt": dict(
        reference="lora", chunked_logps=True, prompt_sharing=True
    ),
}
TRL_RUNS = {"copy": {}, "precomputed": dict(precompute_ref_log_probs=True), "lora": {}}


def identity_records(n: int) -> list[dict]:
    """``n`` identity pairs: "I am Athene…" chosen, the same answer naming SmolLM
    rejected."""
    from dpo_ref.data import conversational_record
    from dpo_ref.lab.toy import identity_answer, identity_prompts

    prompts = identity_prompts("train")[:n]
    return [
        conversational_record(
            p, identity_answer(p, "Athene"), identity_answer(p, "SmolLM")
        )
        for p in prompts
    ]


def lora_settings() -> dict:
    from dpo_ref import DPOConfig

    defaults = DPOConfig()
    return dict(
        r=defaults.lora_r,
        lora_alpha=defaults.lora_alpha,
        lora_dropout=defaults.lora_dropout,
        target_modules=defaults.lora_target_modules,
    )


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights by name, without the PEFT wrapper's prefix."""
    return {
        n.replace("base_model.model.", ""): p.detach().clone()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def run_dpo_ref(model, tokenizer, records, settings: dict, args) -> dict:
    from dpo_ref import DPOConfig, train

    config = DPOConfig(
        beta=args.beta,
        lr=args.lr,
        batch_size=len(records),
        max_steps=args.steps,
        seed=args.seed,
        progress=False,
        lora=settings["reference"] == "lora",
        **settings,
    )
    start = time.perf_counter()
    result = train(copy.deepcopy(model), tokenizer, records, config)
    steps = [{m: float(h[m]) for m in METRICS} for h in result.history]
    return {
        "model": result.model,
        "steps": steps,
        "seconds": time.perf_counter() - start,
    }


def run_trl(model, tokenizer, records, reference: str, args) -> dict:
    """TRL's DPOTrainer as a user writes it, with the run's settings; LoRA via
    ``peft_config``."""
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback

    class Start(
        TrainerCallback
    ):  # the weights training starts from (LoRA: the fresh adapters)
        def on_train_begin(self, _args, _state, _control, model=None, **_):
            self.weights = trainable(model)

    out = tempfile.mkdtemp()
    config = trl.DPOConfig(
        output_dir=out,
        beta=args.beta,
        learning_rate=args.lr,
        max_steps=args.steps,
        per_device_train_batch_size=len(records),
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        seed=args.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        max_length=None,
        disable_tqdm=True,
        **TRL_RUNS[reference],
    )
    peft = (
        LoraConfig(task_type="CAUSAL_LM", **lora_settings())
        if reference == "lora"
        else None
    )
    start_weights = Start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(
            args.seed
        )  # dpo_ref draws its LoRA adapters right after this too
        trainer = trl.DPOTrainer(
            model=copy.deepcopy(model),
            args=config,
            peft_config=peft,
            train_dataset=Dataset.from_list(records),
            processing_class=tokenizer,
            callbacks=[start_weights],
        )
        ids = [
            {k: row[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
            for row in trainer.train_dataset
        ]
        begin = time.perf_counter()
        trainer.train()
    steps = [
        {m: float(log[m]) for m in METRICS}
        for log in trainer.state.log_history
        if "rewards/chosen" in log
    ]
    return {
        "model": trainer.model,
        "steps": steps,
        "ids": ids,
        "start": start_weights.weights,
        "seconds": time.perf_counter() - begin,
    }


def weight_gap(
    a: torch.nn.Module, b: torch.nn.Module, start: dict[str, torch.Tensor]
) -> float:
    """‖θ_a − θ_b‖ / ‖θ_a − θ_0‖ over the trainable weights."""
    wa, wb = trainable(a), trainable(b)
    assert wa.keys() == wb.keys() == start.keys(), (
        "the two runs train different weights"
    )
    gap = math.sqrt(sum(float((wa[n] - wb[n]).double().pow(2).sum()) for n in wa))
    moved = math.sqrt(sum(float((wa[n] - start[n]).double().pow(2).sum()) for n in wa))
    return gap / moved


def metric_gap(a: list[dict], b: list[dict]) -> dict[str, float]:
    """Largest difference per metric over the steps."""
    assert len(a) == len(b), f"{len(a)} against {len(b)} logged steps"
    return {m: max(abs(x[m] - y[m]) for x, y in zip(a, b)) for m in METRICS}


def greedy(model, tokenizer, prompts: list[str]) -> list[str]:
    from dpo_ref.lab.generation import generate

    model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    return generate(model, tokenizer, prompts, max_new_tokens=24)


def compare(model_name: str, args, runs: dict = RUNS, log=print) -> dict:
    """Every dpo_ref run of ``runs`` beside TRL's run with the same reference."""
    from dpo_ref.data import prepare_pairs
    from dpo_ref.loading import load_model_and_tokenizer
    from dpo_ref.lab.toy import identity_prompts

    model, tokenizer = load_model_and_tokenizer(model_name)
    records = identity_records(args.pairs)
    ours_ids = [
        dict(
            prompt_ids=p.prompt_ids,
            chosen_ids=p.chosen_ids,
            rejected_ids=p.rejected_ids,
        )
        for p in prepare_pairs(records, tokenizer, 512).pairs
    ]
    questions = identity_prompts("heldout")[:2] + ["What is the capital of France?"]
    trl_runs = {}
    for reference in dict.fromkeys(settings["reference"] for settings in runs.values()):
        trl_runs[reference] = run_trl(model, tokenizer, records, reference, args)
        log(f"TRL, {reference} reference: {trl_runs[reference]['seconds']:.1f} s")
    result = {
        "model": model_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocabulary": len(tokenizer),
        "pairs": len(records),
        "steps": args.steps,
        "beta": args.beta,
        "lr": args.lr,
        "same_token_ids": all(ours_ids == run["ids"] for run in trl_runs.values()),
        "trl": {
            k: {"steps": v["steps"], "seconds": v["seconds"]}
            for k, v in trl_runs.items()
        },
        "runs": {},
    }
    start = {k: v["start"] for k, v in trl_runs.items()}
    first = None
    for name, settings in runs.items():
        reference = settings["reference"]
        ours = run_dpo_ref(model, tokenizer, records, settings, args)
        theirs = trl_runs[reference]
        base = start[reference] if reference == "lora" else trainable(model)
        row = {
            "seconds": ours["seconds"],
            "steps": ours["steps"],
            "metric_gap_trl": metric_gap(ours["steps"], theirs["steps"]),
            "weight_gap_trl": weight_gap(ours["model"], theirs["model"], base),
        }
        if reference == "lora":
            pass  # other weights than the full runs: no layout to set it beside
        elif first is None:
            first = (name, ours["model"])
        else:  # float noise: the same run in another layout
            row["weight_gap_layout"] = weight_gap(ours["model"], first[1], base)
            row["layout_baseline"] = first[0]
        if reference == "lora":
            row["same_lora_start"] = all(
                torch.equal(w, base[n])
                for n, w in dpo_ref_lora_start(model, args).items()
            )
        if name == "copy, full logits, 2B rows":
            row["greedy"] = greedy(ours["model"], tokenizer, questions)
            row["greedy_trl"] = greedy(theirs["model"], tokenizer, questions)
        result["runs"][name] = row
        log(
            f"{name}: {ours['seconds']:.1f} s; largest metric gap "
            f"{max(row['metric_gap_trl'].values()):.2e}; "
            f"weights {row['weight_gap_trl']:.2e} of the update"
            + (
                f" (layouts: {row['weight_gap_layout']:.2e})"
                if "weight_gap_layout" in row
                else ""
            )
        )
    return result


def dpo_ref_lora_start(model, args) -> dict[str, torch.Tensor]:
    """The adapters dpo_ref's ``train`` starts from: drawn right after
    ``torch.manual_seed``."""
    from dpo_ref import DPOConfig
    from dpo_ref.policy import wrap_lora

    torch.manual_seed(args.seed)
    return trainable(wrap_lora(copy.deepcopy(model), DPOConfig(lora=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers
    import trl

    result = compare(args.model, args)
    result |= {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "command": "python " + " ".join(sys.argv),
    }
    output = args.output or HERE / "results" / f"trl-equivalence-{args.model}.json"
    output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {output}")


if __name__ == "__main__":
    main()
