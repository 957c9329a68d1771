"""Convert the MTCNN weights shipped in the facenet-pytorch wheel (MIT licence) to weights/mtcnn.safetensors.

Usage:
    pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fp
    python scripts/convert_mtcnn_weights.py /tmp/fp/facenet_pytorch-2.6.0-py3-none-any.whl

The .pt files inside the wheel are plain state dicts; they are read with ``weights_only=True`` (no
pickled code runs), checked against :class:`oldphoto.archs.mtcnn.MTCNN` with a strict load, and
written as safetensors. Prints the sha256 for the registry.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from oldphoto.archs.mtcnn import MTCNN
from oldphoto.weights import file_sha256


def main() -> None:
    wheel = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("weights/mtcnn.safetensors")
    state: dict[str, torch.Tensor] = {}
    with zipfile.ZipFile(wheel) as archive:
        for stage in ("pnet", "rnet", "onet"):
            data = archive.read(f"facenet_pytorch/data/{stage}.pt")
            for key, value in torch.load(io.BytesIO(data), weights_only=True).items():
                state[f"{stage}.{key}"] = value.contiguous()
    MTCNN().load_state_dict(state, strict=True)
    save_file(state, str(out))
    print(f"{out}: {sum(v.numel() for v in state.values()):,} parameters, sha256 {file_sha256(out)}")


if __name__ == "__main__":
    main()
