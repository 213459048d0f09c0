"""Two processes on the CPU with gloo (torch.multiprocessing on a free port, as torchrun would set them up): the
replicas stay bitwise identical through MLM training and fine-tuning, and the two-process fine-tune is the
single-process one (same global batch, negatives gathered across ranks with their gradients)."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from encoder import checkpoint as ckpt
from encoder.distributed import param_digest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, kind: str, cfg: dict, home) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if kind == "train":
        from encoder.train import preset_config, train
        train(preset_config("tiny", **cfg), home=home)
    else:
        from encoder.finetune import FinetuneConfig, finetune
        finetune(FinetuneConfig(**cfg), home=home)


def spawn(kind: str, cfg: dict, home, world: int = 2) -> None:
    mp.spawn(worker, args=(world, free_port(), kind, cfg, home), nprocs=world, join=True)


@pytest.fixture(scope="module")
def pretrain_cfg(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "pre"
    return dict(out=str(out), translations=("web",), scope="nt", limit=200, val_fraction=0.1,
                tokenizer="wordpiece-1000", steps=4, batch_size=8, lr=3e-3, warmup=2, eval_every=4, eval_windows=16,
                device="cpu")


def test_two_ranks_pretrain_in_lockstep(home, pretrain_cfg):
    spawn("train", pretrain_cfg, home)
    out = pretrain_cfg["out"]
    man = json.loads(open(f"{out}/manifest.json").read())
    a, b = man["replica_param_sha256"]
    assert man["world_size"] == 2 and a == b
    assert param_digest(ckpt.load(out).model) == a  # what rank 0 saved is what both ranks hold
    assert [r["step"] for r in ckpt.read_log(out)] == [1, 2, 3, 4]


def test_two_ranks_finetune_like_one_process(home, pretrain_cfg, tmp_path):
    init = pretrain_cfg["out"]
    if not os.path.isdir(init):
        spawn("train", pretrain_cfg, home)
    cfg = dict(init=init, out=str(tmp_path / "two"), steps=3, batch_size=16, lr=1e-3, warmup=0, naves=False,
               limit=300, device="cpu", val_per_kind=32, val_batch=16, eval_every=3)
    spawn("finetune", cfg, home)
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    a, b = man["replica_param_sha256"]
    assert man["world_size"] == 2 and man["backend"] == "gloo" and a == b
    assert param_digest(ckpt.load(tmp_path / "two").model) == a

    from encoder.finetune import FinetuneConfig, finetune
    torch.set_num_threads(1)
    one = finetune(FinetuneConfig(**{**cfg, "out": str(tmp_path / "one")}), home=home)
    two, one = ckpt.read_log(tmp_path / "two"), ckpt.read_log(one)
    # Step 1 starts from the same weights on the same 16 pairs: with negatives gathered across ranks the loss is
    # the same number, and the gradient (its norm) is the single-process gradient, not a per-rank one.
    assert two[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-6)
    assert two[0]["grad_norm"] == pytest.approx(one[0]["grad_norm"], rel=1e-5)
    for r2, r1 in zip(two, one):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-4)
    assert two[-1]["val_acc"] == pytest.approx(one[-1]["val_acc"], abs=1e-9)
