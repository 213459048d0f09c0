"""Checkpoint folders: save atomically, load with checks, hash for cache keys.

A checkpoint is a folder:
  config.json         {"format": 1, "model": EncoderConfig fields, "train": TrainConfig fields}
  model.safetensors   weights (the MLM decoder is tied to the token embedding, so it is stored once)
  tokenizer.json      the tokenizer pipeline (+ vocab.txt, one token a line, for other tools)
  train_log.jsonl     one JSON object per optimizer step (+ val_loss on evaluation steps)
  manifest.json       data, steps, hardware, wall time, final losses, versions, sha256 of the weights
  trainer_state.pt    optimizer / scheduler / RNG state for --resume (not needed for inference)

Saving writes a sibling temp folder, then swaps it in with two renames; until the swap the previous checkpoint is
untouched, and Ctrl-C is held off during the swap, so an interrupted run always leaves a complete checkpoint.
"""

import hashlib
import json
import os
import shutil
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from corpus.errors import BadInput, at
from corpus.paths import file_sha256
from encoder import hf
from encoder import tokenizer as tok
from encoder import weights_io
from encoder.model import Encoder, EncoderConfig

FORMAT = 1
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    model: Encoder
    tokenizer: Tokenizer
    config: dict        # the whole config.json
    manifest: dict      # {} when the folder has none


@contextmanager
def _hold_sigint():
    """Defer Ctrl-C until the block ends (only possible in the main thread; elsewhere it is a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _old(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.old"


def recover(folder: Path) -> None:
    """A crash between the two renames of a save leaves only `.NAME.old`: put it back."""
    folder = Path(folder)
    if not folder.exists() and _old(folder).is_dir():
        os.replace(_old(folder), folder)


def save(folder, *, model: Encoder, tokenizer: Tokenizer, config: dict, log: list[dict], manifest: dict,
         trainer_state: dict | None = None, half: bool = False) -> Path:
    """`half`: weights stored as float16 (loaded back into float32): a committed model at half the size."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover(folder)
    if folder.exists() and not (folder / "config.json").is_file():  # never swap away a folder that is not ours
        raise at(folder, None, "exists and is not a checkpoint folder; choose another output folder")
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        dtype = torch.float16 if half else torch.float32
        weights = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
        manifest = {**manifest, "weights_sha256": file_sha256(tmp / "model.safetensors")}
        (tmp / "config.json").write_text(json.dumps({"format": FORMAT, **config}, indent=2) + "\n")
        tok.save(tokenizer, tmp)
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer_state.pt")
        for p in tmp.iterdir():  # data on disk before the rename makes it visible
            os.chmod(p, 0o644)      # temp files are created private; a checkpoint is meant to be shared
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        with _hold_sigint():
            if folder.exists():
                shutil.rmtree(_old(folder), ignore_errors=True)
                os.replace(folder, _old(folder))
            os.replace(tmp, folder)
            shutil.rmtree(_old(folder), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise at(path, None, "missing")
    try:
        obj = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise at(path, e.lineno, f"not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise at(path, None, "not UTF-8 text") from None
    if not isinstance(obj, dict):
        raise at(path, 1, "expected a JSON object")
    return obj


def read_config(folder) -> dict:
    """config.json of a checkpoint; for a Hugging Face BERT folder, the same shape made from its config."""
    folder = Path(folder)
    if not folder.is_dir():
        raise at(folder, None, "no such checkpoint folder" if not folder.exists() else
                 "is a file; a checkpoint is a folder with config.json and model.safetensors")
    if hf.is_hf_folder(folder):
        raw = json.loads((folder / "config.json").read_text("utf-8"))
        return {"format": FORMAT, "model": asdict(hf.model_config(raw, folder / "config.json")), "hf_config": raw}
    for name in REQUIRED:
        if not (folder / name).is_file():
            raise at(folder / name, None, "missing from the checkpoint folder")
    cfg = read_json(folder / "config.json")
    if cfg.get("format") != FORMAT:
        raise at(folder / "config.json", None, f"checkpoint format {cfg.get('format')!r}, expected {FORMAT}")
    if not isinstance(cfg.get("model"), dict):
        raise at(folder / "config.json", None, 'no "model" object')
    return cfg


def load(folder, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and verify: every required file present, the config within bounds and matching the weight file's header
    (before any tensor is made), weights intact (sha256 against the manifest), tokenizer vocabulary == config
    vocab_size. Returns an eval() model."""
    folder = Path(folder)
    recover(folder)
    if hf.is_hf_folder(folder):
        mcfg, weights, tk, raw = hf.load(folder)
        model = Encoder(mcfg)
        model.load_state_dict(weights)
        model.to(device).eval()
        return Checkpoint(folder, model, tk, {"format": FORMAT, "model": asdict(mcfg), "hf_config": raw},
                          {"imported_from": "huggingface", "path": hf.shown(folder)})
    cfg = read_config(folder)
    try:
        mcfg = EncoderConfig.from_dict(cfg["model"])
    except (BadInput, TypeError) as e:
        raise at(folder / "config.json", None, str(e)) from None
    wpath = folder / "model.safetensors"
    tk = tok.load(folder / "tokenizer.json")
    if tk.get_vocab_size() != mcfg.vocab_size:
        raise at(folder / "tokenizer.json", None,
                 f"tokenizer has {tk.get_vocab_size()} tokens but config.json says vocab_size {mcfg.vocab_size}")
    if tok.special_ids(tk)["pad"] != mcfg.pad_id:
        raise at(folder / "tokenizer.json", None,
                 f"tokenizer's [PAD] is {tok.special_ids(tk)['pad']} but config.json says pad_id {mcfg.pad_id}")
    manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").exists() else {}
    want = manifest.get("weights_sha256")
    if want and file_sha256(wpath) != want:
        raise at(wpath, None, "sha256 differs from manifest.json's weights_sha256 (corrupt or replaced)")
    weights_io.check_shapes(weights_io.header_shapes(wpath), weights_io.expected_shapes(mcfg), wpath)
    try:
        weights = load_file(wpath)
    except (SafetensorError, OSError, ValueError) as e:
        raise at(wpath, None, f"corrupt safetensors file ({str(e).splitlines()[0][:100]})") from None
    model = Encoder(mcfg)
    weights_io.check_shapes({k: v.shape for k, v in weights.items()},  # the header told the truth
                           {k: v.shape for k, v in model.state_dict().items()}, wpath)
    model.load_state_dict(weights)
    model.to(device).eval()
    return Checkpoint(folder, model, tk, cfg, manifest)


def verify(folder) -> None:
    """What `load` checks before it allocates, without loading: the config within bounds and the weight file's
    header matching it. For a command with work to do before it loads a checkpoint (distillation prepares its texts
    first), so a config that cannot fit is refused in a second, not after minutes."""
    folder = Path(folder)
    cfg = read_config(folder)
    try:
        mcfg = EncoderConfig.from_dict(cfg["model"])
    except (BadInput, TypeError) as e:
        raise at(folder / "config.json", None, str(e)) from None
    if hf.is_hf_folder(folder):
        hf.check_header(hf.weights_file(folder), mcfg)
    else:
        wpath = folder / "model.safetensors"
        weights_io.check_shapes(weights_io.header_shapes(wpath), weights_io.expected_shapes(mcfg), wpath)


def sha256(folder) -> str:
    """Identity of what a checkpoint computes: its model config, weights and tokenizer (not its logs)."""
    folder = Path(folder)
    cfg = read_config(folder)
    h = hashlib.sha256(json.dumps(cfg["model"], sort_keys=True).encode())
    names = ("model.safetensors", "tokenizer.json")
    if hf.is_hf_folder(folder):  # whichever weights and vocabulary files the folder has
        names = [n for n in ("model.safetensors", "tokenizer.json", "vocab.txt")
                 if (folder / n).is_file()]
    for name in names:
        h.update(file_sha256(folder / name).encode())
    return h.hexdigest()


def read_log(folder) -> list[dict]:
    path = Path(folder) / "train_log.jsonl"
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise at(path, n, f"not valid JSON ({e.msg})") from None
    return out


def config_dict(model_cfg: EncoderConfig, train_cfg) -> dict:
    return {"model": asdict(model_cfg), "train": asdict(train_cfg)}


def publish(src, dst, half: bool = True) -> Path:
    """A copy of checkpoint `src` fit to commit: weights (float16 by default), config, tokenizer, training log and
    manifest (which records where it came from); no optimizer state."""
    loaded = load(src)
    manifest = {**loaded.manifest, "published_from": {"path": str(src), "sha256": sha256(src)},
                "weights_dtype": "float16" if half else "float32"}
    return save(dst, model=loaded.model, tokenizer=loaded.tokenizer, config=loaded.config, log=read_log(src),
                manifest=manifest, half=half)
