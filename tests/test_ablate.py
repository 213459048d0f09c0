"""`bench ablate`: each variant flips exactly its switch; the tiny budget runs end to end through the harness."""

import json
from dataclasses import asdict

import pytest
import torch

from corpus.errors import BadInput
from harness import ablate as A
from encoder import checkpoint as ckpt


def flat(tcfg, fcfg) -> dict:
    out = {f"train.{k}": v for k, v in asdict(tcfg).items() if k not in ("out", "model")}
    out.update({f"model.{k}": v for k, v in tcfg.model.items()})
    if fcfg is not None:
        out.update({f"ft.{k}": v for k, v in asdict(fcfg).items() if k not in ("out", "init")})
    return out


EXPECTED = {
    "post-ln": {"model.norm": "post"},
    "relu": {"model.act": "relu"},
    "sinusoidal": {"model.pos": "sinusoidal"},
    "sgd": {"train.optimizer": "sgd", "ft.optimizer": "sgd", "train.lr": A.BUDGETS["cpu"].sgd_lr[0],
            "ft.lr": A.BUDGETS["cpu"].sgd_lr[1]},
    "no-clip": {"train.clip": None, "ft.clip": None},
    "no-warmup": {"train.warmup": 0, "ft.warmup": 0},
    "seed-1": {"train.seed": 1, "ft.seed": 1},
}


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_each_variant_flips_exactly_its_switch(variant, tmp_path):
    base = flat(*A.variant_configs(A.BUDGETS["cpu"], "baseline", tmp_path))
    mine = flat(*A.variant_configs(A.BUDGETS["cpu"], variant, tmp_path))
    changed = {k: mine.get(k) for k in set(base) | set(mine) if base.get(k) != mine.get(k)}
    assert changed == EXPECTED[variant]


def test_baseline_is_the_documented_recipe(tmp_path):
    tcfg, fcfg = A.variant_configs(A.BUDGETS["cpu"], "baseline", tmp_path)
    from encoder.model import EncoderConfig
    arch = EncoderConfig(**{**tcfg.model, "vocab_size": 100})
    assert (arch.norm, arch.act, arch.pos) == ("pre", "gelu", "learned")
    assert tcfg.optimizer == fcfg.optimizer == "adamw" and tcfg.clip == fcfg.clip == 1.0
    assert tcfg.warmup > 0 and fcfg.warmup > 0 and fcfg.init == tcfg.out
    # same budget for every variant: steps and batch sizes never change
    for v in A.SWITCHES:
        t, f = A.variant_configs(A.BUDGETS["cpu"], v, tmp_path)
        assert (t.steps, t.batch_size) == (tcfg.steps, tcfg.batch_size)
        assert f is None if v == "mlm-only" else (f.steps, f.batch_size) == (fcfg.steps, fcfg.batch_size)
    with pytest.raises(BadInput, match="unknown ablation variant"):
        A.variant_configs(A.BUDGETS["cpu"], "dropout", tmp_path)


@pytest.mark.slow
def test_tiny_budget_end_to_end(home, tmp_path):
    torch.set_num_threads(1)
    s = A.ablate("tiny", tmp_path / "work", only=("mlm-only",), device="cpu", home=home)
    assert list(s["variants"]) == ["baseline", "mlm-only"]
    sets = A.BUDGETS["tiny"].sets
    for row in s["variants"].values():
        assert set(row["ndcg@10"]) == set(sets) and all(0.0 <= x <= 1.0 for x in row["ndcg@10"].values())
        assert row["mlm_val_loss"] > 0
    assert s["variants"]["baseline"]["ft_val_acc"] is not None and s["variants"]["mlm-only"]["ft_val_acc"] is None
    assert set(s["variants"]["mlm-only"]["p"]) == set(sets) and s["comparisons"] == len(sets)
    # mlm-only IS the baseline's MLM phase (same config, same seed: trained once), evaluated before fine-tuning
    assert s["variants"]["mlm-only"]["checkpoint_sha256"] == ckpt.sha256(tmp_path / "work" / "baseline" / "mlm")
    assert s["variants"]["baseline"]["checkpoint_sha256"] != s["variants"]["mlm-only"]["checkpoint_sha256"]
    A.write(s, tmp_path / "abl.md", tmp_path / "abl.json")
    md = (tmp_path / "abl.md").read_text()
    assert "| baseline |" in md and "| mlm-only |" in md and "**mlm-only**" in md
    assert json.loads((tmp_path / "abl.json").read_text())["budget"]["name"] == "tiny"
    # a rerun reuses the stored results (same config) instead of training again
    again = A.ablate("tiny", tmp_path / "work", only=("mlm-only",), device="cpu", home=home)
    assert again["variants"] == s["variants"]
    first = json.loads((tmp_path / "work" / "baseline" / "result.json").read_text())["run_folder"]
    assert sorted(p.name for p in (tmp_path / "work" / "runs").iterdir()) == sorted(
        json.loads((tmp_path / "work" / v / "result.json").read_text())["run_folder"].rsplit("/", 1)[1]
        for v in ("baseline", "mlm-only")) and first
