"""Tiny hand-built models shared by the metric tests (expected values are computed by hand)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


class TinyModel(nn.Module):
    """normalize(x) = (x - 0.5) / 0.5; net = 1x1 conv picking channel 0 -> GAP -> linear [1, -1].

    With s = mean over pixels of the network tensor's channel 0: logits = [s, -s], so
    p(class 0) = sigmoid(2 s) and p(class 1) = sigmoid(-2 s).
    """

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 1, 1, bias=False)
        fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        self.net = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
