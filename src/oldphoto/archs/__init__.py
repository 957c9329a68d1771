"""Pure networks: tensor in, tensor out, each built from a frozen config dataclass.

No file I/O, device, precision or tiling decisions live here.
"""
