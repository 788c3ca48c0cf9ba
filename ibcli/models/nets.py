"""The torch networks whose layers we record: MLP, CNN and the 12-bit task's network.

Every model maps inputs to logits (cross-entropy applies the softmax) and exposes
`forward_with_activations`, which also returns each recorded layer's output under a
stable name: hidden layers after their nonlinearity, and `output` = softmax(logits).
"""

from __future__ import annotations

import torch
from torch import nn

from ibcli.errors import UserError

ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATION_MODULES:
        raise UserError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATION_MODULES)}")
    return ACTIVATION_MODULES[name]()


class RecordedNet(nn.Module):
    """Base: subclasses fill `self.blocks` (name -> module); the last block gives logits."""

    blocks: nn.ModuleDict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x

    def forward_with_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (logits (n, classes), {layer name: output (n, *layer_shape)}), in layer order."""
        recorded: dict[str, torch.Tensor] = {}
        for name, block in self.blocks.items():
            x = block(x)
            if name != "logits":
                recorded[name] = x
        recorded["output"] = torch.softmax(x, dim=1)
        return x, recorded

    @property
    def layer_names(self) -> list[str]:
        """Recorded layers in order, `output` last."""
        return [n for n in self.blocks if n != "logits"] + ["output"]


class MLP(RecordedNet):
    """Fully connected net. `widths` = (input, hidden..., classes); hidden layers are
    named layer1, layer2, ... The default is the seed's 784-1024-20-20-20-20-10."""

    def __init__(self, widths=(784, 1024, 20, 20, 20, 20, 10), activation: str = "tanh"):
        super().__init__()
        blocks: dict[str, nn.Module] = {}
        first = nn.Flatten()
        for i, (a, b) in enumerate(zip(widths[:-2], widths[1:-1]), start=1):
            layers = [first] if i == 1 else []
            blocks[f"layer{i}"] = nn.Sequential(*layers, nn.Linear(a, b), _activation(activation))
        blocks["logits"] = nn.Linear(widths[-2], widths[-1])
        self.blocks = nn.ModuleDict(blocks)


class CNN(RecordedNet):
    """conv(32, 3x3, pad 1)-pool(2)-conv(64, 3x3, pad 1)-pool(2)-fc128-fc(classes) for C x H x W images.

    Recorded (after nonlinearity and pooling): conv1 32 x H/2 x W/2, conv2 64 x H/4 x W/4
    (pooling floors), fc1 128, output. 1x28x28 (MNIST): conv1 32x14x14, conv2 64x7x7;
    3x32x32 (CIFAR-10): conv1 32x16x16, conv2 64x8x8.
    """

    def __init__(self, activation: str = "relu", num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        channels, height, width = input_shape
        flat = 64 * (height // 4) * (width // 4)  # two 2x2 poolings; padding keeps conv sizes
        self.blocks = nn.ModuleDict(
            {
                "conv1": nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), _activation(activation), nn.MaxPool2d(2)),
                "conv2": nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), _activation(activation), nn.MaxPool2d(2)),
                "fc1": nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), _activation(activation)),
                "logits": nn.Linear(128, num_classes),
            }
        )


def _flat(input_shape: tuple[int, ...]) -> int:
    n = 1
    for s in input_shape:
        n *= s
    return n


def build_mlp(activation: str, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """d-1024-20-20-20-20-classes, d the flattened input size (784 for MNIST, 3072 for CIFAR-10)."""
    return MLP((_flat(input_shape), 1024, 20, 20, 20, 20, num_classes), activation)


def build_ib(activation: str, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """d-10-7-5-4-3-classes: 12-10-7-5-4-3-2 on the 12-bit task (Shwartz-Ziv & Tishby 2017)."""
    return MLP((_flat(input_shape), 10, 7, 5, 4, 3, num_classes), activation)


def build_cnn(activation: str, input_shape: tuple[int, ...], num_classes: int) -> CNN:
    """The CNN for images C x H x W with H, W >= 4 (1x28x28, 3x32x32).

    Raises:
        UserError: an input that is not such an image.
    """
    if len(input_shape) != 3 or min(input_shape[1:]) < 4:
        shape = "x".join(map(str, input_shape))
        raise UserError(f"--model cnn needs images C x H x W of at least 4x4 (e.g. 1x28x28, 3x32x32), the data has shape {shape}: use --model mlp or ib")
    return CNN(activation, num_classes, tuple(input_shape))
