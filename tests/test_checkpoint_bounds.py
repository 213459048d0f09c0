"""Checkpoints checked before they allocate (#19): a config.json that asks for 10,000 layers (weights for 4), or a
max_len or d_ff of 1e9, is one line and exit 2 within 2 s of work and 500 MB, in every command that loads a
checkpoint; the config is checked against sane bounds and against the safetensors header (shapes only) before any
tensor is made."""

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder import weights_io
from encoder.hf import minilm_dir

REPO = Path(__file__).resolve().parent.parent
SMALL = REPO / "models" / "versebench-small"
BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]


def edited(tmp_path: Path, name: str, **model) -> Path:
    """A copy of the shipped small checkpoint with config.json's model fields changed."""
    folder = tmp_path / name
    shutil.copytree(SMALL, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"].update(model)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def edited_hf(tmp_path: Path, name: str, **fields) -> Path:
    """A copy of MiniLM (a Hugging Face BERT folder) with config.json's fields changed."""
    folder = tmp_path / name
    folder.mkdir()
    for f in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json"):
        (folder / f).symlink_to(minilm_dir() / f)
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps({**json.loads((minilm_dir() / "config.json").read_text()),
                                                    **fields}))
    return folder


BAD = {"n_layer 10000": {"n_layer": 10000}, "max_len 1e9": {"max_len": 10**9}, "d_ff 1e9": {"d_ff": 10**9},
       "n_layer 8 (weights for 4)": {"n_layer": 8}, "d_ff 2048 (weights for 1024)": {"d_ff": 2048}}
BAD_HF = {"num_hidden_layers 10000": {"num_hidden_layers": 10000},
          "max_position_embeddings 1e9": {"max_position_embeddings": 10**9},
          "intermediate_size 1e9": {"intermediate_size": 10**9}, "num_hidden_layers 3 (weights for 6)":
              {"num_hidden_layers": 3}, "intermediate_size 1024 (weights for 1536)": {"intermediate_size": 1024}}


@pytest.mark.parametrize("case", BAD)
def test_a_config_that_does_not_fit_is_refused_before_allocating(tmp_path, case):
    folder = edited(tmp_path, "ck", **BAD[case])
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match="over the limit|implies|missing|unexpected"):
        ckpt.load(folder)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("case", BAD_HF)
def test_a_hf_config_that_does_not_fit_is_refused_before_allocating(tmp_path, case):
    folder = edited_hf(tmp_path, "bert", **BAD_HF[case])
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match="over the limit|implies|missing|layers up to"):
        ckpt.load(folder)
    assert time.perf_counter() - t0 < 2


def test_the_header_alone_gives_the_shapes(tmp_path):
    shapes = weights_io.header_shapes(SMALL / "model.safetensors")
    cfg = ckpt.EncoderConfig.from_dict(ckpt.read_config(SMALL)["model"])
    assert shapes == weights_io.expected_shapes(cfg)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((SMALL / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(BadInput, match="corrupt safetensors"):
        weights_io.header_shapes(cut)


def peak_run(args: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; (result, seconds, its peak resident memory in MB), measured in a child of its own so the
    test's own memory does not count."""
    probe = ("import resource, subprocess, sys, time, json\n"
             "t0 = time.perf_counter()\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "dt = time.perf_counter() - t0\n"
             "mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
             "print(json.dumps([r.returncode, r.stderr, dt, mb]))\n")
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=300)
    code, err, dt, mb = json.loads(out.stdout)
    return subprocess.CompletedProcess(args, code, "", err), dt, mb


@pytest.mark.slow
def test_every_command_refuses_a_huge_config_in_one_line_fast_and_small(tmp_path):
    """run, gate, export, finetune and distill, each with n_layer 10000: exit 2, one line, and the whole process
    (Python, torch's import, the check) in under 500 MB; the check itself is well under 2 s (the process's start,
    mostly torch's import, is timed separately and subtracted)."""
    folder = edited(tmp_path, "huge", n_layer=10000)
    _, start, _ = peak_run([sys.executable, "-c", "import torch, safetensors, typer, numpy"])
    commands = {
        "run": ["run", "-r", "encoder", "-s", "keyword", "--checkpoint", str(folder), "--out", str(tmp_path / "o")],
        "gate": ["gate", "--checkpoint", str(folder), "-s", "keyword", "--verdict", str(tmp_path / "v.json")],
        "export": ["export", "--checkpoint", str(folder), "--out", str(tmp_path / "exp")],
        "finetune": ["finetune", "--init", str(folder), "--out", str(tmp_path / "ft"), "--steps", "1"],
        "distill": ["distill", "--teacher", str(folder), "--out", str(tmp_path / "ds"), "--steps", "1"],
    }
    for name, args in commands.items():
        r, dt, mb = peak_run([*BENCH, *args])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "n_layer 10000 is over the limit" in lines[0], (name,
                                                                                                         r.stderr)
        assert mb < 500, (name, mb)
        assert dt - start < 2 + 1, (name, dt, start)  # 1 s of slack for the CLI's own imports on a busy machine
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # (the probe's numbers are the children's)


def test_verify_refuses_what_load_would_without_loading(tmp_path):
    ckpt.verify(SMALL)
    ckpt.verify(minilm_dir())
    with pytest.raises(BadInput, match="n_layer 10000 is over the limit"):
        ckpt.verify(edited(tmp_path, "a", n_layer=10000))
    with pytest.raises(BadInput, match="implies"):
        ckpt.verify(edited(tmp_path, "b", d_ff=2048))
    with pytest.raises(BadInput, match="layers up to"):
        ckpt.verify(edited_hf(tmp_path, "c", num_hidden_layers=3))
