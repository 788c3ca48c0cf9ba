import pytest
import torch

from ibcli.errors import UserError
from ibcli.models import build_model


def _shapes(model, x):
    logits, acts = model.forward_with_activations(x)
    return tuple(logits.shape), {k: tuple(v.shape) for k, v in acts.items()}


def test_mlp_layer_names_and_shapes():
    model = build_model("mlp", "tanh", (1, 28, 28), 10)
    logits, acts = _shapes(model, torch.zeros(3, 1, 28, 28))
    assert logits == (3, 10)
    assert acts == {"layer1": (3, 1024), "layer2": (3, 20), "layer3": (3, 20), "layer4": (3, 20),
                    "layer5": (3, 20), "output": (3, 10)}
    assert model.layer_names == list(acts)


def test_cnn_layer_names_and_shapes():
    model = build_model("cnn", "relu", (1, 28, 28), 10)
    logits, acts = _shapes(model, torch.zeros(2, 1, 28, 28))
    assert logits == (2, 10)
    assert acts == {"conv1": (2, 32, 14, 14), "conv2": (2, 64, 7, 7), "fc1": (2, 128), "output": (2, 10)}


def test_cnn_adapts_to_channels_and_size():
    model = build_model("cnn", "relu", (3, 32, 32), 10)
    logits, acts = _shapes(model, torch.zeros(2, 3, 32, 32))
    assert logits == (2, 10)
    assert acts == {"conv1": (2, 32, 16, 16), "conv2": (2, 64, 8, 8), "fc1": (2, 128), "output": (2, 10)}
    assert model.blocks["conv1"][0].in_channels == 3 and model.blocks["fc1"][1].in_features == 64 * 8 * 8
    # odd sizes: each 2x2 pooling floors (15 -> 7 -> 3)
    _, acts = _shapes(build_model("cnn", "tanh", (2, 15, 30), 4), torch.zeros(1, 2, 15, 30))
    assert acts["conv2"] == (1, 64, 3, 7) and acts["output"] == (1, 4)


def test_mlp_takes_any_input_width():
    model = build_model("mlp", "tanh", (3, 32, 32), 10)
    logits, acts = _shapes(model, torch.zeros(2, 3, 32, 32))
    assert model.blocks["layer1"][1].in_features == 3072 and acts["layer1"] == (2, 1024) and logits == (2, 10)


def test_ib_network_widths_and_alias():
    for name in ("ib", "tishby"):
        model = build_model(name, "tanh", (12,), 2)
        _, acts = _shapes(model, torch.zeros(4, 12))
        assert [v[1] for v in acts.values()] == [10, 7, 5, 4, 3, 2]


def test_output_is_softmax_of_logits_and_hidden_after_nonlinearity():
    torch.manual_seed(0)
    model = build_model("mlp", "relu", (1, 28, 28), 10)
    x = torch.randn(5, 1, 28, 28)
    logits, acts = model.forward_with_activations(x)
    assert torch.allclose(acts["output"], torch.softmax(logits, 1))
    assert torch.allclose(logits, model(x))
    assert (acts["layer1"] >= 0).all()  # ReLU applied before recording


def test_unknown_model_and_activation_are_user_errors():
    with pytest.raises(UserError, match="unknown model"):
        build_model("resnet", "tanh", (1, 28, 28), 10)
    with pytest.raises(UserError, match="unknown activation"):
        build_model("mlp", "swish", (1, 28, 28), 10)
    with pytest.raises(UserError, match="1x28x28"):
        build_model("cnn", "tanh", (12,), 2)
    for shape in ((12,), (1, 3, 28), (784,)):
        with pytest.raises(UserError, match=r"--model cnn needs images C x H x W of at least 4x4 .* use --model mlp or ib"):
            build_model("cnn", "relu", shape, 10)
