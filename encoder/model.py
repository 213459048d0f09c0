"""The in-repo BERT encoder in one file, top to bottom: config, embeddings, attention, feed-forward, block, model.

Shapes: B = batch, T = sequence length, D = d_model, H = heads, Dh = D // H, F = d_ff, V = vocabulary.
`attention_mask` is the usual 1 = token / 0 = padding [B, T]; it becomes an ADDITIVE mask (0 or a large negative)
of shape [B, 1, 1, T], broadcast over heads and query positions, so padded keys get zero attention weight.
"""

import math
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from corpus.errors import BadInput

NORMS = ("pre", "post")
ACTS = ("gelu", "relu")
POSITIONS = ("sinusoidal", "learned")
# Sane bounds, checked before anything is allocated: a config.json is input like any other, and `n_layer: 10000` or
# `d_ff: 1e9` would otherwise ask for tens of GB before any check could run. Far above any BERT we would load.
LIMITS = {"vocab_size": 1_000_000, "n_layer": 128, "n_head": 256, "d_model": 16_384, "d_ff": 131_072,
          "max_len": 65_536, "type_vocab": 1_024, "proj_dim": 16_384}
MAX_PARAMS = 2_000_000_000  # 8 GB of float32


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 30522
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    d_ff: int = 3072
    max_len: int = 104          # positions the model has; a verse window never exceeds it
    dropout: float = 0.1
    norm: str = "pre"           # "pre": LN inside the residual branch (stable without tuning); "post": original BERT
    act: str = "gelu"
    pos: str = "learned"         # BERT's; "sinusoidal" is the fixed table of Vaswani et al.
    pad_id: int = 0
    type_vocab: int = 0         # BERT's token-type table (2 rows); we only ever use type 0; 0 = no table
    ln_eps: float = 1e-5        # LayerNorm epsilon; imported BERT weights were trained with 1e-12
    proj_dim: int = 0           # a linear map of the pooled vector to this size (a distilled student speaks its
                                # teacher's dimension); 0 = none

    def __post_init__(self):
        problems = []
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "d_ff", "max_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                problems.append(f"{name} must be a positive integer, got {v!r}")
        if not problems and self.d_model % self.n_head:
            problems.append(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        for name in ("type_vocab", "proj_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                problems.append(f"{name} must be a non-negative integer, got {v!r}")
        problems += [f"{name} {getattr(self, name)} is over the limit of {limit:,}" for name, limit in LIMITS.items()
                     if isinstance(getattr(self, name), int) and getattr(self, name) > limit]
        if not problems and self.n_params() > MAX_PARAMS:
            problems.append(f"{self.n_params():,} parameters is over the limit of {MAX_PARAMS:,}")
        if not (isinstance(self.ln_eps, (int, float)) and 0.0 < self.ln_eps < 1.0):
            problems.append(f"ln_eps must be in (0, 1), got {self.ln_eps!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name, allowed in (("norm", NORMS), ("act", ACTS), ("pos", POSITIONS)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {'|'.join(allowed)}, got {getattr(self, name)!r}")
        if not problems and not (isinstance(self.pad_id, int) and 0 <= self.pad_id < self.vocab_size):
            problems.append(f"pad_id {self.pad_id!r} is outside the vocabulary of {self.vocab_size}")
        if problems:
            raise BadInput("encoder config: " + "; ".join(problems))

    def n_params(self) -> int:
        """About how many parameters this config makes (embeddings, blocks, MLM head, projection): an upper-bound
        check before allocation, not an exact count."""
        D, F = self.d_model, self.d_ff
        block = 4 * D * D + 2 * D * F + 9 * D + F
        return (self.vocab_size + self.max_len + self.type_vocab + 3) * D + self.n_layer * block + D * D + \
            self.vocab_size + self.proj_dim * (D + 1)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadInput(f"encoder config: unknown field(s) {', '.join(unknown)}")
        return cls(**d)


# Architecture presets. vocab_size and pad_id are placeholders here: training replaces them with the tokenizer's.
PRESETS = {
    "tiny": EncoderConfig(n_layer=2, n_head=2, d_model=64, d_ff=256, max_len=64, dropout=0.0),  # tests: seconds on CPU
    # The shipped checkpoint. No dropout: its CPU pre-training sees the data about once (under-fitting, where dropout
    # only hurts), and on CPU the dropout masks alone cost ~10% of a step.
    "small": EncoderConfig(n_layer=4, n_head=4, d_model=256, d_ff=1024, max_len=104, dropout=0.0),
    "base": EncoderConfig(n_layer=12, n_head=12, d_model=768, d_ff=3072, max_len=104),       # the original's size; GPU
}


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """[n, d] fixed sin/cos table (Vaswani et al.); works for odd d too."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return table


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] 1/0 -> [B, 1, 1, T] with 0 for tokens and the dtype's most negative value for padding."""
    keep = attention_mask.bool()[:, None, None, :]
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Plain softmax(Q K^T / sqrt(Dh) + mask) V, the definition the fused kernel is tested against.
    q, k, v: [B, H, T, Dh]; mask: additive, broadcastable to [B, H, T, T]."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)) + mask   # [B, H, T, T]
    return torch.softmax(scores, dim=-1) @ v                           # [B, H, T, Dh]


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, reference: bool = False) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)                                      # 3 x [B, T, D]
        q, k, v = (t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))  # [B, H, T, Dh]
        mask = mask.to(q.dtype)  # under autocast q may be bf16; the kernel wants one dtype
        if reference:
            y = reference_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, D)                                       # [B, T, D]
        return self.out(y)


class FeedForward(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)
        self.act = nn.GELU() if cfg.act == "gelu" else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))                                       # [B, T, D] -> [B, T, D]


class Block(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, reference: bool = False) -> torch.Tensor:
        if self.pre:   # x + f(LN(x)): the residual stream is never normalised, gradients flow straight through
            x = x + self.drop(self.attn(self.ln1(x), mask, reference))
            x = x + self.drop(self.ff(self.ln2(x)))
        else:          # LN(x + f(x)): original BERT
            x = self.ln1(x + self.drop(self.attn(x, mask, reference)))
            x = self.ln2(x + self.drop(self.ff(x)))
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.pos == "learned":
            self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        else:  # not persistent: rebuilt from the config, so it is not in the checkpoint
            self.register_buffer("pos_table", sinusoidal_positions(cfg.max_len, cfg.d_model), persistent=False)
        # BERT adds a segment embedding; every text here is one segment, so only row 0 is ever added.
        self.type_emb = nn.Embedding(cfg.type_vocab, cfg.d_model) if cfg.type_vocab else None
        # Post-LN normalises the embeddings (as BERT does); pre-LN normalises at the end instead.
        self.ln_emb = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps) if cfg.norm == "post" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps) if cfg.norm == "pre" else None
        # MLM head: dense + act + LN, then a decoder whose weight IS the token embedding (tied) plus its own bias.
        self.head_dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.head_act = nn.GELU() if cfg.act == "gelu" else nn.ReLU()
        self.head_ln = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.decoder_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.proj = nn.Linear(cfg.d_model, cfg.proj_dim) if cfg.proj_dim else None
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """input_ids, attention_mask: [B, T] -> hidden states [B, T, D]."""
        B, T = input_ids.shape
        if T > self.cfg.max_len:
            raise BadInput(f"sequence of {T} tokens is longer than the model's {self.cfg.max_len} positions")
        if self.cfg.pos == "learned":
            x = self.tok_emb(input_ids) + self.pos_emb.weight[:T]                   # [B, T, D] + [T, D]
        else:  # Vaswani et al. scale tokens by sqrt(D): unscaled, the fixed table (rms 0.7) drowns them (rms 0.02)
            x = self.tok_emb(input_ids) * math.sqrt(self.cfg.d_model) + self.pos_table[:T]
        if self.type_emb is not None:
            x = x + self.type_emb.weight[0]                                          # [B, T, D] + [D]
        if self.ln_emb is not None:
            x = self.ln_emb(x)
        x = self.drop(x)
        mask = additive_mask(attention_mask, x.dtype)                                # [B, 1, 1, T]
        for block in self.blocks:
            x = block(x, mask, reference)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return x                                                                     # [B, T, D]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """[..., D] hidden -> [..., V] logits through the tied decoder."""
        h = self.head_ln(self.head_act(self.head_dense(h)))
        return F.linear(h, self.tok_emb.weight, self.decoder_bias)

    def mlm_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, T, V] logits at every position."""
        return self.head(self(input_ids, attention_mask))

    def mlm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over positions whose label is not -100. The head runs on those positions only:
        with 15% masking that skips 85% of the [*, V] decoder work, the largest matmul in a small model."""
        h = self(input_ids, attention_mask)                                          # [B, T, D]
        picked = labels != -100                                                      # [B, T]
        logits = self.head(h[picked])                                                # [M, V]
        return F.cross_entropy(logits.float(), labels[picked])

    @property
    def out_dim(self) -> int:
        return self.cfg.proj_dim or self.cfg.d_model

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        """[B, T] -> [B, out_dim]: mean over non-padding tokens, or the first token's state ("cls", as some imported
        BERT models were trained), then the projection, if any; not normalised."""
        h = self(input_ids, attention_mask).float()                                  # [B, T, D]
        if mode == "cls":
            pooled = h[:, 0]                                                         # [B, D]
        else:
            m = attention_mask.to(h.dtype)[:, :, None]                               # [B, T, 1]
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)                       # [B, D]
        return self.proj(pooled) if self.proj is not None else pooled               # [B, out_dim]

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, out_dim]: the pooled vector, L2-normalised."""
        return F.normalize(self.pool(input_ids, attention_mask), dim=-1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
