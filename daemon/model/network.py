"""The V2A network: an MMAudio-compatible multimodal flow-matching transformer.

Given noisy audio latents at time t and the picture (semantic "clip" and high-rate "sync"
features) and text conditions, it predicts the flow velocity. The computation and the
parameter names follow ../shared/reference/MMAUDIO_NETWORK.md so the published checkpoints
load key for key; `NetworkConfig` sizes it from `tiny` up to `large_44k`.

Everything is channel-last: latent (B, N, latent_dim), clip (B, Nc, clip_dim), sync
(B, Ns, sync_dim), text (B, Nt, text_dim). Conditioning that does not depend on t is computed
once by `preprocess_conditions` and reused at every sampler step by `predict_flow`.
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SYNC_SEGMENT, NetworkConfig

ROPE_THETA = 10000.0


class InputShapeError(ValueError):
    """Condition or latent tensors whose shapes do not fit the network."""


# ---------------------------------------------------------------------------------------------
# Building blocks


class ChannelLastConv1d(nn.Conv1d):
    """A 1-D convolution over the token axis of a (B, N, C) sequence."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def swiglu_width(dim: int, mlp_dim: int) -> int:
    """Hidden width of the published SwiGLU: two thirds of `mlp_dim`, rounded up to 256."""
    return 256 * math.ceil((2 * mlp_dim // 3) / 256)


class SwiGLU(nn.Module):
    """y = w2(silu(w1 x) * w3 x), bias-free."""

    def __init__(self, dim: int, mlp_dim: int):
        super().__init__()
        width = swiglu_width(dim, mlp_dim)
        self.w1 = nn.Linear(dim, width, bias=False)
        self.w2 = nn.Linear(width, dim, bias=False)
        self.w3 = nn.Linear(dim, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ConvSwiGLU(nn.Module):
    """SwiGLU whose three projections are bias-free convolutions over the token axis."""

    def __init__(self, dim: int, mlp_dim: int, kernel_size: int, padding: int):
        super().__init__()
        width = swiglu_width(dim, mlp_dim)
        self.w1 = ChannelLastConv1d(dim, width, kernel_size, padding=padding, bias=False)
        self.w2 = ChannelLastConv1d(width, dim, kernel_size, padding=padding, bias=False)
        self.w3 = ChannelLastConv1d(dim, width, kernel_size, padding=padding, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of t in [0, 1] (cosines first), then an MLP to the hidden size."""

    def __init__(self, dim: int, frequency_dim: int, max_period: float):
        super().__init__()
        self.max_period = max_period
        # Recomputed at construction, so not part of the checkpoint (published files carry it
        # anyway; the loader drops it).
        self.register_buffer("freqs", self.frequencies(frequency_dim, max_period),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    @staticmethod
    def frequencies(frequency_dim: int, max_period: float, device=None) -> Tensor:
        half = frequency_dim // 2
        exponents = torch.arange(half, dtype=torch.float32, device=device) / half
        return (10000.0 / max_period) * torch.pow(10000.0, -exponents)

    def forward(self, t: Tensor) -> Tensor:
        # t: (B,) -> (B, dim)
        angles = t.float()[:, None] * self.freqs.float()[None]
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


def rotary_table(length: int, head_dim: int, scale: float = 1.0, offset: float = 0.0,
                 device: torch.device | str | None = None) -> Tensor:
    """Rotation (cos, sin) per token and channel pair, float32, shape (length, head_dim/2, 2).

    Token j sits at position `(j + offset) * scale`: the picture stream uses
    scale = latent_len / clip_len so a frame shares its position with the audio of its instant.
    """
    pair = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)[: head_dim // 2]
    freqs = scale * torch.pow(ROPE_THETA, -pair / head_dim)
    positions = torch.arange(length, dtype=torch.float32, device=device) + offset
    angles = positions[:, None] * freqs[None]
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def apply_rotary(x: Tensor, table: Tensor) -> Tensor:
    """Rotate channel pairs (2j, 2j+1) of x (B, H, N, D) by `table` (N, D/2, 2), in float32."""
    shape = x.shape
    pairs = x.float().reshape(*shape[:-1], shape[-1] // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = table[..., 0], table[..., 1]
    rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return rotated.reshape(shape).to(x.dtype)


class AttentionProjection(nn.Module):
    """q, k, v of one stream: a fused projection, RMS-normed q/k, rotary positions."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim)
        self.k_norm = nn.RMSNorm(self.head_dim)

    def forward(self, x: Tensor, rot: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = x.shape
        # The 3h outputs are ordered (head, channel, q/k/v): (B, N, 3h) -> 3 x (B, H, N, D)
        qkv = self.qkv(x).view(b, n, self.num_heads, self.head_dim, 3).permute(4, 0, 2, 1, 3)
        q, k, v = qkv.unbind(0)
        # The norms run in float32 (their weights' dtype; under bf16 autocast the projections
        # give bf16), and attention wants one dtype again.
        q = self.q_norm(q.to(self.q_norm.weight.dtype))
        k = self.k_norm(k.to(self.k_norm.weight.dtype))
        if rot is not None:
            q = apply_rotary(q, rot)
            k = apply_rotary(k, rot)
        return q.to(v.dtype), k.to(v.dtype), v


def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """(B, H, L, D) x3 -> (B, L, H*D), heads concatenated head-major."""
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


class StreamBlock(nn.Module):
    """One token stream of a transformer block with adaLN modulation.

    `pre_only` streams only contribute keys/values (the picture and text streams of the last
    joint block, whose outputs nothing reads).
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 1, pre_only: bool = False):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = AttentionProjection(dim, num_heads)
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(), nn.Linear(dim, (2 if pre_only else 6) * dim)
        )
        if pre_only:
            return
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        if kernel_size == 1:
            self.linear1 = nn.Linear(dim, dim)
            self.ffn = SwiGLU(dim, 4 * dim)
        else:
            pad = (kernel_size - 1) // 2
            self.linear1 = ChannelLastConv1d(dim, dim, kernel_size, padding=pad)
            self.ffn = ConvSwiGLU(dim, 4 * dim, kernel_size, pad)

    def pre_attention(self, x: Tensor, c: Tensor, rot: Tensor | None):
        # c: (B, 1, h) or per token (B, N, h)
        mods = self.adaLN_modulation(c).chunk(2 if self.pre_only else 6, dim=-1)
        q, k, v = self.attn(modulate(self.norm1(x), mods[0], mods[1]), rot)
        return q, k, v, mods

    def post_attention(self, x: Tensor, attn_out: Tensor, mods: tuple[Tensor, ...]) -> Tensor:
        if self.pre_only:
            return x
        _, _, gate1, shift2, scale2, gate2 = mods
        x = x + self.linear1(attn_out) * gate1
        return x + self.ffn(modulate(self.norm2(x), shift2, scale2)) * gate2

    def forward(self, x: Tensor, c: Tensor, rot: Tensor | None) -> Tensor:
        """Self-attention over this stream alone (the fused blocks)."""
        q, k, v, mods = self.pre_attention(x, c, rot)
        return self.post_attention(x, attend(q, k, v), mods)


class JointBlock(nn.Module):
    """Latent, picture and text streams with their own weights, attending jointly."""

    def __init__(self, dim: int, num_heads: int, pre_only: bool):
        super().__init__()
        self.latent_block = StreamBlock(dim, num_heads, kernel_size=3)
        self.clip_block = StreamBlock(dim, num_heads, kernel_size=3, pre_only=pre_only)
        self.text_block = StreamBlock(dim, num_heads, kernel_size=1, pre_only=pre_only)

    def forward(self, latent: Tensor, clip: Tensor, text: Tensor, global_c: Tensor,
                extended_c: Tensor, latent_rot: Tensor, clip_rot: Tensor):
        lq, lk, lv, lmods = self.latent_block.pre_attention(latent, extended_c, latent_rot)
        cq, ck, cv, cmods = self.clip_block.pre_attention(clip, global_c, clip_rot)
        tq, tk, tv, tmods = self.text_block.pre_attention(text, global_c, None)
        out = attend(torch.cat([lq, cq, tq], 2), torch.cat([lk, ck, tk], 2),
                     torch.cat([lv, cv, tv], 2))
        lo, co, to = out.split([latent.shape[1], clip.shape[1], text.shape[1]], dim=1)
        latent = self.latent_block.post_attention(latent, lo, lmods)
        clip = self.clip_block.post_attention(clip, co, cmods)
        text = self.text_block.post_attention(text, to, tmods)
        return latent, clip, text


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.conv = ChannelLastConv1d(dim, out_dim, 7, padding=3)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.conv(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------------------------------------
# Preprocessed conditions


@dataclass
class Conditions:
    """The t-independent part of the conditioning, computed once per sampling."""

    clip: Tensor  # (B, Nc, h) projected semantic picture tokens
    text: Tensor  # (B, Nt, h) projected text tokens
    sync: Tensor  # (B, N, h) projected sync features at the latent rate
    global_cond: Tensor  # (B, 1, h) global_cond_mlp(clip summary + text summary)
    latent_rot: Tensor  # (N, D/2, 2) float32
    clip_rot: Tensor  # (Nc, D/2, 2) float32

    @property
    def batch_size(self) -> int:
        return self.clip.shape[0]

    @property
    def latent_seq_len(self) -> int:
        return self.sync.shape[1]

    def cat(self, other: Conditions) -> Conditions:
        """Stack two condition sets along the batch (conditional, then unconditional)."""
        if (other.latent_seq_len, other.clip.shape[1]) != (self.latent_seq_len,
                                                           self.clip.shape[1]):
            raise InputShapeError("conditions to batch together must have equal lengths")
        return Conditions(
            clip=torch.cat([self.clip, other.clip]), text=torch.cat([self.text, other.text]),
            sync=torch.cat([self.sync, other.sync]),
            global_cond=torch.cat([self.global_cond, other.global_cond]),
            latent_rot=self.latent_rot, clip_rot=self.clip_rot,
        )


# ---------------------------------------------------------------------------------------------
# The network


class V2ANetwork(nn.Module):
    """MMAudio-layout flow-matching transformer; see the module docstring."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = c = config
        h = c.hidden_dim
        act = nn.SiLU if c.v2 else nn.SELU

        self.audio_input_proj = nn.Sequential(
            ChannelLastConv1d(c.latent_dim, h, 7, padding=3), act(), ConvSwiGLU(h, 4 * h, 7, 3)
        )
        if c.v2:
            self.clip_input_proj = nn.Sequential(
                nn.Linear(c.clip_dim, h), nn.SiLU(), ConvSwiGLU(h, 4 * h, 3, 1)
            )
            self.text_input_proj = nn.Sequential(
                nn.Linear(c.text_dim, h), nn.SiLU(), SwiGLU(h, 4 * h)
            )
        else:
            self.clip_input_proj = nn.Sequential(nn.Linear(c.clip_dim, h), ConvSwiGLU(h, 4 * h, 3, 1))
            self.text_input_proj = nn.Sequential(nn.Linear(c.text_dim, h), SwiGLU(h, 4 * h))
        self.sync_input_proj = nn.Sequential(
            ChannelLastConv1d(c.sync_dim, h, 7, padding=3), act(), ConvSwiGLU(h, 4 * h, 3, 1)
        )
        self.clip_cond_proj = nn.Linear(h, h)
        self.text_cond_proj = nn.Linear(h, h)
        self.global_cond_mlp = SwiGLU(h, 4 * h)
        self.t_embed = TimestepEmbedding(
            h, frequency_dim=h if c.v2 else 256, max_period=1.0 if c.v2 else 10000.0
        )
        self.joint_blocks = nn.ModuleList(
            JointBlock(h, c.num_heads, pre_only=(i == c.joint_depth - 1))
            for i in range(c.joint_depth)
        )
        self.fused_blocks = nn.ModuleList(
            StreamBlock(h, c.num_heads, kernel_size=3) for _ in range(c.fused_depth)
        )
        self.final_layer = FinalLayer(h, c.latent_dim)

        self.sync_pos_emb = nn.Parameter(torch.zeros(1, 1, SYNC_SEGMENT, c.sync_dim))
        # The learned "no condition" features used for condition dropout and guidance.
        self.empty_string_feat = nn.Parameter(torch.zeros(c.text_seq_len, c.text_dim))
        self.empty_clip_feat = nn.Parameter(torch.zeros(1, c.clip_dim))
        self.empty_sync_feat = nn.Parameter(torch.zeros(1, c.sync_dim))
        # Latent statistics of the training data; the sampler normalises with them.
        self.register_buffer("latent_mean", torch.zeros(1, 1, c.latent_dim))
        self.register_buffer("latent_std", torch.ones(1, 1, c.latent_dim))
        # Rotary tables for the trained lengths; other lengths are computed per call.
        self.register_buffer("latent_rot", rotary_table(c.latent_seq_len, c.head_dim),
                             persistent=False)
        self.register_buffer(
            "clip_rot",
            rotary_table(c.clip_seq_len, c.head_dim, c.latent_seq_len / c.clip_seq_len),
            persistent=False,
        )
        self.initialize_weights()

    @torch.no_grad()
    def reset_derived_buffers(self) -> None:
        """Recompute the non-persistent buffers (rotary tables, timestep frequencies), e.g.
        after `to_empty()` allocated the network without initialising it."""
        c = self.config
        device = self.latent_rot.device
        self.latent_rot = rotary_table(c.latent_seq_len, c.head_dim, device=device)
        self.clip_rot = rotary_table(c.clip_seq_len, c.head_dim,
                                     c.latent_seq_len / c.clip_seq_len, device=device)
        self.t_embed.freqs = self.t_embed.frequencies(self.t_embed.freqs.numel() * 2,
                                                      self.t_embed.max_period, device)

    # -- initialisation and description -------------------------------------------------------

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Xavier weights, zero biases, and adaLN-Zero: every block and the output start as
        the identity/zero map, which keeps early flow-matching training stable."""
        if self.latent_mean.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv1d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for block in self._stream_blocks():
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.conv.weight)
        nn.init.zeros_(self.final_layer.conv.bias)
        for p in (self.empty_string_feat, self.empty_clip_feat, self.empty_sync_feat):
            nn.init.normal_(p, std=0.02)
        nn.init.normal_(self.sync_pos_emb, std=0.02)

    def _stream_blocks(self):
        for jb in self.joint_blocks:
            yield from (jb.latent_block, jb.clip_block, jb.text_block)
        yield from self.fused_blocks

    def parameter_counts(self) -> dict[str, int]:
        groups: dict[str, int] = {}
        for name, p in self.named_parameters():
            top = name.split(".")[0]
            if top.endswith("_feat") or top == "sync_pos_emb":
                top = "learned condition features"
            groups[top] = groups.get(top, 0) + p.numel()
        return groups

    def describe(self, file=None) -> str:
        """Print (and return) the parameter count of each part of the network."""
        c = self.config
        counts = self.parameter_counts()
        total = sum(counts.values())
        lines = [
            f"V2A network: hidden {c.hidden_dim}, {c.num_heads} heads x {c.head_dim}, "
            f"{c.joint_depth} joint + {c.fused_depth} fused blocks, "
            f"{'v2' if c.v2 else 'v1'}; latent {c.latent_dim} x {c.latent_seq_len}, "
            f"clip {c.clip_dim} x {c.clip_seq_len}, sync {c.sync_dim} x {c.sync_seq_len}, "
            f"text {c.text_dim} x {c.text_seq_len}",
        ]
        for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<28} {n:>14,}")
        lines.append(f"  {'total':<28} {total:>14,}  ({total / 1e6:.2f} M)")
        text = "\n".join(lines)
        print(text, file=file or sys.stdout)
        return text

    # -- latent normalisation ----------------------------------------------------------------

    def normalize(self, latent: Tensor) -> Tensor:
        return (latent - self.latent_mean) / self.latent_std

    def unnormalize(self, latent: Tensor) -> Tensor:
        return latent * self.latent_std + self.latent_mean

    # -- conditions ---------------------------------------------------------------------------

    def rotary_tables(self, latent_seq_len: int, clip_seq_len: int,
                      clip_offset: float = 0.0) -> tuple[Tensor, Tensor]:
        """Rotary tables for these lengths: the stored ones for the trained lengths, else
        computed (cheap; once per sampling). `clip_offset` shifts the picture positions by that
        many picture frames (windows whose picture slice does not start on their first latent)."""
        c = self.config
        device = self.latent_mean.device
        # The stored tables serve only while float32 (`.to(bfloat16)` would have cast them).
        stored = self.latent_rot.dtype == torch.float32
        if latent_seq_len == c.latent_seq_len and stored:
            latent_rot = self.latent_rot
        else:
            latent_rot = rotary_table(latent_seq_len, c.head_dim, device=device)
        trained = (latent_seq_len, clip_seq_len) == (c.latent_seq_len, c.clip_seq_len)
        if trained and stored and not clip_offset:
            clip_rot = self.clip_rot
        else:
            clip_rot = rotary_table(clip_seq_len, c.head_dim, latent_seq_len / clip_seq_len,
                                    offset=clip_offset, device=device)
        return latent_rot, clip_rot

    def _check_inputs(self, clip_f: Tensor, sync_f: Tensor, text_f: Tensor) -> None:
        c = self.config
        for name, x, dim in (("clip_f", clip_f, c.clip_dim), ("sync_f", sync_f, c.sync_dim),
                             ("text_f", text_f, c.text_dim)):
            if x.ndim != 3 or x.shape[-1] != dim:
                raise InputShapeError(
                    f"{name} must be (batch, tokens, {dim}), got {tuple(x.shape)}"
                )
        if sync_f.shape[1] % SYNC_SEGMENT:
            raise InputShapeError(
                f"sync_f has {sync_f.shape[1]} tokens, not a multiple of {SYNC_SEGMENT}: pass "
                "whole sync segments"
            )
        if not clip_f.shape[0] == sync_f.shape[0] == text_f.shape[0]:
            raise InputShapeError(
                f"batch sizes differ: clip {clip_f.shape[0]}, sync {sync_f.shape[0]}, "
                f"text {text_f.shape[0]}"
            )

    def preprocess_conditions(self, clip_f: Tensor, sync_f: Tensor, text_f: Tensor,
                              latent_seq_len: int | None = None,
                              clip_offset: float = 0.0) -> Conditions:
        """Project the conditions (everything that does not depend on t), once per sampling.

        clip_f (B, Nc, clip_dim), sync_f (B, Ns, sync_dim) with Ns a multiple of 8,
        text_f (B, Nt, text_dim); `latent_seq_len` N defaults to the trained length.
        """
        self._check_inputs(clip_f, sync_f, text_f)
        n = latent_seq_len or self.config.latent_seq_len
        b, ns, _ = sync_f.shape
        # Add the position inside each 8-frame sync segment.
        sync = (sync_f.view(b, ns // SYNC_SEGMENT, SYNC_SEGMENT, -1) + self.sync_pos_emb)
        sync = sync.flatten(1, 2)  # (B, Ns, sync_dim)
        clip = self.clip_input_proj(clip_f)  # (B, Nc, h)
        sync = self.sync_input_proj(sync)  # (B, Ns, h)
        text = self.text_input_proj(text_f)  # (B, Nt, h)
        sync = F.interpolate(sync.transpose(1, 2), size=n, mode="nearest-exact").transpose(1, 2)
        summary = self.clip_cond_proj(clip.mean(dim=1)) + self.text_cond_proj(text.mean(dim=1))
        global_cond = self.global_cond_mlp(summary).unsqueeze(1)  # (B, 1, h)
        latent_rot, clip_rot = self.rotary_tables(n, clip.shape[1], clip_offset)
        return Conditions(clip=clip, text=text, sync=sync, global_cond=global_cond,
                          latent_rot=latent_rot, clip_rot=clip_rot)

    def empty_features(self, batch_size: int, clip_seq_len: int,
                       sync_seq_len: int) -> tuple[Tensor, Tensor, Tensor]:
        """Raw "no condition" features (clip, sync, text): the learned empty features."""
        clip = self.empty_clip_feat.expand(batch_size, clip_seq_len, -1)
        sync = self.empty_sync_feat.expand(batch_size, sync_seq_len, -1)
        text = self.empty_string_feat.expand(batch_size, -1, -1)
        return clip, sync, text

    def empty_conditions(self, batch_size: int, latent_seq_len: int | None = None,
                         clip_seq_len: int | None = None, sync_seq_len: int | None = None,
                         clip_offset: float = 0.0) -> Conditions:
        """The unconditional branch's conditions: every row is the same, so one row is
        projected and expanded to `batch_size`."""
        c = self.config
        clip, sync, text = self.empty_features(1, clip_seq_len or c.clip_seq_len,
                                               sync_seq_len or c.sync_seq_len)
        cond = self.preprocess_conditions(clip, sync, text, latent_seq_len, clip_offset)
        return Conditions(
            clip=cond.clip.expand(batch_size, -1, -1), text=cond.text.expand(batch_size, -1, -1),
            sync=cond.sync.expand(batch_size, -1, -1),
            global_cond=cond.global_cond.expand(batch_size, -1, -1),
            latent_rot=cond.latent_rot, clip_rot=cond.clip_rot,
        )

    # -- flow -----------------------------------------------------------------------------------

    def predict_flow(self, latent: Tensor, t: Tensor, conditions: Conditions) -> Tensor:
        """Velocity for the normalised `latent` (B, N, latent_dim) at times t (B,) or scalar."""
        b, n, _ = latent.shape
        if n != conditions.latent_seq_len or b != conditions.batch_size:
            raise InputShapeError(
                f"latent is {tuple(latent.shape)} but the conditions were prepared for batch "
                f"{conditions.batch_size} x {conditions.latent_seq_len} tokens"
            )
        t = torch.as_tensor(t, device=latent.device)
        if t.ndim == 0:
            t = t.expand(b)
        x = self.audio_input_proj(latent)  # (B, N, h)
        global_c = self.t_embed(t).unsqueeze(1) + conditions.global_cond  # (B, 1, h)
        extended_c = global_c + conditions.sync  # (B, N, h)
        clip, text = conditions.clip, conditions.text
        for block in self.joint_blocks:
            x, clip, text = block(x, clip, text, global_c, extended_c, conditions.latent_rot,
                                  conditions.clip_rot)
        for block in self.fused_blocks:
            x = block(x, extended_c, conditions.latent_rot)
        # The published network conditions its output layer on global_c, not extended_c.
        return self.final_layer(x, global_c)  # (B, N, latent_dim)

    def forward(self, latent: Tensor, clip_f: Tensor, sync_f: Tensor, text_f: Tensor,
                t: Tensor) -> Tensor:
        """Velocity for normalised latents (B, N, latent_dim); lengths taken from the inputs."""
        conditions = self.preprocess_conditions(clip_f, sync_f, text_f, latent.shape[1])
        return self.predict_flow(latent, t, conditions)


def build_network(config: NetworkConfig | str | None = None, *, device=None, dtype=None,
                  **sizes) -> V2ANetwork:
    """Build the network from a config, a preset name, or the published constructor sizes
    (`latent_dim=..., hidden_dim=..., v2=...`). `device="meta"` builds without memory."""
    from .config import preset

    if config is None:
        config = NetworkConfig(**sizes)
    else:
        if isinstance(config, str):
            config = preset(config)
        if sizes:
            config = config.with_(**sizes)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        net = V2ANetwork(config)
    if dtype is not None:
        net = net.to(dtype)
    return net

