"""SVR-style surround depth student (our design, after "Scale-Invariant and View-Relational Representation
Learning for Full Surround Monocular Depth"; not the official model, whose code is not released).

Spec: /work/shared/specs/surround-models.md, section B1. All views of a rig form one batch [B*N,3,H,W];
the network treats every view independently (view relations enter only through the training losses),
so it works with any number of cameras and batched inference equals per-view inference.

Also home of the pieces the surround models share: `build_encoder` (BoRe-Depth MPViT-tiny or our
ResNet-18) and `EFAFFeatureDecoder` (the BoRe-Depth EFAF decoder blocks, returning features).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .bore_depth import DECODER_CHANNELS, Conv1x1ELU, ReflectConvELU, SpatialChannelEnhancement
from .info import SURROUND_MAX_DEPTH, SURROUND_MIN_DEPTH, check_input_size
from .mpvit import MPVIT_TINY_CONFIG, MPViTEncoder, mpvit_tiny

BACKBONES = ("mpvit_tiny", "resnet18")
OUTPUT_STRIDES = (1, 2, 4, 8, 16)  # decoder output levels 0..4


# --- encoders --------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, identity or 1x1-conv shortcut, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18Encoder(nn.Module):
    """A plain ResNet-18 (written here; torchvision is not a dependency), no pretrained weights.

    `forward` returns five feature maps at strides 2..32 with `num_ch_enc` = [w, w, 2w, 4w, 8w]
    (`width` w = 64: the standard ResNet-18).
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.pool = nn.MaxPool2d(3, 2, 1)
        widths, layers, in_ch = (width, 2 * width, 4 * width, 8 * width), [], width
        for i, out_ch in enumerate(widths):
            layers.append(
                nn.Sequential(BasicBlock(in_ch, out_ch, 1 if i == 0 else 2), BasicBlock(out_ch, out_ch))
            )
            in_ch = out_ch
        self.layers = nn.ModuleList(layers)
        self.num_ch_enc = [width, *widths]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        x = self.pool(x)
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


DEFAULT_WIDTH = 64  # channels of the first encoder stage of both backbones as published


def mpvit_dims(width: int = DEFAULT_WIDTH) -> tuple[int, ...]:
    """MPViT-tiny stage widths scaled by width / 64, each rounded to a multiple of 8 (its 8 heads);
    64 gives the BoRe-Depth encoder's 64/96/176/216."""
    if width < 8 or width % 8:
        raise ValueError(f"encoder width must be a positive multiple of 8, got {width}")
    return tuple(max(8, 8 * round(d * width / DEFAULT_WIDTH / 8)) for d in MPVIT_TINY_CONFIG["embed_dims"])


def build_encoder(
    backbone: str = "mpvit_tiny", drop_path_rate: float = 0.0, width: int = DEFAULT_WIDTH
) -> nn.Module:
    """Shared per-view encoder with `num_ch_enc` and five outputs at strides 2, 4, 8, 16, 32.

    `width`: channels of the first stage; the others scale with it (`mpvit_dims`; ResNet-18
    w/2w/4w/8w). The default builds the published encoders (official checkpoints load).
    """
    if backbone == "mpvit_tiny":
        if width == DEFAULT_WIDTH:
            return mpvit_tiny(drop_path_rate=drop_path_rate)
        return MPViTEncoder(
            drop_path_rate=drop_path_rate, **{**MPVIT_TINY_CONFIG, "embed_dims": mpvit_dims(width)}
        )
    if backbone == "resnet18":
        if width < 1:
            raise ValueError(f"encoder width must be positive, got {width}")
        return ResNet18Encoder(width)
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")


# --- decoder ---------------------------------------------------------------------------------------


class EFAFFeatureDecoder(nn.Module):
    """EFAF-style decoder built from the BoRe-Depth blocks, returning features instead of disparity.

    Level i (4 .. `out_level`): 1x1 conv+ELU, x2 bilinear, SCE; concat with SCE(encoder feature i-1)
    when i > 0; 3x3 conv+ELU. Output: [B, num_ch_dec[out_level], H / 2**out_level, W / 2**out_level].
    Unlike `EFAFDecoder` it builds no unused blocks.
    """

    def __init__(
        self, num_ch_enc: Sequence[int], num_ch_dec: Sequence[int] = DECODER_CHANNELS, out_level: int = 0
    ) -> None:
        super().__init__()
        self.num_ch_dec = list(num_ch_dec)
        if len(num_ch_enc) != len(self.num_ch_dec) or not 0 <= out_level < len(self.num_ch_dec):
            raise ValueError(
                f"need {len(self.num_ch_dec)} encoder levels and 0 <= out_level < "
                f"{len(self.num_ch_dec)}, got {len(num_ch_enc)} and {out_level}"
            )
        self.out_level = out_level
        self.out_channels = self.num_ch_dec[out_level]
        self.levels = list(range(len(self.num_ch_dec) - 1, out_level - 1, -1))
        self.deconvs, self.local, self.skip, self.fuse = (nn.ModuleList() for _ in range(4))
        for i in self.levels:
            in_ch = num_ch_enc[-1] if i == len(self.num_ch_dec) - 1 else self.num_ch_dec[i + 1]
            dec_ch = self.num_ch_dec[i]
            skip_ch = num_ch_enc[i - 1] if i > 0 else 0
            self.deconvs.append(Conv1x1ELU(in_ch, dec_ch))
            self.local.append(SpatialChannelEnhancement(dec_ch))
            self.skip.append(SpatialChannelEnhancement(skip_ch) if skip_ch else nn.Identity())
            self.fuse.append(ReflectConvELU(dec_ch + skip_ch, dec_ch))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for cnt, i in enumerate(self.levels):
            x = self.local[cnt](
                F.interpolate(self.deconvs[cnt](x), scale_factor=2.0, mode="bilinear", align_corners=False)
            )
            if i > 0:
                x = torch.cat([x, self.skip[cnt](features[i - 1])], dim=1)
            x = self.fuse[cnt](x)
        return x


# --- input checks ----------------------------------------------------------------------------------


def check_views(image: torch.Tensor, focal: torch.Tensor) -> None:
    """Eager-mode checks shared by the surround models (skipped under tracing)."""
    if torch.jit.is_tracing():
        return
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected image of shape [B*N,3,H,W], got {list(image.shape)}")
    check_input_size(int(image.shape[2]), int(image.shape[3]))
    if tuple(focal.shape) != (image.shape[0], 1):
        raise ValueError(f"expected focal of shape [{image.shape[0]},1], got {list(focal.shape)}")


# --- SVR-style student -----------------------------------------------------------------------------


class SVRStudent(nn.Module):
    """SVR-style student (our design, not the official model): adaptive metric depth bins per image.

    - Shared encoder (`backbone` "mpvit_tiny" = BoRe-Depth's, or "resnet18"; `width` = channels of
      its first stage, see `build_encoder`), EFAF-style decoder to resolution H/`output_stride`
      (1, 2, 4, 8 or 16; above 1 depth and confidence are bilinearly upsampled).
    - Per-pixel head: 3x3 conv+ELU, 1x1 conv to `num_bins` logits; p = softmax over bins.
    - Per-image bin centres: global average of the stride-32 features -> MLP -> softmax widths
      (+`min_width`, renormalised) -> cumulative sum -> edges between `min_depth` and `max_depth`,
      in log-depth when `log_bins` (our default: uniform relative resolution over 0.5..80 m), else
      linear (AdaBins). Centres are the edge midpoints (geometric midpoints in log space).
    - depth = focal * sum_k p_k c_k, so the bins are metric for a camera of the canonical focal
      (`ModelInfo.canonical_focal`) and `focal` = fx / f_canonical rescales them.
    - confidence = 1 - H(p) / log K (normalised entropy of the bin distribution): 1 for a one-hot
      distribution, 0 for a uniform one; low at depth edges where p is multi-modal.

    forward(image [B*N,3,H,W], focal [B*N,1]) -> (depth [B*N,1,H,W] metres, confidence [B*N,1,H,W]).
    """

    def __init__(
        self,
        backbone: str = "mpvit_tiny",
        num_bins: int = 64,
        min_depth: float = SURROUND_MIN_DEPTH,
        max_depth: float = SURROUND_MAX_DEPTH,
        output_stride: int = 1,
        log_bins: bool = True,
        bin_hidden: int = 256,
        head_channels: int = 32,
        min_width: float = 1e-3,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
        drop_path_rate: float = 0.0,
        width: int = DEFAULT_WIDTH,
    ) -> None:
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        if not 0 < min_depth < max_depth or num_bins < 2:
            raise ValueError(
                f"need 0 < min_depth < max_depth and num_bins >= 2, got {min_depth}, {max_depth}, {num_bins}"
            )
        self.num_bins, self.min_depth, self.max_depth = int(num_bins), float(min_depth), float(max_depth)
        self.output_stride, self.log_bins, self.min_width = output_stride, bool(log_bins), float(min_width)
        self.backbone, self.width = backbone, int(width)
        self.encoder = build_encoder(backbone, drop_path_rate, width)
        self.decoder = EFAFFeatureDecoder(
            self.encoder.num_ch_enc, decoder_channels, out_level=int(math.log2(output_stride))
        )
        self.pixel_head = nn.Sequential(
            ReflectConvELU(self.decoder.out_channels, head_channels),
            nn.Conv2d(head_channels, self.num_bins, 1),
        )
        self.bin_mlp = nn.Sequential(
            nn.Linear(self.encoder.num_ch_enc[-1], bin_hidden),
            nn.GELU(),
            nn.Linear(bin_hidden, self.num_bins),
        )

    def model_options(self) -> dict:
        """This network's values of the registry's svr options (recorded in trained weights files)."""
        return {
            "bins": self.num_bins,
            "backbone": self.backbone,
            "width": self.width,
            "output_stride": self.output_stride,
        }

    def bin_edges(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """Metric bin edges [B, K+1] at the canonical focal from the stride-32 features."""
        widths = torch.softmax(self.bin_mlp(bottleneck.mean(dim=(2, 3))), dim=1)
        widths = (widths + self.min_width) / (1.0 + self.num_bins * self.min_width)
        edges = F.pad(torch.cumsum(widths, dim=1), (1, 0))  # [B, K+1], 0 .. 1
        if self.log_bins:
            lo, hi = math.log(self.min_depth), math.log(self.max_depth)
            return torch.exp(lo + (hi - lo) * edges)
        return self.min_depth + (self.max_depth - self.min_depth) * edges

    def bin_centres(self, edges: torch.Tensor) -> torch.Tensor:
        """Centres [B, K] between consecutive edges (geometric mean for log bins)."""
        if self.log_bins:
            return torch.sqrt(edges[:, :-1] * edges[:, 1:])
        return 0.5 * (edges[:, :-1] + edges[:, 1:])

    def forward_train(self, image: torch.Tensor, focal: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the distillation losses need; spatial maps at H/output_stride unless noted.

        logits, probs, log_probs [B*N,K,h,w]; bin_edges [B*N,K+1] and bin_centres [B*N,K] in metres
        for each view's camera (canonical ones times focal); bin_centres_canonical [B*N,K];
        features [B*N,C,h,w] decoder output; bottleneck [B*N,C5,H/32,W/32]; depth and confidence
        [B*N,1,H,W] (full resolution, as `forward`).
        """
        check_views(image, focal)
        enc = self.encoder(image)
        features = self.decoder(enc)
        logits = self.pixel_head(features)
        log_probs = torch.log_softmax(logits, dim=1)
        probs = torch.exp(log_probs)
        edges_c = self.bin_edges(enc[-1])
        centres_c = self.bin_centres(edges_c)
        scale = focal.reshape(-1, 1)
        centres = centres_c * scale
        # sum_k p_k c_k as one batched matmul: ~10x faster on CPU than a broadcast multiply and sum.
        depth = torch.matmul(centres[:, None, :], probs.flatten(2)).reshape(
            logits.shape[0], 1, *logits.shape[2:]
        )
        entropy = -torch.sum(probs * log_probs, dim=1, keepdim=True)
        confidence = torch.clamp(1.0 - entropy / math.log(self.num_bins), 0.0, 1.0)
        if self.output_stride != 1:
            depth = F.interpolate(
                depth, scale_factor=float(self.output_stride), mode="bilinear", align_corners=False
            )
            confidence = F.interpolate(
                confidence, scale_factor=float(self.output_stride), mode="bilinear", align_corners=False
            )
        return {
            "logits": logits,
            "log_probs": log_probs,
            "probs": probs,
            "bin_edges": edges_c * scale,
            "bin_centres": centres,
            "bin_centres_canonical": centres_c,
            "features": features,
            "bottleneck": enc[-1],
            "depth": depth,
            "confidence": confidence,
        }

    def forward(self, image: torch.Tensor, focal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_train(image, focal)
        return out["depth"], out["confidence"]


__all__ = [
    "SVRStudent",
    "EFAFFeatureDecoder",
    "ResNet18Encoder",
    "build_encoder",
    "mpvit_dims",
    "check_views",
    "BACKBONES",
    "OUTPUT_STRIDES",
    "DEFAULT_WIDTH",
]
