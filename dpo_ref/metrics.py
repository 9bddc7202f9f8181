"""What a run reports: per-batch metrics with TRL's names, summed between logging steps,
and its logs.

Metrics stay on the device as tensors until a logging step reads them back (one host
synchronisation per ``log_every`` steps). ``RunLog`` keeps the history in memory and, on
rank 0, in ``metrics.jsonl`` and ``eval_metrics.jsonl``; the sums not yet logged travel
in checkpoints, so a resumed run logs the same lines as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from .distributed import Processes, mean_over_processes

METRICS_FILE, EVAL_METRICS_FILE = "metrics.jsonl", "eval_metrics.jsonl"


def pair_metrics(losses, chosen_rewards, rejected_rewards,
                 policy) -> dict[str, torch.Tensor]:
    """TRL's metric names, as device tensors (no host synchronisation here)."""
    return {
        "loss": losses.mean().detach(),
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "logps/chosen": policy["chosen_logps"].detach().mean(),
        "logps/rejected": policy["rejected_logps"].detach().mean(),
    }


class RunLog:
    """Metric sums since the last logging step, and the logged records (``history``,
    ``eval_history``)."""

    def __init__(self, out_dir: Path | None, procs: Processes, fp16: bool = False,
                 checkpoint: Any = None, device: torch.device | None = None):
        """``checkpoint`` (a ``dpo_ref.checkpoint.Checkpoint``): continue its run: its
        unlogged sums, and the log lines up to its step (later ones were written by the
        run that was killed)."""
        self.out_dir, self.procs, self.fp16 = out_dir, procs, fp16
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0  # micro-batches in the sums
        self.grad_norms: list[torch.Tensor] = []
        if checkpoint is not None:
            running = {k[len("running."):]: v.to(device)
                       for k, v in checkpoint.tensors.items()
                       if k.startswith("running.")}
            norms = running.pop("grad_norms", None)
            self.sums, self.n = running, checkpoint.meta["n_running"]
            self.grad_norms = list(norms.unbind()) if norms is not None else []
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            for name, history in ((METRICS_FILE, self.history),
                                  (EVAL_METRICS_FILE, self.eval_history)):
                path = out_dir / name
                kept = ([l for l in path.read_text().splitlines()
                         if json.loads(l)["step"] <= checkpoint.step]
                        if checkpoint is not None and path.exists() else [])
                if kept:
                    path.write_text("".join(l + "\n" for l in kept))
                else:  # a fresh run: no lines of an earlier one
                    path.unlink(missing_ok=True)
                history.extend(json.loads(l) for l in kept)
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        """One micro-batch's metrics."""
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0) + value
        self.n += 1

    def log(self, step: int, epoch: float, learning_rate: float) -> dict[str, float]:
        """Average what was added since the last call (over processes too) into one
        record."""
        record = {"step": step, "epoch": epoch}
        averaged = mean_over_processes(
            {name: total / self.n for name, total in self.sums.items()}, self.procs)
        record.update({name: value.item() for name, value in averaged.items()})
        norms = torch.stack(self.grad_norms).float().cpu()
        # all finite, except fp16 steps that GradScaler skipped
        finite = torch.isfinite(norms)
        record["grad_norm"] = (norms[finite].mean().item() if finite.any()
                               else float("nan"))
        if self.fp16:
            record["skipped_steps"] = int((~finite).sum())
        record["learning_rate"] = learning_rate
        record["elapsed_s"] = time.perf_counter() - self.start
        self.sums, self.n, self.grad_norms = {}, 0, []
        self.history.append(record)
        self._write(METRICS_FILE, record)
        return record

    def log_eval(self, record: dict[str, float]) -> None:
        """One evaluation (under FSDP every process evaluates; rank 0 alone writes)."""
        self.eval_history.append(record)
        self._write(EVAL_METRICS_FILE, record)

    def _write(self, name: str, record: dict[str, Any]) -> None:
        if self.out_dir:
            with open(self.out_dir / name, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------ through a checkpoint

    def unlogged(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and metadata for a checkpoint. The sums differ between processes:
        their mean is kept, which every process restores on resume (a collective, so
        every process calls this)."""
        tensors = {f"running.{k}": v
                   for k, v in (mean_over_processes(self.sums, self.procs)
                                if self.sums else {}).items()}
        if self.grad_norms:
            tensors["running.grad_norms"] = torch.stack(self.grad_norms)
        return tensors, {"n_running": self.n}
