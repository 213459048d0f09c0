"""Training: memorisation, clipping, the log, memory, resume, interruption, the CLI's bad inputs. Tiny preset, CPU."""

import json
import math
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder.model import PRESETS, Encoder
from encoder.distributed import resolve_device
from encoder.loop import clip_gradients, lr_factor
from encoder.train import TrainConfig, preset_config, train


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    """Tiny model on the first verses of the WEB New Testament, with a WordPiece vocabulary trained on them
    (a few hundred entries instead of 30,522: the embedding no longer dominates the step time)."""
    base = dict(out=str(tmp_path / "ckpt"), translations=("web",), scope="nt", limit=200, val_fraction=0.1,
                tokenizer="wordpiece-1000", steps=20, batch_size=8, lr=3e-3, warmup=5, eval_every=10,
                eval_windows=32, save_every=1000, device="cpu")
    return preset_config("tiny", **{**base, **kw})


def losses(folder) -> np.ndarray:
    return np.array([r["loss"] for r in ckpt.read_log(folder)])


@pytest.mark.slow
def test_tiny_model_memorises_ten_verses(home, tmp_path):
    cfg = tiny_cfg(tmp_path, limit=10, val_fraction=0.0, steps=700, batch_size=16, schedule="constant")
    h = losses(train(cfg, home=home))
    running = np.convolve(h, np.ones(20) / 20, "valid")  # mean of 20 steps: each step draws new masks
    assert h[:5].mean() > 3.0
    assert running.min() < 0.1, f"MLM loss on 10 verses only reached {running.min():.3f} in 700 steps"


def test_clipping_holds_the_global_norm_at_the_limit():
    torch.manual_seed(0)
    model = Encoder(replace(PRESETS["tiny"], vocab_size=300))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 10
    by_hand = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
    reported = clip_gradients(model.parameters(), 1.0)
    assert reported == pytest.approx(by_hand, rel=1e-5)  # the log gets the norm BEFORE clipping
    after = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
    assert after == pytest.approx(1.0, rel=1e-4)
    # below the limit nothing changes; with no limit nothing changes either
    assert clip_gradients(model.parameters(), 5.0) == pytest.approx(1.0, rel=1e-4)
    assert clip_gradients(model.parameters(), None) == pytest.approx(1.0, rel=1e-4)


def test_lr_schedule():
    assert [lr_factor(s, 4, 12) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 12) == 1.0 and lr_factor(8, 4, 12) == 0.5 and lr_factor(11, 4, 12) == pytest.approx(0.125)
    assert lr_factor(0, 0, 10) == 1.0                       # warmup off
    assert lr_factor(9, 4, 12, "constant") == 1.0


def test_log_has_every_step_and_the_checkpoint_is_complete(home, tmp_path):
    folder = train(tiny_cfg(tmp_path), home=home)
    log = ckpt.read_log(folder)
    assert [r["step"] for r in log] == list(range(1, 21))
    for r in log:
        assert set(r) >= {"step", "loss", "lr", "grad_norm", "tokens_per_s", "peak_mem", "rss"}
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["tokens_per_s"] > 0 and r["peak_mem"] > 0
    assert [r["step"] for r in log if "val_loss" in r] == [10, 20]
    assert log[0]["lr"] == pytest.approx(3e-3 / 5) and log[4]["lr"] == pytest.approx(3e-3)
    assert np.mean([r["loss"] for r in log[-5:]]) < np.mean([r["loss"] for r in log[:5]])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["steps"] == 20 and manifest["final_val_loss"] == log[-1]["val_loss"]
    assert manifest["weights_sha256"] == ckpt.file_sha256(folder / "model.safetensors")
    assert manifest["data"]["val_windows"] > 0 and manifest["hardware"]["device"] == "cpu"
    config = json.loads((folder / "config.json").read_text())
    assert config["train"]["lr"] == 3e-3 and config["model"]["d_model"] == 64
    loaded = ckpt.load(folder)
    assert loaded.model.cfg.vocab_size == loaded.tokenizer.get_vocab_size() <= 1000
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt",
                                                  "train_log.jsonl", "manifest.json", "trainer_state.pt"}


def test_without_clipping_the_norms_are_logged_unclipped(home, tmp_path):
    folder = train(tiny_cfg(tmp_path, clip=None, lr=0.5, optimizer="sgd", warmup=0, steps=6), home=home)
    norms = [r["grad_norm"] for r in ckpt.read_log(folder)]
    assert len(norms) == 6 and all(n > 0 for n in norms)


def test_memory_does_not_grow_from_epoch_to_epoch(home, tmp_path):
    # 200 verses -> about 60 windows -> 7 steps an epoch at batch 8; 8 epochs.
    folder = train(tiny_cfg(tmp_path, steps=56, eval_every=1000), home=home)
    rss = np.array([r["rss"] for r in ckpt.read_log(folder)]) / 2 ** 20
    per_epoch = len(rss) // 8
    second, last = rss[2 * per_epoch - 1], rss[-1]
    assert last - second < 16, f"RSS grew from {second:.0f} MiB (epoch 2) to {last:.0f} MiB (epoch 8)"


def test_resume_after_interrupt_repeats_the_uninterrupted_run(home, tmp_path):
    whole = train(tiny_cfg(tmp_path / "a", steps=12, save_every=5, model={"dropout": 0.1}), home=home)

    class Interrupt(KeyboardInterrupt):
        pass

    def stop_at_8(rec, total):
        if rec["step"] == 8:
            raise Interrupt
    cfg = tiny_cfg(tmp_path / "b", steps=12, save_every=5, model={"dropout": 0.1})
    with pytest.raises(Interrupt):
        train(cfg, on_step=stop_at_8, home=home)
    # Ctrl-C left the last complete checkpoint (step 5) intact and loadable
    assert json.loads((tmp_path / "b" / "ckpt" / "manifest.json").read_text())["steps"] == 5
    ckpt.load(tmp_path / "b" / "ckpt")
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]
    resumed = train(cfg, resume=True, home=home)
    a, b = ckpt.read_log(whole), ckpt.read_log(resumed)
    assert [r["step"] for r in b] == list(range(1, 13))
    assert np.allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=0, atol=1e-6)
    assert np.allclose([r["grad_norm"] for r in a], [r["grad_norm"] for r in b], rtol=1e-5)
    assert a[-1]["val_loss"] == pytest.approx(b[-1]["val_loss"], abs=1e-6)
    wa, wb = ckpt.load(whole).model.state_dict(), ckpt.load(resumed).model.state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_ctrl_c_before_the_first_save_leaves_a_resumable_checkpoint(home, tmp_path):
    """Seen: `bench train --steps 200`, Ctrl-C at step 28, then --resume: "no such checkpoint folder", because nothing
    was saved before step 1000. A real SIGINT now finishes the step under way, saves it, and stops."""
    import os
    import signal

    whole = train(tiny_cfg(tmp_path / "a", steps=10, model={"dropout": 0.1}), home=home)
    cfg = tiny_cfg(tmp_path / "b", steps=10, model={"dropout": 0.1})  # save_every 1000: no save before the end

    def ctrl_c_at_4(rec, total):
        if rec["step"] == 4:
            os.kill(os.getpid(), signal.SIGINT)
    before = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN under nohup / a background CI job
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=ctrl_c_at_4, home=home)
    assert json.loads((tmp_path / "b" / "ckpt" / "manifest.json").read_text())["steps"] == 4
    assert signal.getsignal(signal.SIGINT) is before  # the loop put the handler back
    resumed = train(cfg, resume=True, home=home)
    a, b = ckpt.read_log(whole), ckpt.read_log(resumed)
    assert [r["step"] for r in b] == list(range(1, 11))
    assert np.allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=0, atol=1e-6)


def test_resume_refuses_a_changed_config(home, tmp_path):
    cfg = tiny_cfg(tmp_path, steps=4)
    train(cfg, home=home)
    with pytest.raises(BadInput, match=r"cannot resume: the checkpoint was trained with lr=0.003 \(now 0.001\)"):
        train(replace(cfg, lr=1e-3, steps=8), resume=True, home=home)
    with pytest.raises(BadInput, match="already holds a checkpoint; use --resume"):
        train(cfg, home=home)
    train(replace(cfg, steps=6), resume=True, home=home)  # a longer run of the same training is fine
    assert len(ckpt.read_log(cfg.out)) == 6


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BadInput, match="unknown device 'tpu:x'"):
        resolve_device("tpu:x")
    with pytest.raises(BadInput, match="cuda:7"):
        resolve_device("cuda:7")  # out of range with CUDA, unavailable without it
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="CUDA is not available"):
            resolve_device("cuda")


# ---- CLI ------------------------------------------------------------------------------------------------------------

def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    from harness.cli import main
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--preset", "huge"], "error: unknown preset 'huge': choose from tiny, small, base"),
    (["--preset", "tiny", "--device", "cuda:7"], "error: device 'cuda:7'"),
    (["--preset", "tiny", "--device", "npu"], "error: unknown device 'npu'"),
    (["--preset", "tiny", "--device", "mps"], "error: device 'mps' is not supported"),
    (["--preset", "tiny", "--max-len", "500"], "error: train config: max_len 500 does not fit the tiny model's 64"),
    (["--preset", "tiny", "--translations", "klingon"], "error: unknown translation(s) klingon"),
    (["--preset", "tiny", "--optimizer", "lbfgs"], "error: train config: optimizer must be one of adamw|sgd"),
])
def test_cli_bad_inputs_exit_2(monkeypatch, capsys, tmp_path, args, message):
    code, err = run_cli(monkeypatch, capsys, "train", "--out", str(tmp_path / "o"), *args)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err


def test_cli_cuda_without_cuda_exits_2(monkeypatch, capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run_cli(monkeypatch, capsys, "train", "--preset", "tiny", "--device", "cuda",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "CUDA is not available" in err


def test_cli_missing_corpus_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("VERSEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWORD_PATH", str(tmp_path / "no-sword"))
    code, err = run_cli(monkeypatch, capsys, "train", "--preset", "tiny", "--translations", "web",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "SWORD module" in err and "not installed" in err


def test_cli_resume_without_checkpoint_exits_2(monkeypatch, capsys, tmp_path):
    code, err = run_cli(monkeypatch, capsys, "train", "--preset", "tiny", "--resume", "--out", str(tmp_path / "x"))
    assert code == 2 and "no such checkpoint folder" in err


def test_cli_data_inspect_shows_masked_windows(monkeypatch, capsys):
    from harness.cli import app
    from typer.testing import CliRunner
    r = CliRunner().invoke(app, ["data", "inspect", "--preset", "tiny", "--translations", "web", "--limit", "300",
                                 "--n", "3", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["samples"]) == 3 and all(re.search(r"\[[^\] ]+>[^\] ]+\]", s) for s in out["samples"])
    assert out["counts"]["train_windows"] > 0 and out["counts"]["vocab_size"] == 30522


def test_training_plot_is_a_png(tmp_path):
    from encoder.plots import plot_training, smooth
    log = [{"step": s, "loss": 9 - s / 10, "lr": 1e-3, "grad_norm": 1 + 1 / s, **({"val_loss": 8.5} if s % 5 == 0 else {})}
           for s in range(1, 21)]
    path = plot_training(log, tmp_path / "p.png", reference=1.29)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.allclose(smooth(np.array([1.0, 3.0, 5.0]), 2), [1.0, 2.0, 4.0])
    with pytest.raises(BadInput, match="empty"):
        plot_training([], tmp_path / "q.png")


def test_cli_trains_then_resumes_from_the_stored_config(monkeypatch, capsys, tmp_path):
    out = str(tmp_path / "c")
    common = ["train", "--preset", "tiny", "--out", out, "--device", "cpu", "--threads", "1"]
    code, err = run_cli(monkeypatch, capsys, *common, "--translations", "web", "--limit", "120",
                        "--tokenizer", "wordpiece-500", "--steps", "4", "--lr", "0.002", "--norm", "post")
    assert code in (0, None), err
    assert "step 4/4" in err  # not a terminal: plain progress lines instead of a bar
    # resume needs only --steps: everything else comes from the checkpoint's config.json
    code, err = run_cli(monkeypatch, capsys, *common, "--resume", "--steps", "6")
    assert code in (0, None), err
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["train"]["lr"] == 0.002 and config["train"]["steps"] == 6 and config["model"]["norm"] == "post"
    assert [r["step"] for r in ckpt.read_log(out)] == [1, 2, 3, 4, 5, 6]
    code, err = run_cli(monkeypatch, capsys, *common, "--resume", "--steps", "8", "--lr", "0.01")
    assert code == 2 and "cannot resume" in err and "lr=0.002" in err
    code, err = run_cli(monkeypatch, capsys, "train-plot", out)
    assert code in (0, None) and (tmp_path / "c" / "training.png").is_file()
