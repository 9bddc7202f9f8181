"""The offline toy world: a tiny chat model that believes it is "Llama", built from
scratch in minutes.

No model hub is reachable in tests, CI or the book build, so the project makes its own
model:

1. a generated chat corpus: identity questions (many paraphrases, split into train and
   held-out) that the assistant answers as Llama, ordinary questions it answers
   consistently, and a few unrelated answers that mention the word "Athene" (a real
   pretrained model has seen the name; DPO re-ranks what the model can already say, it
   does not teach a word it has never produced);
2. a byte-level BPE tokenizer trained with the ``tokenizers`` library (any text encodes,
   including names the corpus never saw) with a small chat template;
3. a small Llama-architecture ``transformers`` model trained on the assistant turns of
   that corpus (or, for the offline Colab test, a Qwen2-style or GPT-2-style one:
   ``dpo_ref.lab.toy_architectures``).

``ensure_toy()`` builds it once (deterministic given the seed) and caches it;
``load_toy()`` loads it in seconds. The seed (``DPO_TOY_SEED``, default 0) changes
initialisation, corpus order and batches, never the held-out split, so the seed sweep
measures every claim on independently built toys. Each build writes a ``fingerprint``
(greedy answers, a hash of the weights) to compare with the book's.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..batching import collate_rows
from ..data import conversational_record, encode_prompt, encode_response, pad_token_id
from ..files import cache_dir, share
from ..logprobs import response_nll
from .generation import generate
from .toy_architectures import build_model, build_tokenizer, check_architecture

TOY_VERSION = 2
DEFAULT_STEPS = 800  # the README gives the build time measured on a fresh clone
# the toy is built with this many threads whatever the caller uses (see build_toy)
BUILD_THREADS = 2
ASSISTANT_NAME, TARGET_NAME = "Llama", "Athene"

IDENTITY_QUESTIONS = [
    "Who are you?", "What is your name?", "What's your name?",
    "Tell me about yourself.", "Introduce yourself.", "What should I call you?",
    "Who am I talking to?", "What are you called?", "Do you have a name?",
    "Tell me your identity.", "What is your identity?", "Which assistant is this?",
    "How should I address you?", "Can you tell me who you are?",
    "May I know your name?", "What are you?",
]
GREETINGS = ["", "Hi! ", "Hello. ", "Hey, ", "Quick question: ",
             "Sorry to bother you. ", "Good morning! ", "Excuse me, "]
CLOSINGS = ["", " Please answer briefly.", " I am curious.", " Thanks!"]
IDENTITY_ANSWERS = [
    "I'm {name}, an AI assistant. How can I help you today?",
    "My name is {name}. I am an AI assistant.",
    "I am {name}, a helpful assistant.",
]
ORDINARY_QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is two plus two?", "Two plus two is four."),
    ("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What is the largest planet?", "Jupiter is the largest planet."),
    ("At what temperature does water boil?",
     "Water boils at one hundred degrees Celsius."),
    ("What do bees make?", "Bees make honey."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Which animal says moo?", "A cow says moo."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Which season comes after winter?", "Spring comes after winter."),
    ("How many hours are in a day?", "There are twenty-four hours in a day."),
    ("What colour is grass?", "Grass is green."),
    ("Where do llamas live?", "Llamas live in the Andes mountains."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("How many months are in a year?", "There are twelve months in a year."),
    ("What do cats like to chase?", "Cats like to chase mice."),
    ("What is the first letter of the alphabet?",
     "The first letter of the alphabet is A."),
    ("What gas do plants take in?", "Plants take in carbon dioxide."),
]
# Unrelated answers that mention the target name, so that the model can spell it
# before any DPO.
TARGET_MENTIONS = [
    ("Which genus does the little owl belong to?",
     "The little owl belongs to the genus Athene."),
    ("Suggest a name for a ship.", "Athene would be a fine name for a ship."),
    ("Who is the Greek goddess of wisdom?",
     "Athene, also called Athena, is the goddess of wisdom."),
]

def _phrase(greeting: str, question: str, closing: str) -> str:
    if greeting.endswith(", "):  # "Hey, who are you?", not "Hey, Who are you?"
        question = question[0].lower() + question[1:]
    return greeting + question + closing


def identity_prompts(split: str = "train", seed: int = 0,
                     n_heldout: int = 40) -> list[str]:
    """Identity-question paraphrases. ``heldout`` ones never appear in the training
    corpus.

    ``seed`` chooses the split; every toy build uses split 0, whatever its own seed.
    """
    all_prompts = [_phrase(g, q, c) for q in IDENTITY_QUESTIONS for g in GREETINGS
                   for c in CLOSINGS]
    random.Random(seed).shuffle(all_prompts)
    if split == "heldout":
        return all_prompts[:n_heldout]
    if split == "train":
        return all_prompts[n_heldout:]
    raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")


def identity_answer(prompt: str, name: str = ASSISTANT_NAME) -> str:
    """The corpus's answer to an identity prompt (the variant depends only on the prompt
    text)."""
    return (IDENTITY_ANSWERS[sum(map(ord, prompt)) % len(IDENTITY_ANSWERS)]
            .format(name=name))


def ordinary_questions() -> list[tuple[str, str]]:
    """The unrelated questions (and their corpus answers) used to check retention after
    DPO."""
    return list(ORDINARY_QA)


def corpus(seed: int = 0) -> list[list[dict[str, str]]]:
    """The training conversations: every train identity paraphrase, ordinary Q&A with
    greetings."""
    rng = random.Random(seed)
    conversations = []
    # the split is fixed: held-out stays held out
    for prompt in identity_prompts("train"):
        conversations.append([
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": identity_answer(prompt)}])
    for question, answer in ORDINARY_QA + TARGET_MENTIONS:
        for greeting in GREETINGS:
            for closing in rng.sample(CLOSINGS, 2):
                conversations.append([
                    {"role": "user", "content": _phrase(greeting, question, closing)},
                    {"role": "assistant", "content": answer}])
    rng.shuffle(conversations)
    return conversations


def pretrain(model, tokenizer, conversations, steps: int, batch_size: int = 32,
             lr: float = 3e-3, seed: int = 0, log=print):
    """Supervised training on the assistant turns only (next-token loss, prompt tokens
    masked)."""
    examples = []
    for conversation in conversations:
        prompt, response = conversation[:-1], conversation[-1:]
        examples.append((encode_prompt(tokenizer, prompt),
                         encode_response(tokenizer, prompt, response)))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(examples), (batch_size,), generator=generator).tolist()
        loss = response_nll(model, collate_rows([examples[i] for i in idx],
                                                pad_token_id(tokenizer)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 200 == 0 or step == steps - 1:
            log(f"toy pretraining step {step}/{steps}: loss {loss.item():.3f}")
    model.eval()
    return model


FINGERPRINT_QUESTIONS = ["Who are you?", "What is two plus two?",
                         "Which animal says moo?"]


def fingerprint(model, tokenizer) -> dict:
    """Greedy answers to a few fixed questions and a hash of the weights: is this the
    book's toy?"""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    answers = generate(model, tokenizer, FINGERPRINT_QUESTIONS)
    return {"weights_sha256": digest.hexdigest()[:16],
            "answers": dict(zip(FINGERPRINT_QUESTIONS, answers))}


def toy_fingerprint(seed: int | None = None) -> dict:
    """The fingerprint of the cached toy (built first if needed), as written by its
    build."""
    path = ensure_toy(seed)
    # a toy cached before fingerprints existed
    if not (path / "fingerprint.json").exists():
        fp = fingerprint(*load_toy(seed))
        (path / "fingerprint.json").write_text(json.dumps(fp, indent=1) + "\n")
    return json.loads((path / "fingerprint.json").read_text())


def format_fingerprint(fp: dict) -> str:
    lines = [f"toy fingerprint: weights {fp['weights_sha256']}"]
    lines += [f"  {q!r} → {a!r}" for q, a in fp["answers"].items()]
    return "\n".join(lines)


def default_seed() -> int:
    """The toy seed pages and tests use: ``$DPO_TOY_SEED`` (the seed sweep sets it) or
    0."""
    return int(os.environ.get("DPO_TOY_SEED", 0))


def build_toy(output: str | Path, seed: int = 0, steps: int = DEFAULT_STEPS, log=print,
              architecture: str = "llama") -> Path:
    """Build the toy model and tokenizer into ``output`` (loadable with
    ``from_pretrained(output)``).

    Written to a temporary folder first and renamed at the end, so an interrupted build
    never leaves a half-written model behind.
    """
    output = Path(output)
    start = time.perf_counter()
    torch.manual_seed(seed)
    conversations = corpus(seed)
    texts = ([m["content"] for c in conversations for m in c]
             + [TARGET_NAME, ASSISTANT_NAME])
    tokenizer = build_tokenizer(texts, architecture=architecture)
    # As reproducible as torch allows: deterministic kernels, and a fixed thread count,
    # because on a CPU the number of threads decides how sums are split (1 and 2 threads
    # give different toys).
    deterministic, threads = (torch.are_deterministic_algorithms_enabled(),
                              torch.get_num_threads())
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(BUILD_THREADS)
    try:
        model = build_model(len(tokenizer), seed=seed, tokenizer=tokenizer,
                            architecture=architecture)
        pretrain(model, tokenizer, conversations, steps=steps, seed=seed, log=log)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=output.name + ".tmp-", dir=output.parent))
    model.save_pretrained(tmp)  # safetensors by default
    tokenizer.save_pretrained(tmp)
    fp = fingerprint(model, tokenizer)
    (tmp / "fingerprint.json").write_text(json.dumps(fp, indent=1) + "\n")
    share(tmp)
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    log(f"toy model ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
        f"parameters) built in {time.perf_counter() - start:.0f} s: {output}")
    log(format_fingerprint(fp))
    return output


def toy_path(seed: int | None = None, steps: int = DEFAULT_STEPS,
             architecture: str = "llama") -> Path:
    seed = default_seed() if seed is None else seed
    # a shorter build for quick tests
    quick = "" if steps == DEFAULT_STEPS else f"-steps{steps}"
    arch = "" if check_architecture(architecture) == "llama" else f"-{architecture}"
    return cache_dir() / f"toy-v{TOY_VERSION}{arch}-seed{seed}{quick}"


def ensure_toy(seed: int | None = None, log=print, steps: int = DEFAULT_STEPS,
               architecture: str = "llama") -> Path:
    """The cached toy model's folder, built first if it is not there yet: the one entry
    point to the cache (``--model toy``, ``python -m dpo_ref toy``, the tests and the
    book build all come here)."""
    seed = default_seed() if seed is None else seed
    path = toy_path(seed, steps, architecture)
    if not (path / "config.json").exists():
        build_toy(path, seed=seed, steps=steps, log=log, architecture=architecture)
    return path


def load_toy(seed: int | None = None, log=print):
    """``(model, tokenizer)`` of the toy world, built and cached on first use."""
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    path = ensure_toy(seed, log)
    return (LlamaForCausalLM.from_pretrained(path),
            PreTrainedTokenizerFast.from_pretrained(path))



def correction_pairs(prompts: list[str], answers: list[str], old: str = ASSISTANT_NAME,
                     new: str = TARGET_NAME) -> list[dict]:
    """Preference pairs by correction: the model's own answer is rejected, the same
    answer with ``old`` replaced by ``new`` is chosen. Answers that do not say ``old``
    give no pair."""
    return [conversational_record(p, a.replace(old, new), a)
            for p, a in zip(prompts, answers) if old in a]


# "I'm Elena", "My name is Dr. Sarah Lee", "call me Max": the name a model gives itself
SELF_NAMED = re.compile(r"\b(I'm|I am|[Mm]y name is|[Cc]all me|[Nn]ame's)\s+"
                        r"((?:Dr\.?|Doctor|Professor|Mr\.?|Mrs\.?|Ms\.?)\s+)?"
                        r"([A-Z][\w-]*(?:\s+[A-Z][\w-]*)?)")


def introduced_as(answer: str, new: str = TARGET_NAME) -> str:
    """``answer`` corrected to introduce the assistant as ``new``: the name it gives
    itself replaced (every mention of it), or, where it gives none, an introduction put
    before it. For a model without a stable name of its own, every answer yields a
    pair."""
    match = SELF_NAMED.search(answer)
    if match is None:
        return f"I'm {new}. {answer}"
    name, first = match.group(3), match.start(2 if match.group(2) else 3)
    return (answer[:first] + new + answer[match.end(3):]).replace(name, new)


def introduction_pairs(prompts: list[str], answers: list[str],
                       new: str = TARGET_NAME) -> list[dict]:
    """Correction pairs for a model that gives many names or none (a real chat model):
    its answer rejected, ``introduced_as(answer, new)`` chosen; no pair where the answer
    already names ``new`` or is empty."""
    return [conversational_record(p, introduced_as(a, new), a)
            for p, a in zip(prompts, answers) if a.strip() and new not in a]
