"""Pose networks of the photometric training recipes.

- :class:`PoseNet`: BoRe-Depth / SC-Depth monocular PoseNet (spec bore-depth.md sections 2.6 and
  3.3), written from the spec. Module names follow the official checkpoint keys under
  ``pose_net.``: ``encoder.encoder.*`` with torchvision's ResNet-18 names (including the unused
  1000-way ``fc``), ``decoder.conv_squeeze`` and ``decoder.convs_pose.{0,1,2}``; 13,011,950
  parameters. torchvision is not a dependency, so the ResNet-18 is written here (the one in
  `models/svr.py` uses other module names).
- :class:`RigPoseNet`: Semi-SMD-style ego motion of a whole camera rig (our design after
  surround-models.md A2/A3: pose from the surround views, their depths and the extrinsics): one
  rigid motion of base_link per rig, from which every camera's motion follows through its
  extrinsics.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .geometry import axis_angle_to_mat, camera_motion, pose_vec_to_mat

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


class RigPoseNet(nn.Module):
    """One ego motion of base_link per rig from all its views, their depths and the extrinsics.

    forward(image, prev_image [B*N,3,H,W] (normalised, ring order), depth [B*N,1,H,W] (metres,
    the depth net's prediction of the current frame; used detached), base_from_cam [B*N,4,4] or
    [N,4,4], num_views N) -> dict:
      ``base`` [B,4,4]: T = base_prev_from_base_cur, the convention of odometry ego motion
      (``batch["ego"]``: maps points in base_link at t into base_link at t-1);
      ``cameras`` [B*N,4,4]: each camera's motion E^-1 T E (cam_prev_from_cam_cur), exactly the
      conjugation the temporal loss applies to an odometry motion;
      ``views`` [B*N,6]: the per-view estimates in base_link (translation, rotation vector);
      ``weights`` [B*N]: their fusion weights (softmax over the views of a rig).

    Design (ours): a small CNN sees each view's current and previous image and its log depth
    (metric depth makes the translation metric); its pooled features, an embedding of the view's
    extrinsics and the mean over the rig's views (context from all views) give a motion in that
    camera's frame (translation, rotation vector) and a weight logit. Each camera-frame motion C
    is carried into base_link through the extrinsics, E C E^-1 (rotation vector R_E r; translation
    R_E t + t_E - R t_E), and the rig's motion is the weighted mean of these, so the result is
    one rigid motion whatever the number and mounting of the cameras.
    """

    def __init__(self, width: int = 32, hidden: int = 128, scale: float = POSE_SCALE) -> None:
        super().__init__()
        chans = (width, 2 * width, 4 * width, 4 * width, 4 * width)
        layers, in_ch = [], 7
        for i, ch in enumerate(chans):
            layers += [nn.Conv2d(in_ch, ch, 7 if i == 0 else 3, 2, 3 if i == 0 else 1), nn.ReLU(inplace=True)]
            in_ch = ch
        self.encoder = nn.Sequential(*layers)
        self.feature = nn.Linear(in_ch, hidden)
        self.geometry = nn.Sequential(nn.Linear(12, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, 7))
        nn.init.zeros_(self.head[-1].bias)  # equal fusion weights and, with `scale`, small motions at first
        self.scale = float(scale)

    def forward(
        self,
        image: torch.Tensor,
        prev_image: torch.Tensor,
        depth: torch.Tensor,
        base_from_cam: torch.Tensor,
        num_views: int,
    ) -> dict[str, torch.Tensor]:
        total = image.shape[0]
        n = int(num_views)
        if n < 1 or total % n:
            raise ValueError(f"batch of {total} views is not a whole number of {n}-view rigs")
        if base_from_cam.shape[0] == n and total != n:
            base_from_cam = base_from_cam.repeat(total // n, 1, 1)
        if tuple(base_from_cam.shape) != (total, 4, 4):
            raise ValueError(
                f"expected base_from_cam [{total},4,4] or [{n},4,4], got {list(base_from_cam.shape)}"
            )
        E = base_from_cam.to(image.dtype)
        log_depth = torch.log(depth.detach().clamp_min(1e-3))
        x = torch.cat([image, prev_image, log_depth], dim=1)
        f = self.feature(self.encoder(x).mean(dim=(2, 3)))  # [B*N, hidden]
        g = self.geometry(torch.cat([E[:, :3, :3].flatten(1), E[:, :3, 3]], dim=1))
        h = (f + g).reshape(-1, n, f.shape[-1])
        context = h.mean(dim=1, keepdim=True).expand_as(h)
        out = self.head(torch.cat([h, context], dim=-1)).reshape(total, 7)
        t_cam, r_cam, logit = self.scale * out[:, :3], self.scale * out[:, 3:6], out[:, 6]
        # camera-frame motion C -> base_link: E C E^-1
        R_E, t_E = E[:, :3, :3], E[:, :3, 3:]
        r_base = (R_E @ r_cam[:, :, None])[..., 0]
        R_view = axis_angle_to_mat(r_base)
        t_base = (R_E @ t_cam[:, :, None] + t_E - R_view @ t_E)[..., 0]
        weights = torch.softmax(logit.reshape(-1, n), dim=1)
        views = torch.cat([t_base, r_base], dim=1)
        fused = (weights[..., None] * views.reshape(-1, n, 6)).sum(dim=1)  # [B, 6]
        base = pose_vec_to_mat(fused, rotation="axis_angle")
        cameras = camera_motion(base.repeat_interleave(n, dim=0), E)
        return {"base": base, "cameras": cameras, "views": views, "weights": weights.reshape(-1)}


def pose_difference(T: torch.Tensor, T_ref: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |t - t_ref|_1 + |R - R_ref|_F (rigid [B,4,4] each): a smooth
    distance between two ego motions (the Frobenius term is 2 sqrt(2) sin(angle / 2) of their
    relative rotation, with no arccos singularity at zero)."""
    T_ref = T_ref.to(T.dtype)
    trans = (T[:, :3, 3] - T_ref[:, :3, 3]).abs().sum(dim=1)
    rot = torch.linalg.matrix_norm(T[:, :3, :3] - T_ref[:, :3, :3])
    return (trans + rot).mean()


__all__ = [
    "PoseNet",
    "PoseEncoder",
    "PoseDecoder",
    "ResNet18",
    "BasicBlock",
    "RigPoseNet",
    "pose_difference",
    "POSE_SCALE",
]
