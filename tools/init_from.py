"""Start weights for a model from another model's trained weights: every tensor whose name and
shape match is copied, the rest keep the new model's seeded initialisation.

    python tools/init_from.py --model semi_smd --source svr_default.pt --out init/semi_smd_init.pt

Used by tools/train_defaults.sh: the Semi-SMD-style model shares the SVR-style student's encoder
and decoder (about 93 % of its parameters), so it starts from them instead of from scratch. The
output is a plain checkpoint ({"state_dict": ...}) that ``init_weights`` loads strictly. Refuses
to replace an existing file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from bore_depth_ros.models import create_model, load_checkpoint
from bore_depth_ros.models.checkpoint import read_checkpoint_file, recorded_metadata


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--source", required=True, help="trained weights of another model")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists():
        print(f"init_from: {out} exists: not replaced", file=sys.stderr)
        return 2
    source_model = recorded_metadata(read_checkpoint_file(a.source)).get("model")
    src = load_checkpoint(a.source, model_name=source_model).state_dict()
    torch.manual_seed(a.seed)
    net = create_model(a.model)
    state = net.state_dict()
    copied = [k for k, v in state.items() if k in src and src[k].shape == v.shape]
    state.update({k: src[k].to(state[k].dtype) for k in copied})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, out)
    share = sum(state[k].numel() for k in copied) / sum(v.numel() for v in state.values())
    print(
        f"{out}: {len(copied)} of {len(state)} tensors ({100 * share:.1f} % of the parameters) "
        f"from {a.source}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
