"""Modified MPViT-tiny encoder of BoRe-Depth (clean-room implementation from the project spec).

Structure: a stride-2 stem (F1) and four multi-path stages (F2..F5). Each stage embeds the input at
P scales with a chain of depthwise-separable convs, runs one MHCA encoder (factorized attention with
convolutional position encodings) per path, adds a convolutional local branch (InvRes) on the first
path and fuses everything with a 1x1 conv.

Attribute names follow the official checkpoints' key names. The CPE and CRPE modules of a path
encoder are shared by all its layers and registered three times (encoder.cpe/crpe,
layer.cpe/crpe, layer.factoratt_crpe.crpe), so `state_dict()` lists them under every name, as
the official checkpoints do, while `parameters()` yields each tensor once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

MPVIT_TINY_CONFIG = dict(
    num_paths=(2, 3, 3, 3),
    num_layers=(1, 2, 4, 1),
    embed_dims=(64, 96, 176, 216),
    mlp_ratios=(2, 2, 2, 2),
    num_heads=(8, 8, 8, 8),
)

# CRPE: number of heads handled by each depthwise kernel size (3x3, 5x5, 7x7).
CRPE_HEADS_PER_KERNEL = {3: 2, 5: 3, 7: 3}


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (per sample); the identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Conv2dBN(nn.Module):
    """Bias-free conv + BatchNorm + optional activation (keys: conv.*, bn.*)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.Hardswish() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv2dBN(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 (both bias-free) + BN + Hardswish."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)
        self.pwconv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pwconv(self.dwconv(x))))


class DWCPatchEmbed(nn.Module):
    """One patch-embedding path (key prefix patch_conv.*)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.patch_conv = DWConv2dBN(channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_conv(x)


class PatchEmbedStage(nn.Module):
    """Chain of P embeddings; path p consumes path p-1, giving receptive fields 3, 5, 7.

    Only the first embedding downsamples (stride 2).
    """

    def __init__(self, channels: int, num_paths: int) -> None:
        super().__init__()
        self.patch_embeds = nn.ModuleList(
            DWCPatchEmbed(channels, stride=2 if idx == 0 else 1) for idx in range(num_paths)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        paths = []
        for embed in self.patch_embeds:
            x = embed(x)
            paths.append(x)
        return paths


class ConvPosEnc(nn.Module):
    """Conditional position encoding: tokens + depthwise 3x3 conv of the token map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, num_tokens, channels = tokens.shape
        feat = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        feat = self.proj(feat) + feat
        return feat.flatten(2).transpose(1, 2)


class ConvRelPosEnc(nn.Module):
    """Convolutional relative position encoding: q * DWConv(v), heads split over 3/5/7 kernels."""

    def __init__(self, head_dim: int, num_heads: int) -> None:
        super().__init__()
        if sum(CRPE_HEADS_PER_KERNEL.values()) != num_heads:
            raise ValueError(f"CRPE head split {CRPE_HEADS_PER_KERNEL} does not cover {num_heads} heads")
        self.head_dim = head_dim
        self.num_heads = num_heads
        self.channel_splits = [heads * head_dim for heads in CRPE_HEADS_PER_KERNEL.values()]
        self.conv_list = nn.ModuleList(
            nn.Conv2d(ch, ch, kernel, 1, kernel // 2, groups=ch)
            for kernel, ch in zip(CRPE_HEADS_PER_KERNEL, self.channel_splits)
        )

    def forward(self, q: torch.Tensor, v: torch.Tensor, height: int, width: int) -> torch.Tensor:
        # q, v: [B, heads, N, head_dim]
        batch, heads, num_tokens, head_dim = v.shape
        v_map = v.transpose(2, 3).reshape(batch, heads * head_dim, height, width)
        v_parts = torch.split(v_map, self.channel_splits, dim=1)
        conv_v = torch.cat([conv(part) for conv, part in zip(self.conv_list, v_parts)], dim=1)
        conv_v = conv_v.reshape(batch, heads, head_dim, num_tokens).transpose(2, 3)
        return q * conv_v


class FactorAttConvRelPosEnc(nn.Module):
    """Factorized attention: q (softmax_N(k)^T v) * head_dim^-0.5, plus CRPE, then projection."""

    def __init__(self, dim: int, num_heads: int, shared_crpe: ConvRelPosEnc) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.crpe = shared_crpe

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, num_tokens, dim = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, num_tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        k_softmax = k.softmax(dim=2)
        context = torch.matmul(k_softmax.transpose(2, 3), v)  # [B, heads, head_dim, head_dim]
        attended = torch.matmul(q, context)
        out = self.scale * attended + self.crpe(q, v, height, width)
        out = out.transpose(1, 2).reshape(batch, num_tokens, dim)
        return self.proj(out)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MHCALayer(nn.Module):
    """One transformer layer: CPE, pre-LN factorized attention + CRPE, pre-LN MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        shared_cpe: ConvPosEnc,
        shared_crpe: ConvRelPosEnc,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.cpe = shared_cpe
        self.crpe = shared_crpe  # registered here only so the checkpoint alias keys exist
        self.factoratt_crpe = FactorAttConvRelPosEnc(dim, num_heads, shared_crpe)
        self.drop_path = DropPath(drop_path)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        tokens = self.cpe(tokens, height, width)
        tokens = tokens + self.drop_path(self.factoratt_crpe(self.norm1(tokens), height, width))
        return tokens + self.drop_path(self.mlp(self.norm2(tokens)))


class MHCAEncoder(nn.Module):
    """Path encoder: L MHCA layers sharing one CPE and one CRPE; map in, map out."""

    def __init__(
        self, dim: int, num_layers: int, num_heads: int, mlp_ratio: float, drop_path_list: Sequence[float]
    ) -> None:
        super().__init__()
        self.cpe = ConvPosEnc(dim)
        self.crpe = ConvRelPosEnc(dim // num_heads, num_heads)
        self.MHCA_layers = nn.ModuleList(
            MHCALayer(dim, num_heads, mlp_ratio, self.cpe, self.crpe, drop_path_list[idx])
            for idx in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for layer in self.MHCA_layers:
            tokens = layer(tokens, height, width)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class InvResBlock(nn.Module):
    """Local convolutional branch: 1x1 -> DW 3x3 -> 1x1 with BN, plus identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBN(channels, channels, act=True)
        self.dwconv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.Hardswish()
        self.conv2 = Conv2dBN(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv1(x)
        feat = self.act(self.norm(self.dwconv(feat)))
        return x + self.conv2(feat)


class MHCAStage(nn.Module):
    """One stage's transformer part: a path encoder per path, InvRes on path 0, 1x1 aggregation."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        num_paths: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_list: Sequence[float],
    ) -> None:
        super().__init__()
        self.mhca_blks = nn.ModuleList(
            MHCAEncoder(dim, num_layers, num_heads, mlp_ratio, drop_path_list) for _ in range(num_paths)
        )
        self.InvRes = InvResBlock(dim)
        self.aggregate = Conv2dBN(dim * (num_paths + 1), out_dim, act=True)

    def forward(self, paths: list[torch.Tensor]) -> torch.Tensor:
        outputs = [self.InvRes(paths[0])]
        outputs.extend(encoder(path) for encoder, path in zip(self.mhca_blks, paths))
        return self.aggregate(torch.cat(outputs, dim=1))


class MPViTEncoder(nn.Module):
    """Modified MPViT-tiny; `forward` returns [F1..F5] at strides 2..32 with `num_ch_enc` channels."""

    def __init__(
        self,
        num_paths: Sequence[int] = MPVIT_TINY_CONFIG["num_paths"],
        num_layers: Sequence[int] = MPVIT_TINY_CONFIG["num_layers"],
        embed_dims: Sequence[int] = MPVIT_TINY_CONFIG["embed_dims"],
        mlp_ratios: Sequence[float] = MPVIT_TINY_CONFIG["mlp_ratios"],
        num_heads: Sequence[int] = MPVIT_TINY_CONFIG["num_heads"],
        in_chans: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        num_stages = len(embed_dims)
        self.num_ch_enc = [embed_dims[0]] + [
            embed_dims[min(s + 1, num_stages - 1)] for s in range(num_stages)
        ]
        total_layers = sum(num_layers)
        drop_rates = [drop_path_rate * idx / max(total_layers - 1, 1) for idx in range(total_layers)]

        self.stem = nn.Sequential(
            Conv2dBN(in_chans, embed_dims[0] // 2, 3, stride=2, act=True),
            Conv2dBN(embed_dims[0] // 2, embed_dims[0], 3, stride=1, act=True),
        )
        self.patch_embed_stages = nn.ModuleList(
            PatchEmbedStage(embed_dims[s], num_paths[s]) for s in range(num_stages)
        )
        stages = []
        first_layer = 0
        for s in range(num_stages):
            out_dim = embed_dims[min(s + 1, num_stages - 1)]
            stages.append(
                MHCAStage(
                    embed_dims[s],
                    out_dim,
                    num_paths[s],
                    num_layers[s],
                    num_heads[s],
                    mlp_ratios[s],
                    drop_rates[first_layer : first_layer + num_layers[s]],
                )
            )
            first_layer += num_layers[s]
        self.mhca_stages = nn.ModuleList(stages)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        for embed_stage, mhca_stage in zip(self.patch_embed_stages, self.mhca_stages):
            x = mhca_stage(embed_stage(x))
            features.append(x)
        return features


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        # Truncation at +-2 (the usual bounds) is a no-op at std 0.02, and trunc_normal_ is slow on CPU.
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def mpvit_tiny(drop_path_rate: float = 0.0) -> MPViTEncoder:
    """The BoRe-Depth encoder configuration (paths 2/3/3/3, layers 1/2/4/1, dims 64/96/176/216)."""
    return MPViTEncoder(drop_path_rate=drop_path_rate, **MPVIT_TINY_CONFIG)


__all__ = ["MPViTEncoder", "mpvit_tiny", "MPVIT_TINY_CONFIG", "DropPath"]
