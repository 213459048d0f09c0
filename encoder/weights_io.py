"""Weight files checked before they allocate: a safetensors header read alone (shapes, no tensor), the shapes a
config implies (a model on the meta device), and one line naming the first difference.

A checkpoint's config.json is input like any other: `n_layer: 10000` with weights for 4 layers, or `d_ff: 1e9`,
would otherwise allocate tens of GB before the mismatch is seen. Checking the config's bounds (EncoderConfig) and then
the header against it first makes every mismatch a one-line refusal in well under a second, and bounds what loading
allocates by the size of the weight file itself.
"""

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from corpus.errors import at
from encoder.model import Encoder, EncoderConfig


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header alone (its 8-byte length and JSON), no tensor read:
    what the config is checked against before anything is allocated. `safe_open` checks that every tensor's bytes
    lie inside the file, so a truncated file is refused here too."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise at(path, None, f"corrupt safetensors file ({str(e).splitlines()[0][:100]})") from None


def expected_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """The state dict's shapes the config implies, from a model on the meta device (no memory). The config's own
    bounds (encoder.model.LIMITS) keep even this cheap."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in Encoder(cfg).state_dict().items()}


def check_shapes(found: dict, expected: dict, where) -> None:
    """One line naming the first difference between a weight file's tensors and the config's."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise at(where, None, f"tensors do not match the config: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, shape in expected.items():
        if tuple(found[k]) != tuple(shape):
            raise at(where, None, f"tensor {k} has shape {tuple(found[k])}, config.json implies {tuple(shape)}")
