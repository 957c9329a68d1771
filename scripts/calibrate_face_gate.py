"""Calibrate the face gate's ramp on its validation faces: PSNR and SSIM of the blend for several need -> strength maps.

Loads the validation pool the face-gate recipe cached beside its checkpoint (held-out UTKFace faces, damaged or clean,
through the installed global stage and refiner) and the installed gate, and prints, for damaged and clean faces, the
mean PSNR and SSIM against the clean faces and the mean strength of: no refinement, full refinement, the gate's raw
estimate, linear ramps (0 below LOW, 1 above HIGH) and scalings, each for the refiner's whole correction. The single
ramp 0.15-0.7 shipped until session 15 was chosen here; the registry's ``coarse_ramp`` / ``fine_ramp`` (the correction
split in two parts) were chosen with ``scripts/face_blend_sweep.py``.

Usage: python scripts/calibrate_face_gate.py [--pool runs/face-gate/pool-val-*.pt]
"""

from __future__ import annotations

import argparse
import glob

import numpy as np
import torch

from oldphoto.evaluation.metrics import ssim
from oldphoto.registry import FACE_GATE_MODEL, get_spec
from oldphoto.training.face_gate import blend_psnr
from oldphoto.weights import load_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=None, help="the cached validation pool (default: runs/face-gate/pool-val-*.pt)")
    args = parser.parse_args()
    pool = torch.load(args.pool or sorted(glob.glob("runs/face-gate/pool-val-*.pt"))[0], weights_only=False)
    original, restored, refined, clean = (pool[key].float() for key in ("original", "restored", "refined", "clean"))
    damaged = torch.from_numpy(pool["damaged"])
    with torch.no_grad():
        need = load_network(get_spec(FACE_GATE_MODEL))(original, restored, refined)
    print(f"need: clean mean {need[~damaged].mean():.3f} (max {need[~damaged].max():.3f}); damaged mean {need[damaged].mean():.3f}")

    def ssims(strength: torch.Tensor) -> np.ndarray:
        blended = restored + strength[:, None, None, None] * (refined - restored)
        return np.array([ssim(b.permute(1, 2, 0).numpy(), c.permute(1, 2, 0).numpy()) for b, c in zip(blended, clean, strict=True)])

    maps = [("none", torch.zeros_like(need)), ("full", torch.ones_like(need)), ("gate", need)]
    maps += [(f"ramp {lo}-{hi}", ((need - lo) / (hi - lo)).clamp(0, 1)) for lo, hi in [(0.1, 0.9), (0.15, 0.7), (0.2, 0.6), (0.2, 0.8), (0.3, 0.6)]]
    maps += [(f"x{k}", (need * k).clamp(0, 1)) for k in (1.2, 1.4)]
    d = damaged.numpy()
    for name, strength in maps:
        psnr, structure = blend_psnr(strength, restored, refined, clean).numpy(), ssims(strength)
        print(
            f"{name:14s} damaged {psnr[d].mean():.3f} dB {structure[d].mean():.4f} | clean {psnr[~d].mean():.2f} dB "
            f"{structure[~d].mean():.4f} | strength clean {strength[~damaged].mean():.3f}, damaged {strength[damaged].mean():.3f}"
        )


if __name__ == "__main__":
    main()
