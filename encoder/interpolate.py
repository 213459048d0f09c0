"""Weight-space ensembling with the starting weights (WiSE-FT, Wortsman et al. 2022):
theta = (1 - alpha) * theta_start + alpha * theta_finetuned.

Fine-tuning on Bible pairs teaches the model the corpus and forgets some of what the starting model knew about how
people phrase things; the interpolation keeps part of both at no training cost. alpha = 0 is the start, 1 the
fine-tune; it is chosen on a dev set, never on a reported one. The result is a normal checkpoint whose config records
the recipe (both parents by path and sha256, and alpha), so it loads, gates and exports like any other.
"""

from pathlib import Path

import torch

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder import hf
from encoder.model import Encoder


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise BadInput(f"alpha must be a number from 0 to 1, got {alpha!r}")
    return float(alpha)


def mix(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """The interpolated state dict, in float32 whatever the parents were stored as (a committed model is float16).
    Non-float buffers (position ids) come from the fine-tune."""
    if start.keys() != tuned.keys():
        raise BadInput(f"the two checkpoints have different tensors: {sorted(start.keys() ^ tuned.keys())[:3]}")
    out = {}
    for name, t in tuned.items():
        s = start[name]
        if s.shape != t.shape:
            raise BadInput(f"tensor {name} has shape {tuple(s.shape)} in the start and {tuple(t.shape)} in the fine-tune")
        out[name] = ((1 - alpha) * s.float() + alpha * t.float()) if t.is_floating_point() else t
    return out


def interpolate(start: str, finetuned, alpha: float, out, *, half: bool = True) -> Path:
    """Write the checkpoint (1 - alpha) * start + alpha * finetuned to `out` (atomically). `start` is a checkpoint
    folder or "minilm"; both must have the same architecture and vocabulary. `half`: float16 weights, as committed."""
    alpha = check_alpha(alpha)
    start_path = hf.resolve(start)
    a, b = ckpt.load(start_path), ckpt.load(finetuned)
    if a.config["model"] != b.config["model"]:
        diff = sorted(k for k in b.config["model"] if a.config["model"].get(k) != b.config["model"][k])
        raise BadInput(f"{start} and {finetuned} have different model configs ({', '.join(diff)})")
    if a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        raise BadInput(f"{start} and {finetuned} have different vocabularies")
    model = Encoder(b.model.cfg)
    model.load_state_dict(mix(a.model.state_dict(), b.model.state_dict(), alpha))
    recipe = {"start": {"path": hf.shown(start_path), "sha256": ckpt.sha256(start_path)},
              "finetuned": {"path": str(finetuned), "sha256": ckpt.sha256(finetuned)}, "alpha": alpha}
    config = {k: v for k, v in b.config.items() if k != "format"} | {"interpolate": recipe}
    manifest = {"interpolate": recipe, "finetuned_manifest": b.manifest}
    return ckpt.save(out, model=model, tokenizer=b.tokenizer, config=config, log=ckpt.read_log(finetuned),
                     manifest=manifest, half=half)
