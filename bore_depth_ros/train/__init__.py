"""Training-only code: self-supervised and distillation losses, view-warping geometry and the PoseNet."""
