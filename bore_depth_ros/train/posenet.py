"""PoseNet of BoRe-Depth / SC-Depth training (spec bore-depth.md sections 2.6 and 3.3), written from the spec.

Module names follow the official checkpoint keys under ``pose_net.``: ``encoder.encoder.*`` with
torchvision's ResNet-18 names (including the unused 1000-way ``fc``), ``decoder.conv_squeeze``
and ``decoder.convs_pose.{0,1,2}``; 13,011,950 parameters. torchvision is not a dependency, so
the ResNet-18 is written here (the one in `models/svr.py` uses other module names).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .geometry import pose_vec_to_mat

POSE_SCALE = 0.01


class BasicBlock(nn.Module):
    """ResNet basic block, torchvision names: relu(bn2(conv2(relu(bn1(conv1 x)))) + downsample(x))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision module names (conv1, bn1, layer1-4, fc) and `in_channels` inputs.

    `forward` returns the stride-32 features [B,512,H/32,W/32]; avgpool and fc exist only so that
    checkpoints load strictly.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for i, width in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if i == 1 else 2
            setattr(
                self, f"layer{i}", nn.Sequential(BasicBlock(in_ch, width, stride), BasicBlock(width, width))
            )
            in_ch = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class PoseEncoder(nn.Module):
    """Wrapper giving the ``encoder.encoder.*`` key prefix: ResNet-18 on two stacked RGB frames."""

    def __init__(self, num_frames: int = 2) -> None:
        super().__init__()
        self.encoder = ResNet18(in_channels=3 * num_frames)
        self.num_ch_enc = [64, 64, 128, 256, 512]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class PoseDecoder(nn.Module):
    """relu(1x1 512->256), relu(3x3 256->256), relu(3x3 256->256), 1x1 256->6; spatial mean x 0.01
    -> [B,6]."""

    def __init__(self, in_channels: int = 512, hidden: int = 256) -> None:
        super().__init__()
        self.conv_squeeze = nn.Conv2d(in_channels, hidden, 1)
        self.convs_pose = nn.ModuleList(
            [nn.Conv2d(hidden, hidden, 3, 1, 1), nn.Conv2d(hidden, hidden, 3, 1, 1), nn.Conv2d(hidden, 6, 1)]
        )
        self.relu = nn.ReLU()

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv_squeeze(feature))
        x = self.relu(self.convs_pose[0](x))
        x = self.relu(self.convs_pose[1](x))
        return POSE_SCALE * self.convs_pose[2](x).mean(dim=(2, 3))


class PoseNet(nn.Module):
    """forward(target, source [B,3,H,W]) -> pose vector [B,6] = (t, euler) of T_src_from_tgt.

    The two frames are concatenated (target first) on channels. Inputs are used as given: the spec
    does not say whether the official net normalises them, so pass the same normalised images as
    the depth net (or set `input_mean`/`input_std` to have it done here).
    """

    def __init__(self, input_mean: float | None = None, input_std: float | None = None) -> None:
        super().__init__()
        self.encoder = PoseEncoder(num_frames=2)
        self.decoder = PoseDecoder()
        self.input_mean, self.input_std = input_mean, input_std

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        x = torch.cat([target, source], dim=1)
        if self.input_mean is not None:
            x = (x - self.input_mean) / (self.input_std if self.input_std is not None else 1.0)
        return self.decoder(self.encoder(x))

    def transform(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """T_src_from_tgt [B,4,4] = `pose_vec_to_mat`(forward(target, source)) (Euler convention)."""
        return pose_vec_to_mat(self(target, source), rotation="euler")

    def load_imagenet_resnet18(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Initialise the encoder from a torchvision ResNet-18 state dict (3-channel conv1).

        conv1 is repeated for both frames and halved: W6 = [W3, W3] / 2, so two identical frames give
        the ImageNet response. All keys must match (strict).
        """
        sd = dict(state_dict)
        w = sd["conv1.weight"]
        frames = self.encoder.encoder.conv1.in_channels // w.shape[1]
        sd["conv1.weight"] = torch.cat([w] * frames, dim=1) / frames
        self.encoder.encoder.load_state_dict(sd, strict=True)


__all__ = ["PoseNet", "PoseEncoder", "PoseDecoder", "ResNet18", "BasicBlock", "POSE_SCALE"]
