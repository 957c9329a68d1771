"""Average weights files of one architecture tensor by tensor (a "model soup", Wortsman et al. 2022).

Fine-tunes from the same start stay in one basin of the loss, so their mean is a network too, and often better than
each: the shipped face refiner is the mean of two (weights/README.md). The inputs must hold the same tensors with the
same shapes and dtypes; the mean is computed in float32 and stored in the inputs' dtype.

Usage: python scripts/average_weights.py A.safetensors B.safetensors [...] -o OUT.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def average(paths: list[Path]) -> dict[str, torch.Tensor]:
    states = [load_file(path) for path in paths]
    keys = set(states[0])
    for path, state in zip(paths[1:], states[1:], strict=True):
        if set(state) != keys:
            raise SystemExit(f"{path} holds other tensors than {paths[0]}: {sorted(keys ^ set(state))[:5]}")
        for key in keys:
            if state[key].shape != states[0][key].shape or state[key].dtype != states[0][key].dtype:
                raise SystemExit(f"{path}: tensor {key} differs in shape or dtype from {paths[0]}'s")
    return {key: (sum(state[key].float() for state in states) / len(states)).to(states[0][key].dtype).contiguous() for key in sorted(keys)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    if len(args.weights) < 2:
        parser.error("give at least two weights files")
    save_file(average(args.weights), str(args.out))
    print(f"{args.out}: sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
