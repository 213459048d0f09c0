"""WiSE-FT interpolation: the ends are the parents, the middle is their mean, the recipe is in the config, and
checkpoints that cannot be mixed are refused by name."""

import pytest
import torch

from corpus.errors import BadInput
from encoder import checkpoint as ckpt
from encoder import hf
from encoder.interpolate import interpolate
from retrievers.encoder import DEFAULT_CHECKPOINT

SMALL = DEFAULT_CHECKPOINT.parent / "versebench-small"
FINETUNED = DEFAULT_CHECKPOINT.parent / "versebench-base"  # the fine-tune the default was interpolated from


def weights(folder) -> dict[str, torch.Tensor]:
    return ckpt.load(folder).model.state_dict()


def test_ends_and_middle_are_the_parents_and_their_mean(tmp_path):
    start, tuned = weights(hf.resolve("minilm")), weights(FINETUNED)
    name = "blocks.0.attn.qkv.weight"
    assert not torch.equal(start[name], tuned[name])  # the fine-tune moved it, so the test can tell them apart
    for alpha, want in ((0.0, start[name]), (1.0, tuned[name]), (0.5, (start[name] + tuned[name]) / 2)):
        got = weights(interpolate("minilm", FINETUNED, alpha, tmp_path / f"a{alpha}", half=False))[name]
        assert torch.allclose(got, want, atol=1e-6), alpha


def test_recipe_is_recorded_and_the_result_is_a_normal_checkpoint(tmp_path):
    out = interpolate("minilm", FINETUNED, 0.4, tmp_path / "wise")
    c = ckpt.load(out)  # verifies weights against the manifest, shapes against the config
    recipe = c.config["interpolate"]
    assert recipe["alpha"] == 0.4 and recipe["start"]["path"] == "minilm"
    assert recipe["finetuned"]["sha256"] == ckpt.sha256(FINETUNED)
    assert c.config["model"] == ckpt.read_config(FINETUNED)["model"]


def test_mismatched_or_bad_arguments_are_refused(tmp_path):
    with pytest.raises(BadInput, match="different model configs"):
        interpolate(str(SMALL), FINETUNED, 0.5, tmp_path / "x")
    for alpha in (-0.1, 1.5, "half", True):
        with pytest.raises(BadInput, match="alpha"):
            interpolate("minilm", FINETUNED, alpha, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bench_interpolate_writes_a_checkpoint_and_refuses_a_bad_alpha(tmp_path):
    from tests.test_cli import assert_one_line_error, bench

    p = bench("interpolate", "--finetuned", str(FINETUNED), "--alpha", "0.25", "--out", str(tmp_path / "w"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert ckpt.load(tmp_path / "w").config["interpolate"]["alpha"] == 0.25
    assert_one_line_error(bench("interpolate", "--finetuned", str(FINETUNED), "--alpha", "2",
                                "--out", str(tmp_path / "v")), "alpha")
    assert not (tmp_path / "v").exists()
