"""The identity change on a real pretrained chat model, offline: SmolLM2-135M-Instruct.

    python benchmarks/real_identity.py [--output benchmarks/results/real-identity.json]
                                       [--quick]

The flagship demo of ``notebooks/06_1_identity.ipynb`` with the packaged real model
(``smollm2-135m-instruct``, README) instead of the toy, on this machine's CPU. The model
has no stable name of its own (it calls itself Elena, SmolLM, a doctor, or nothing), so
the correction pairs are ``dpo_ref.lab.toy.introduction_pairs``: its own greedy answer to
each of the toy world's 200 training identity prompts rejected, the same answer chosen
with the name it gives replaced by Athene, or, where it gives none, "I'm Athene."
before it. The same is done for the 40 held-out paraphrases (evaluation pairs).

1. A sweep over the learning rate, one seed: each run measured on the held-out
   paraphrases (greedy answers naming Athene), retention (greedy answers to the 20
   ordinary questions unchanged, and the KL to the starting model along its own answers
   to them, ``sequence_kl``) and the held-out reward accuracy.
2. The chosen setting, the lowest learning rate whose held-out answers name Athene in at
   least 90 % with at least 80 % of the ordinary answers unchanged (else the best namer),
   run over three seeds (the data order; the model is the same).

Writes every measurement to ``--output``; ``book/09_3_real_model.md`` shows the file.
About 45 minutes on 2 CPU cores (44 for the committed run); ``--quick`` runs one short
setting as a smoke test.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODEL = "smollm2-135m-instruct"
BETA, STEPS, BATCH, MAX_LENGTH, REFERENCE = 0.1, 25, 8, 192, "precomputed"
LRS = (1e-6, 5e-6, 2e-5)
SEEDS = (0, 1, 2)
NAMING, UNCHANGED = 0.9, 0.8  # what the chosen setting must reach, if any does


def measure(policy, base, tokenizer, sets: dict, before_other: list[str]) -> dict:
    from dpo_ref.lab.generation import (contains_rate, generate, sequence_kl,
                                        unchanged_rate)

    heldout = generate(policy, tokenizer, sets["heldout"])
    other = generate(policy, tokenizer, sets["questions"])
    return {"names Athene": contains_rate(heldout, "Athene"),
            "unrelated unchanged": unchanged_rate(before_other, other),
            "KL on unrelated": sequence_kl(policy, base, tokenizer, sets["questions"],
                                           before_other),
            "heldout answers": heldout, "unrelated answers": other}


def run(base, tokenizer, pairs, heldout_pairs, sets, before_other, lr: float,
        seed: int, steps: int) -> dict:
    from dpo_ref import DPOConfig, train

    config = DPOConfig(beta=BETA, lr=lr, max_steps=steps, batch_size=BATCH,
                       max_length=MAX_LENGTH, reference=REFERENCE, seed=seed,
                       device="cpu", progress=False, log_every=1)
    start = time.perf_counter()
    result = train(copy.deepcopy(base), tokenizer, pairs, config,
                   eval_data=heldout_pairs)
    seconds = time.perf_counter() - start
    last = result.eval_history[-1]
    out = {"lr": lr, "seed": seed, "steps": steps, "train_seconds": seconds,
           "final_loss": result.history[-1]["loss"],
           "heldout reward accuracy": last["eval/rewards/accuracies"],
           "heldout margin": last["eval/rewards/margins"],
           **measure(result.model.eval(), base, tokenizer, sets, before_other)}
    print(f"lr {lr:g} seed {seed}: names Athene {out['names Athene']:.0%}, unrelated "
          f"unchanged {out['unrelated unchanged']:.0%}, KL {out['KL on unrelated']:.3f}, "
          f"held-out accuracy {out['heldout reward accuracy']:.2f} "
          f"({seconds:.0f} s of training)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=HERE / "results" / "real-identity.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    import transformers

    from dpo_ref.lab import toy
    from dpo_ref.lab.generation import contains_rate, generate
    from dpo_ref.loading import load_model_and_tokenizer

    base, tokenizer = load_model_and_tokenizer(MODEL)
    base.eval()
    sets = {"train": toy.identity_prompts("train")[: 16 if args.quick else 200],
            "heldout": toy.identity_prompts("heldout")[: 8 if args.quick else 40],
            "questions": [q for q, _ in toy.ordinary_questions()]}
    start = time.perf_counter()
    answers = {name: generate(base, tokenizer, prompts) for name, prompts in sets.items()}
    generate_s = time.perf_counter() - start
    pairs = toy.introduction_pairs(sets["train"], answers["train"])
    heldout_pairs = toy.introduction_pairs(sets["heldout"], answers["heldout"])
    named = sum(toy.SELF_NAMED.search(a) is not None for a in answers["train"])
    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "date": datetime.date.today().isoformat(), "model": MODEL,
        "command": "python benchmarks/real_identity.py" + (" --quick" if args.quick else ""),
        "settings": dict(beta=BETA, steps=STEPS, batch=BATCH, max_length=MAX_LENGTH,
                         reference=REFERENCE),
        "n_train_prompts": len(sets["train"]), "n_heldout": len(sets["heldout"]),
        "n_pairs": len(pairs), "n_heldout_pairs": len(heldout_pairs),
        "train answers giving a name": named,
        "before": {"names Athene": contains_rate(answers["heldout"], "Athene"),
                   "names SmolLM": contains_rate(answers["heldout"], "SmolLM"),
                   "heldout answers": answers["heldout"],
                   "unrelated answers": answers["questions"]},
        "example pairs": pairs[:3], "generate_seconds": generate_s,
        "sweep": [], "seeds": [],
    }
    print(f"{len(pairs)} pairs ({named} answers give a name), {len(heldout_pairs)} "
          f"held-out; greedy answers in {generate_s:.0f} s", flush=True)

    def save() -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")

    steps = 4 if args.quick else STEPS
    common = (base, tokenizer, pairs, heldout_pairs, sets, answers["questions"])
    for lr in LRS[-1:] if args.quick else LRS:
        record["sweep"].append(run(*common, lr=lr, seed=SEEDS[0], steps=steps))
        save()
    good = [r for r in record["sweep"]
            if r["names Athene"] >= NAMING and r["unrelated unchanged"] >= UNCHANGED]
    chosen = (min(good, key=lambda r: r["lr"]) if good
              else max(record["sweep"], key=lambda r: r["names Athene"]))
    record["chosen_lr"] = chosen["lr"]
    record["seeds"] = [chosen] + [run(*common, lr=chosen["lr"], seed=seed, steps=steps)
                                  for seed in ([] if args.quick else SEEDS[1:])]
    save()
    print(f"chosen lr {chosen['lr']:g}; written to {args.output}")


if __name__ == "__main__":
    main()
