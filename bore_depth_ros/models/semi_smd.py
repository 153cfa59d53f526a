"""Semi-SMD-style surround fusion model (our design, after "Semi-SMD: Semi-Supervised Metric Depth Estimation
via Surrounding Cameras"; not the official model, whose code is not released).

Spec: /work/shared/specs/surround-models.md, section B2. One forward pass takes whole rigs:
views [B*N,3,H,W] in ring order (sim.rig.RING_ORDER), so view v's ring neighbours are v-1 and v+1
(mod N) within its rig.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .bore_depth import DECODER_CHANNELS, ReflectConv3x3
from .info import SURROUND_MAX_DEPTH, SURROUND_MIN_DEPTH
from .svr import DEFAULT_WIDTH, OUTPUT_STRIDES, EFAFFeatureDecoder, build_encoder, check_views

TOKEN_STRIDE = 32


class GeometryEncoding(nn.Module):
    """Token embedding of the rig geometry: MLP([ray, sin/cos(pi 2^f ray), camera origin]) -> dim."""

    def __init__(self, dim: int, num_freqs: int = 3) -> None:
        super().__init__()
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32), persistent=False
        )
        in_dim = 3 + 6 * num_freqs + 3
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, rays: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """rays [M,3,h,w], origins [M,3] -> [M, h*w, dim]."""
        r = rays.flatten(2).transpose(1, 2)  # [M, L, 3]
        angles = (r[..., None] * self.freqs).flatten(2)  # [M, L, 3F]
        o = origins[:, None, :].expand(-1, r.shape[1], -1)
        return self.mlp(torch.cat([r, torch.sin(angles), torch.cos(angles), o], dim=-1))


class Attention(nn.Module):
    """Multi-head attention of queries [M,Lq,D] over a context [M,Lk,D] (plain ops, ONNX friendly)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        m, lq, d = x.shape
        q = self.q(x).reshape(m, lq, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(context).reshape(m, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim**-0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(m, lq, d))


class FusionBlock(nn.Module):
    """Pre-norm residual block: view self-attention, ring cross-attention, temporal cross-attention, MLP.

    x [B,N,L,D] current tokens; prev [B,N,Lp,D] previous-frame tokens of the same cameras (keys and
    values only). Ring context of view v: the tokens of views v-1 and v+1 (mod N) of its rig.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm_self, self.norm_ring, self.norm_time, self.norm_prev, self.norm_mlp = (
            nn.LayerNorm(dim) for _ in range(5)
        )
        self.self_attn = Attention(dim, num_heads)
        self.ring_attn = Attention(dim, num_heads)
        self.time_attn = Attention(dim, num_heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        b, n, length, d = x.shape
        flat = lambda t: t.reshape(b * n, -1, d)  # noqa: E731
        y = self.norm_self(x)
        x = x + self.self_attn(flat(y), flat(y)).reshape(b, n, length, d)
        y = self.norm_ring(x)
        ring = torch.cat([torch.roll(y, 1, dims=1), torch.roll(y, -1, dims=1)], dim=2)  # views v-1, v+1
        x = x + self.ring_attn(flat(y), flat(ring)).reshape(b, n, length, d)
        y = self.norm_time(x)
        x = x + self.time_attn(flat(y), flat(self.norm_prev(prev))).reshape(b, n, length, d)
        return x + self.mlp(self.norm_mlp(x))


class SemiSMDNet(nn.Module):
    """Semi-SMD-style fusion model (our design, not the official model).

    - Shared encoder (BoRe-Depth MPViT-tiny by default) on the current and previous frames (one pass).
    - Stride-32 tokens: 1x1 projection to `embed_dim` plus a geometry encoding of each token's
      viewing ray in base_link and its camera's origin (so metric scale can be inferred from the
      camera height and the rig layout).
    - `num_blocks` FusionBlocks. Ring attention is strictly ring-local: after k blocks a view has
      seen only views within ring distance k (default 2: with N = 6 the opposite view never
      influences a view). Previous-frame tokens are attended to but not updated.
    - Fused tokens projected back and added to the stride-32 features; per-view EFAF-style decoder
      to H/`output_stride` (1, 2, 4, 8 or 16) with the current frame's skips; above 1 the head
      logits are bilinearly upsampled to full resolution.
    - depth = focal * exp(log d_min + sigmoid(z) (log d_max - log d_min)); confidence = sigmoid of a
      separate 3x3 head, trained by the semi_smd recipe to predict how well the depth agrees with
      the data at each pixel (`train/recipes/semi_smd.py`, docs/training.md).
    - `backbone` and `width` (channels of the encoder's first stage) as in `build_encoder`.

    forward(image, prev_image [B*N,3,H,W], rays [B*N,3,H/32,W/32], origins [B*N,3], focal [B*N,1])
    -> (depth [B*N,1,H,W] metres, confidence [B*N,1,H,W]). B*N must be a multiple of `num_cameras`.
    """

    def __init__(
        self,
        num_cameras: int = 6,
        backbone: str = "mpvit_tiny",
        embed_dim: int = 128,
        num_blocks: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        min_depth: float = SURROUND_MIN_DEPTH,
        max_depth: float = SURROUND_MAX_DEPTH,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
        drop_path_rate: float = 0.0,
        width: int = DEFAULT_WIDTH,
        output_stride: int = 1,
    ) -> None:
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        if num_cameras < 1 or num_blocks < 1:
            raise ValueError(f"need num_cameras >= 1 and num_blocks >= 1, got {num_cameras}, {num_blocks}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.num_cameras, self.min_depth, self.max_depth = (
            int(num_cameras),
            float(min_depth),
            float(max_depth),
        )
        self.backbone, self.width, self.output_stride = backbone, int(width), int(output_stride)
        self.embed_dim, self.num_blocks, self.num_heads = int(embed_dim), int(num_blocks), int(num_heads)
        self.encoder = build_encoder(backbone, drop_path_rate, width)
        c5 = self.encoder.num_ch_enc[-1]
        self.token_in = nn.Linear(c5, embed_dim)
        self.geometry = GeometryEncoding(embed_dim)
        self.blocks = nn.ModuleList(FusionBlock(embed_dim, num_heads, mlp_ratio) for _ in range(num_blocks))
        self.token_norm = nn.LayerNorm(embed_dim)
        self.token_out = nn.Linear(embed_dim, c5)
        self.decoder = EFAFFeatureDecoder(
            self.encoder.num_ch_enc, decoder_channels, out_level=int(math.log2(output_stride))
        )
        self.depth_head = ReflectConv3x3(self.decoder.out_channels, 1)
        self.confidence_head = ReflectConv3x3(self.decoder.out_channels, 1)

    def model_options(self) -> dict:
        """This network's values of the registry's semi_smd options (recorded in trained weights)."""
        return {
            "backbone": self.backbone,
            "width": self.width,
            "output_stride": self.output_stride,
            "embed_dim": self.embed_dim,
            "blocks": self.num_blocks,
            "heads": self.num_heads,
        }

    def _full_resolution(self, x: torch.Tensor) -> torch.Tensor:
        if self.output_stride == 1:
            return x
        return F.interpolate(x, scale_factor=float(self.output_stride), mode="bilinear", align_corners=False)

    def confidence_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(confidence [B*N,1,H,W], its logit) of decoder `features` (``forward_train()["features"]``);
        the recipe calls it on detached features to train the confidence head alone."""
        logit = self._full_resolution(self.confidence_head(features))
        return torch.sigmoid(logit), logit

    def _check(self, image, prev_image, rays, origins, focal) -> None:
        check_views(image, focal)
        if torch.jit.is_tracing():
            return
        n, _, h, w = image.shape
        expected = {
            "prev_image": (prev_image, (n, 3, h, w)),
            "origins": (origins, (n, 3)),
            "rays": (rays, (n, 3, h // TOKEN_STRIDE, w // TOKEN_STRIDE)),
        }
        for name, (t, shape) in expected.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"expected {name} of shape {list(shape)}, got {list(t.shape)}")
        if n % self.num_cameras:
            raise ValueError(f"batch of {n} views is not a whole number of {self.num_cameras}-camera rigs")

    def forward_train(
        self,
        image: torch.Tensor,
        prev_image: torch.Tensor,
        rays: torch.Tensor,
        origins: torch.Tensor,
        focal: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """depth, confidence [B*N,1,H,W]; depth_logit, confidence_logit [B*N,1,H,W] (pre-sigmoid);
        features [B*N,C,H/s,W/s] (s = output_stride); tokens [B*N,D,H/32,W/32] after fusion."""
        self._check(image, prev_image, rays, origins, focal)
        n, _, h, w = image.shape
        enc = self.encoder(torch.cat([image, prev_image], dim=0))
        cur = [f[:n] for f in enc]
        f5, f5_prev = enc[-1][:n], enc[-1][n:]
        hh, ww = f5.shape[2], f5.shape[3]
        geo = self.geometry(rays, origins)  # [n, L, D]
        tokens = self.token_in(f5.flatten(2).transpose(1, 2)) + geo
        prev = self.token_in(f5_prev.flatten(2).transpose(1, 2)) + geo
        d = tokens.shape[-1]
        x = tokens.reshape(-1, self.num_cameras, hh * ww, d)
        p = prev.reshape(-1, self.num_cameras, hh * ww, d)
        for block in self.blocks:
            x = block(x, p)
        x = self.token_norm(x.reshape(n, hh * ww, d))
        fused = self.token_out(x).transpose(1, 2).reshape(n, -1, hh, ww)
        features = self.decoder([*cur[:-1], f5 + fused])
        logit = self._full_resolution(self.depth_head(features))
        lo, hi = math.log(self.min_depth), math.log(self.max_depth)
        depth = torch.exp(lo + (hi - lo) * torch.sigmoid(logit)) * focal.reshape(-1, 1, 1, 1)
        confidence, confidence_logit = self.confidence_from_features(features)
        return {
            "depth": depth,
            "confidence": confidence,
            "depth_logit": logit,
            "confidence_logit": confidence_logit,
            "features": features,
            "tokens": x.transpose(1, 2).reshape(n, d, hh, ww),
        }

    def forward(
        self,
        image: torch.Tensor,
        prev_image: torch.Tensor,
        rays: torch.Tensor,
        origins: torch.Tensor,
        focal: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_train(image, prev_image, rays, origins, focal)
        return out["depth"], out["confidence"]


__all__ = ["SemiSMDNet", "FusionBlock", "GeometryEncoding", "Attention", "TOKEN_STRIDE"]
