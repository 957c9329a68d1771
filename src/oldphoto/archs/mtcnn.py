"""MTCNN face detector (Zhang et al. 2016): the three-network cascade P-Net -> R-Net -> O-Net.

The layer shapes follow the published model so that its MIT-licensed weights (converted from the
``facenet-pytorch`` package to safetensors, see ``weights/README.md``) load strictly. The detection
procedure (image pyramid, box regression, non-maximum suppression) lives in
:mod:`oldphoto.restore.face_detect`; this module is only the networks.

Inputs are RGB scaled as the weights expect: ``(pixel * 255 - 127.5) / 128``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MTCNNConfig:
    """The published MTCNN has no free size parameters; the config records the crop sizes it was trained at."""

    proposal_cell: int = 12
    refine_size: int = 24
    output_size: int = 48


class ProposalNet(nn.Module):
    """P-Net, fully convolutional: (N, 3, H, W) -> face probability (N, 2, h, w) softmaxed and box offsets (N, 4, h, w),
    one per 12x12 window at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


def _flatten_transposed(x: torch.Tensor) -> torch.Tensor:
    # The weights were converted from Caffe, whose dense layers read feature maps as (C, W, H).
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RefineNet(nn.Module):
    """R-Net: (N, 3, 24, 24) candidate crops -> face probability (N, 2) and box offsets (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_transposed(self.prelu3(self.conv3(x)))))
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class OutputNet(nn.Module):
    """O-Net: (N, 3, 48, 48) crops -> face probability (N, 2), box offsets (N, 4) and five landmarks (N, 10):
    x of eyes, nose, mouth corners first, then their y, as fractions of the crop."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_transposed(self.prelu4(self.conv4(x)))))
        return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


class MTCNN(nn.Module):
    """The cascade as one module (one weights file); call the stages through ``pnet``, ``rnet``, ``onet``."""

    size_multiple = 1

    def __init__(self, config: MTCNNConfig = MTCNNConfig()) -> None:
        super().__init__()
        self.config = config
        self.pnet = ProposalNet()
        self.rnet = RefineNet()
        self.onet = OutputNet()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net on a whole image (the cascade's only fully-convolutional step)."""
        return self.pnet(x)
