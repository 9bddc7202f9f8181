"""Command line: ``python -m dpo_ref toy --output DIR`` and
``python -m dpo_ref train ...``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from .checkpoint import CheckpointError
from .config import LR_SCHEDULES, PRECISIONS, REFERENCES, ConfigError, DPOConfig
from .data import DataError
from .distributed import from_launcher, launched_rank
from .files import share
from .loading import ModelLoadError
from .losses import LOSS_TYPES, SETTINGS, VARIANTS
from .lab.toy_architectures import ARCHITECTURES


DEFAULTS = {f.name: f.default for f in fields(DPOConfig)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The choices (``--loss-type``, ``--reference``…) are shown from
    ``dpo_ref.config``'s lists and checked once, by ``DPOConfig``, so a wrong value gets
    the same one-line error as any bad setting."""
    parser = argparse.ArgumentParser(prog="python -m dpo_ref",
                                     description="A small, readable DPO trainer.")
    sub = parser.add_subparsers(dest="command", required=True)

    toy = sub.add_parser("toy", help="build the offline toy chat model (model + "
                         "tokenizer) into a folder")
    toy.add_argument("--output", help="folder to copy it to (load it with "
                     "from_pretrained); it is built once into the cache that "
                     "load_toy() and --model toy use, and reused from there")
    toy.add_argument("--seed", type=int, help="default: $DPO_TOY_SEED or 0")
    toy.add_argument("--steps", type=int, help="pretraining steps (default 800)")
    toy.add_argument("--architecture", default="llama", metavar="|".join(ARCHITECTURES),
                     help="llama (the course's toy), or the same world as a "
                     "Qwen2-style ChatML model or a GPT-2-style base model without "
                     "chat template and pad token (for offline tests)")

    tr = sub.add_parser("train", help="train a model with DPO on a JSONL file of "
                        "preference pairs")
    tr.add_argument("--model", help="hub id, local save_pretrained folder, 'toy', a "
                    "local .gguf file, or smollm2-135m-instruct (the packaged real "
                    "model)")
    tr.add_argument("--data", help="JSONL with prompt/chosen/rejected (standard or "
                    "conversational)")
    tr.add_argument("--eval-data", help="held-out JSONL evaluated at the end (and "
                    "every --eval-every steps)")
    tr.add_argument("--output", help="folder for the trained model, tokenizer and "
                    "metrics.jsonl")
    tr.add_argument("--save-every", type=int, help="write a checkpoint every N steps "
                    "(and at the end) into OUTPUT/checkpoints")
    tr.add_argument("--resume", metavar="OUTPUT_DIR",
                    help="continue the run in OUTPUT_DIR from its latest checkpoint, "
                    "with the arguments it was started with")
    tr.add_argument("--config", help="JSON file of DPOConfig fields; command-line "
                    "flags override it")
    tr.add_argument("--beta", type=float)
    tr.add_argument("--loss-type", metavar="|".join(LOSS_TYPES))
    averaged = [n for n, v in VARIANTS.items() if v.per_token or v.mean_by_default]
    tr.add_argument("--length-normalize", action=argparse.BooleanOptionalAction,
                    default=None, help="per-token mean log-probs (default: "
                    f"{', '.join(averaged)} only)")
    for name, setting in SETTINGS.items():  # the variants' settings, from losses
        tr.add_argument("--" + name.replace("_", "-"), type=float,
                        help=f"{setting.help} (default {setting.default:g})")
    tr.add_argument("--steps", type=int, dest="max_steps")
    tr.add_argument("--epochs", type=float)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--grad-accum-steps", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--warmup-steps", type=int)
    tr.add_argument("--lr-schedule", metavar="|".join(LR_SCHEDULES))
    tr.add_argument("--max-length", type=int)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--reference", metavar="|".join(REFERENCES),
                    help="π_ref: tr moves a copy toward the policy (TR-DPO); none: "
                    "for simpo, orpo")
    tr.add_argument("--ref-model-mixup-alpha", type=float,
                    help="tr: θ_ref ← α·θ + (1 − α)·θ_ref "
                    f"(default {DEFAULTS['ref_model_mixup_alpha']})")
    tr.add_argument("--ref-model-sync-steps", type=int,
                    help="tr: steps τ between updates "
                    f"(default {DEFAULTS['ref_model_sync_steps']})")
    tr.add_argument("--lora", action="store_true", default=None,
                    help="train LoRA adapters (implied by --reference lora)")
    tr.add_argument("--no-prompt-sharing", dest="prompt_sharing", action="store_false",
                    default=None, help="run prompt + chosen and prompt + rejected as "
                    "separate rows (for attention without custom masks)")
    tr.add_argument("--chunked-logps", action=argparse.BooleanOptionalAction,
                    default=None, help="log-probs without the full-vocabulary logits "
                    "(default: on from a 32k vocabulary)")
    tr.add_argument("--group-by-length", action="store_true", default=None,
                    help="batch pairs of similar length")
    tr.add_argument("--fsdp", action="store_true", default=None,
                    help="shard weights, gradients and optimizer state over the "
                    "launched processes (FSDP2)")
    tr.add_argument("--device")
    tr.add_argument("--precision", metavar="|".join(PRECISIONS))
    tr.add_argument("--eval-every", type=int)
    tr.add_argument("--eval-on-start", action=argparse.BooleanOptionalAction,
                    default=None,
                    help="with --eval-every, also evaluate before step 1 (default: on)")
    tr.add_argument("--log-every", type=int)
    tr.add_argument("--skip-invalid", action="store_true", default=None,
                    help="skip and count malformed records")
    tr.add_argument("--trust-remote-code", action="store_true",
                    help="run code shipped with the model (off by default)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> DPOConfig:
    values = {}
    if args.config:
        try:
            with open(args.config) as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read config file {args.config}: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {args.config} must hold a JSON object")
    for f in fields(DPOConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    values["output_dir"] = args.output
    values["resume"] = bool(args.resume)
    try:
        return DPOConfig.from_dict(values)
    except TypeError as err:
        raise ConfigError(str(err)) from None


RUN_ARGS = "run_args.json"


def resolve_resume(args: argparse.Namespace) -> argparse.Namespace:
    """``--resume DIR`` takes the arguments the run was started with (saved in
    DIR/run_args.json)."""
    if args.resume:
        saved = Path(args.resume) / RUN_ARGS
        if not saved.exists():
            raise ConfigError(f"--resume {args.resume}: no {RUN_ARGS} there; was the "
                              f"run started with --output {args.resume}?")
        resume = args.resume
        args = argparse.Namespace(**json.loads(saved.read_text()))
        args.resume = resume
        return args
    missing = [flag for flag, value in (("--model", args.model), ("--data", args.data),
                                        ("--output", args.output)) if not value]
    if missing:
        raise ConfigError(f"train needs {', '.join(missing)} (or --resume OUTPUT_DIR)")
    return args


def save_run_args(args: argparse.Namespace) -> None:
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / RUN_ARGS).write_text(
        json.dumps({k: v for k, v in vars(args).items() if k != "resume"}, indent=2))


def build_toy_command(args: argparse.Namespace) -> int:
    """``toy``: the cached build for this seed, step count and architecture (made if not
    there yet), copied to ``--output`` if given, so that asking twice never trains
    twice."""
    from .lab.toy import DEFAULT_STEPS, ensure_toy, format_fingerprint

    try:
        path = ensure_toy(args.seed, steps=args.steps or DEFAULT_STEPS,
                          architecture=args.architecture)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.output is not None:
        path = Path(shutil.copytree(path, args.output, dirs_exist_ok=True))
        # a toy cached by an older dpo_ref may hold a mode-600 model.safetensors
        share(path)
    print(f"toy model ready: {path}", file=sys.stderr)
    if (path / "fingerprint.json").exists():
        print(format_fingerprint(json.loads((path / "fingerprint.json").read_text())),
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "toy":
            return build_toy_command(args)
        args = resolve_resume(args)
        # validated before any model is loaded
        config = from_launcher(config_from_args(args))
        # under torchrun/accelerate only rank 0 writes and prints
        is_main = launched_rank() == 0
        from .data import prepare_pairs
        from .loading import load_model, load_tokenizer
        from .trainer import train

        # Data first (it needs only the tokenizer): a bad record is reported before a
        # large model loads.
        tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        data = prepare_pairs(args.data, tokenizer, config.max_length,
                             config.skip_invalid)
        if is_main:
            print(f"data: {data.report()}", file=sys.stderr)
            for message in data.skip_messages[:10]:
                print(f"  skipped {message}", file=sys.stderr)
        eval_data = (prepare_pairs(args.eval_data, tokenizer, config.max_length,
                                   config.skip_invalid) if args.eval_data else None)
        # only for data that was accepted: a rejected run leaves nothing
        if not args.resume and is_main:
            save_run_args(args)
        model = load_model(args.model, trust_remote_code=args.trust_remote_code)
        result = train(model, tokenizer, data, config, eval_data)
        if is_main:
            final = {k: round(v, 4) for k, v in result.history[-1].items()}
            print(f"done: {json.dumps(final)}\nsaved to {args.output}", file=sys.stderr)
        return 0
    except (DataError, ConfigError, CheckpointError, ModelLoadError, FileNotFoundError,
            FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
