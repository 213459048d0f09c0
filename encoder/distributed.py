"""Data parallelism for `bench train` and `bench finetune` under `torchrun --nproc_per_node N`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op for one process. Every rank
draws the same GLOBAL batch (batches are functions of (seed, step)) and keeps its own rows, `rows[rank::world]`.
DistributedDataParallel averages the gradients, so every rank takes the same optimizer step and the replicas stay
identical; rank 0 alone writes logs and checkpoints.

Contrastive loss needs every rank's embeddings as negatives: `gather_rows` all-gathers them WITH gradient flow (a
plain all_gather would cut the graph and leave each rank training against its own shard's negatives only). Each rank
then computes the same loss over the whole global batch. The backward of the gather sums every rank's gradient for
each row (all_reduce) and returns this rank's rows; since DDP then AVERAGES parameter gradients over ranks, the
result is exactly the single-process gradient of the global batch (the test checks this).
Backend: nccl on CUDA, gloo on CPU.
"""

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from corpus.errors import BadInput


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise BadInput("RANK / WORLD_SIZE / LOCAL_RANK must be integers (they are set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise BadInput(f"RANK {rank} is not within WORLD_SIZE {world}")
    return Dist(rank, world, local)


def resolve_device(spec: str) -> torch.device:
    """"auto" -> cuda if available else cpu; refuse what this machine cannot run, in one line."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(spec)
    except (RuntimeError, ValueError):
        raise BadInput(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from None
    if d.type == "cpu":
        return torch.device("cpu")
    if d.type != "cuda":
        raise BadInput(f"device {spec!r} is not supported: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise BadInput(f"device {spec!r} requested but CUDA is not available here (torch {torch.__version__}); "
                       "use --device cpu")
    if d.index is not None and d.index >= torch.cuda.device_count():
        raise BadInput(f"device {spec!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return d


def setup(device_spec: str = "auto") -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (if any) and pick this rank's device: `cuda:LOCAL_RANK` on a GPU
    machine, else the CPU. One process: `resolve_device(device_spec)` and no process group."""
    d = from_env()
    device = resolve_device(device_spec)
    if not d.enabled:
        return d, device
    if device.type == "cuda":
        if d.local_rank >= torch.cuda.device_count():
            raise BadInput(f"LOCAL_RANK {d.local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                           "device(s); use fewer processes per node")
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # N processes sharing the cores: more threads than cores each only makes them fight.
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // per_node))
    return Dist(d.rank, d.world, d.local_rank, backend), device


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, d: Dist) -> np.ndarray:
    """This rank's rows of a global batch of n rows (interleaved, so the ranks get equal shares +-1)."""
    if d.enabled and n < d.world:
        raise BadInput(f"a global batch of {n} rows cannot be split over {d.world} processes")
    return np.arange(n)[d.rank::d.world]


def wrap(module: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """DDP around `module` when distributed. Parameters are broadcast from rank 0 at construction."""
    if not d.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    # No buffer sync before each forward: the only buffer is the fixed sinusoidal table, identical everywhere.
    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)


class _GatherRows(torch.autograd.Function):
    """[n_rank, D] on every rank -> [sum n, D] in rank order, differentiable."""

    @staticmethod
    def forward(ctx, x, sizes):
        m = max(sizes)
        padded = x.new_zeros((m, *x.shape[1:]))
        padded[:x.shape[0]] = x
        bufs = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(bufs, padded.contiguous())
        ctx.sizes = sizes
        return torch.cat([b[:s] for b, s in zip(bufs, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)  # the gradient of every rank's loss with respect to each gathered row
        start = sum(ctx.sizes[:dist.get_rank()])
        return grad[start:start + ctx.sizes[dist.get_rank()]], None


def gather_rows(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if not d.enabled:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(d.world)]
    dist.all_gather(sizes, n)
    return _GatherRows.apply(x, [int(s) for s in sizes])


def all_sum(values: list[float], d: Dist, device: torch.device) -> list[float]:
    """Element-wise sum over ranks of a few numbers (for logging)."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def param_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's float32 bytes, in name order: equal digests = bitwise identical replicas."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def digests(model: torch.nn.Module, d: Dist) -> list[str]:
    """Every rank's `param_digest`, in rank order (on every rank)."""
    mine = param_digest(model)
    if not d.enabled:
        return [mine]
    out = [None] * d.world
    dist.all_gather_object(out, mine)
    return out


class Method(torch.nn.Module):
    """`module.<name>(...)` as a forward: DDP hooks `forward`, so a loss method (`mlm_loss`) is wrapped this way."""

    def __init__(self, module: torch.nn.Module, name: str):
        super().__init__()
        self.module = module
        self.name = name

    def forward(self, *args):
        return getattr(self.module, self.name)(*args)
