"""The trainer's guard against a diverging run: notice it, roll back, go on more slowly.

A VQ-VAE can blow up within a few dozen steps: hvq's first v2 run trained
cleanly for 1300 steps, then the commitment term of level 16 went 0 -> 139 ->
228,787 in 50 steps, every loss reached 1e17, and the run kept training (and
checkpointing) a ruined model for hours.  The guard watches the loss of each
step against a slow running mean of the losses before it::

    loss of step t --> finite?  <= ratio x mean?  --yes--> step, mean <- EMA(loss)
                           \\no / no
                            --> roll back to the last checkpoint taken in memory,
                                learning rate x backoff, count the rollback
                                (more than max_rollbacks: HvqTrainingError)

A rollback is a pure function of the run's recipe and its past, like the rest
of the trainer: the snapshot is the one the checkpoint file holds, and the
learning-rate scale and the loss mean are saved in the checkpoint, so a run
resumed from disk replays the same rollbacks.  Under torchrun every rank
votes and the vote is all-reduced, so all ranks roll back together.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from hvq.bitstream.errors import HvqTrainingError


@dataclass
class LossWatch:
    """The running mean of the losses, and the test a new loss must pass.

    ``ratio`` 0 turns the guard off (only a non-finite loss still stops it);
    the first ``settle`` steps feed the mean without being tested, as the
    loss of a fresh model falls by orders of magnitude there.
    """

    ratio: float = 10.0
    beta: float = 0.98
    settle: int = 50
    mean: float = math.nan
    seen: int = 0

    def diverged(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        if self.ratio <= 0 or self.seen < self.settle or not math.isfinite(self.mean):
            return False
        return loss > self.ratio * self.mean

    def update(self, loss: float) -> None:
        self.mean = loss if self.seen == 0 else self.beta * self.mean + (1 - self.beta) * loss
        self.seen += 1

    def state(self) -> dict:
        return {"mean": self.mean, "seen": self.seen}

    def load(self, state: dict) -> None:
        self.mean = float(state["mean"])
        self.seen = int(state["seen"])


MAX_ROLLBACKS = 4  # a run that diverges a fifth time stops: the recipe, not bad luck, is at fault
LR_BACKOFF = 0.5  # each rollback halves the learning rate for the rest of the run


def snapshot(model: torch.nn.Module, optimiser: torch.optim.Optimizer) -> dict:
    """Copies of the weights, buffers and optimiser state, to roll back to."""
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimiser": copy.deepcopy(optimiser.state_dict())}


def any_rank(flag: bool, world_size: int, device) -> bool:
    """``flag`` OR-ed over every rank of the job (itself alone when there is one)."""
    if world_size == 1:
        return flag
    vote = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(vote, op=torch.distributed.ReduceOp.MAX)
    return bool(vote.item())


def give_up(step: int, loss: float, rollbacks: int, lr_scale: float) -> HvqTrainingError:
    """The error that ends a run whose loss keeps diverging after every rollback."""
    return HvqTrainingError(
        f"training diverged at step {step} (loss {loss:.3g}) after {rollbacks} rollbacks, "
        f"the learning rate already at {lr_scale:.3g} x the recipe's; start again with a lower --lr or a "
        "--grad-clip (--init-from RUN/checkpoint.pt keeps the weights of the last checkpoint)")
