"""BoRe-Depth depth network: modified MPViT-tiny encoder + EFAF decoder (clean-room, from the spec).

Input: [B,3,H,W] ImageNet-normalised RGB, H and W multiples of 32. Output: relative depth
[B,1,H,W] = 1 / (10 * sigmoid(z) + 0.01), i.e. within [1/10.01, 100].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .info import BORE_DEPTH_MAX_DISPARITY, BORE_DEPTH_MIN_DISPARITY, check_input_size
from .mpvit import mpvit_tiny

DECODER_CHANNELS = (16, 32, 64, 128, 256)


class Conv1x1ELU(nn.Module):
    """1x1 conv with bias + ELU (the decoder's channel-changing "deconv"; keys conv.*)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class ReflectConv3x3(nn.Module):
    """ReflectionPad(1) + 3x3 conv with bias (keys conv.*)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ReflectConvELU(nn.Module):
    """ReflectConv3x3 + ELU (keys conv.conv.*)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ReflectConv3x3(in_ch, out_ch)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class SpatialChannelEnhancement(nn.Module):
    """SCE block: x + Conv1x1(GELU(PW(DW_x2(x)))), growth rate 2 (keys conv_0.0, conv_0.1, conv_1)."""

    def __init__(self, channels: int, growth: int = 2) -> None:
        super().__init__()
        hidden = channels * growth
        self.conv_0 = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, 1, 1, groups=channels),
            nn.Conv2d(hidden, hidden, 1),
        )
        self.act = nn.GELU()
        self.conv_1 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_1(self.act(self.conv_0(x)))


class EFAFDecoder(nn.Module):
    """EFAF decoder: per level 1x1+ELU, x2 bilinear, SCE on decoder and skip, concat, 3x3+ELU.

    Returns the sigmoid of the final 3x3 conv at full resolution ([B,1,H,W], values in (0, 1)).
    `globalattentions[4]` (width num_ch_enc[-1]) is built but never used, as in the official model,
    so the official checkpoints load strictly.
    """

    def __init__(self, num_ch_enc: Sequence[int], num_ch_dec: Sequence[int] = DECODER_CHANNELS) -> None:
        super().__init__()
        self.num_ch_enc = list(num_ch_enc)
        self.num_ch_dec = list(num_ch_dec)
        levels = range(len(self.num_ch_dec) - 1, -1, -1)  # i = 4 .. 0
        deconvs, local, global_, upconvs = [], [], [], []
        for i in levels:
            in_ch = self.num_ch_enc[-1] if i == len(self.num_ch_dec) - 1 else self.num_ch_dec[i + 1]
            dec_ch = self.num_ch_dec[i]
            # For i == 0 the official index num_ch_enc[i - 1] wraps to the last level: unused SCE.
            skip_ch = self.num_ch_enc[i - 1]
            deconvs.append(Conv1x1ELU(in_ch, dec_ch))
            local.append(SpatialChannelEnhancement(dec_ch))
            global_.append(SpatialChannelEnhancement(skip_ch))
            upconvs.append(ReflectConvELU(dec_ch + (skip_ch if i > 0 else 0), dec_ch))
        self.deconvs = nn.ModuleList(deconvs)
        self.localattentions = nn.ModuleList(local)
        self.globalattentions = nn.ModuleList(global_)
        self.upconvs3 = nn.ModuleList(upconvs)
        self.dispconvs = nn.ModuleList([ReflectConv3x3(self.num_ch_dec[0], 1)])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        last = len(self.num_ch_dec) - 1
        for cnt in range(len(self.num_ch_dec)):
            i = last - cnt
            x = self.deconvs[cnt](x)
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.localattentions[cnt](x)
            if i > 0:
                x = torch.cat([x, self.globalattentions[cnt](features[i - 1])], dim=1)
            x = self.upconvs3[cnt](x)
        return torch.sigmoid(self.dispconvs[0](x))


def sigmoid_to_depth(sigmoid: torch.Tensor) -> torch.Tensor:
    """Map the decoder's sigmoid output to depth: 1 / (10 * s + 0.01)."""
    scale = BORE_DEPTH_MAX_DISPARITY - BORE_DEPTH_MIN_DISPARITY
    return 1.0 / (scale * sigmoid + BORE_DEPTH_MIN_DISPARITY)


class BoReDepthNet(nn.Module):
    """BoRe-Depth inference network (`depth_net` of the official checkpoints).

    forward(x: [B,3,H,W] ImageNet-normalised float32) -> relative depth [B,1,H,W];
    H and W must be multiples of 32 (ValueError otherwise).
    """

    def __init__(self, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.encoder = mpvit_tiny(drop_path_rate=drop_path_rate)
        self.decoder = EFAFDecoder(self.encoder.num_ch_enc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under tracing (ONNX export) shapes are traced values; the exporter's caller checks sizes.
        if not torch.jit.is_tracing():
            if x.dim() != 4 or x.shape[1] != 3:
                raise ValueError(f"expected input of shape [B,3,H,W], got {list(x.shape)}")
            check_input_size(int(x.shape[2]), int(x.shape[3]))
        return sigmoid_to_depth(self.decoder(self.encoder(x)))


__all__ = ["BoReDepthNet", "EFAFDecoder", "SpatialChannelEnhancement", "sigmoid_to_depth", "check_input_size"]
