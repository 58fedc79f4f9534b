"""``screen`` on several workers with PyTorch's own launcher (torchrun), one device per rank.

``torchrun --nproc-per-node N -m advexplorer screen …`` (or ``advexplorer screen --ranks N …``,
which calls :func:`torch.distributed.run.run` for you) starts N copies of the command.
Each copy finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), joins the process group — NCCL on ``cuda:LOCAL_RANK`` when the screen runs
on CUDA, gloo on the CPU otherwise — screens every WORLD_SIZE-th image of the cohort and
writes its rows to its own part file ``OUT/parts/per_image.rank{R}.csv`` as they finish.
At the end rank 0 merges the parts into ``per_image.csv`` (in cohort order) and writes the
summary and the report. If a rank dies, torchrun stops the others; the part files keep
every finished row, and ``--resume`` (with any number of ranks) reads them all and screens
only the images that are missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

PARTS = "parts"


@dataclass
class Ranks:
    """This process's place among the screen's workers (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> str:
        """This rank's device: ``cuda:LOCAL_RANK`` when CUDA is asked for (or ``auto`` and
        present), else the CPU (a rank never shares a GPU with another by accident)."""
        import torch

        requested = (requested or "auto").strip().lower()
        if not self.active:
            return requested
        if requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        if requested.startswith("cuda"):
            return requested
        return "cpu"

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def share(self, value):
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list | None:
        """Every rank's ``value`` on rank 0 (a list in rank order); None on the others."""
        if not self.active:
            return [value]
        import torch.distributed as dist

        out = [None] * self.world_size if self.leader else None
        dist.gather_object(value, out, dst=0)
        return out

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def join(requested_device: str) -> Ranks:
    """Join torchrun's process group when this process is one of several; else one rank."""
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world_size <= 1:
        return Ranks()
    import torch
    import torch.distributed as dist

    ranks = Ranks(rank=int(os.environ["RANK"]), world_size=world_size,
                  local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                  local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))))
    device = ranks.device(requested_device)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        backend = "nccl"
    else:
        backend = "gloo"
        # Share the cores among the ranks of this node (torchrun's default is 1 thread each).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks.local_world_size))
    if not dist.is_initialized():
        # A rank that finishes its share early waits for the others at the final barrier.
        dist.init_process_group(backend=backend, timeout=timedelta(hours=12))
    return ranks


def launch(argv: list[str], ranks: int) -> int:
    """Run ``advexplorer`` + ``argv`` under torchrun with ``ranks`` processes on this machine."""
    from torch.distributed.run import get_args_parser, run

    options = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(ranks), "-m", "advexplorer", *argv])
    try:
        run(options)
    except Exception as error:  # torch's ChildFailedError: a rank failed; its error is above
        from advexplorer.errors import UserError

        failures = getattr(error, "failures", {}) or {}
        which = ", ".join(f"rank {rank} (exit {f.exitcode})" for rank, f in sorted(failures.items()))
        raise UserError(f"The screen stopped: {which or error} failed (see its message above). "
                        "Finished images are kept; run the same command with --resume to finish "
                        "the rest.") from None
    return 0


def without_ranks(argv: list[str]) -> list[str]:
    """The command line without ``--ranks N`` (what every rank runs)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--ranks":
            skip = True
            continue
        if token.startswith("--ranks="):
            continue
        out.append(token)
    return out


def part_path(out: Path, name: str, rank: int) -> Path:
    """Rank ``rank``'s rows of ``name`` (``per_image.csv``): ``OUT/parts/per_image.rank{R}.csv``."""
    stem = Path(name).stem
    return out / PARTS / f"{stem}.rank{rank}.csv"


def part_files(out: Path, name: str) -> list[Path]:
    """Every rank's part file of ``name`` left in ``out`` (by any earlier world size)."""
    folder = out / PARTS
    if not folder.is_dir():
        return []
    stem = Path(name).stem
    return sorted(p for p in folder.glob(f"{stem}.rank*.csv") if p.is_file())
