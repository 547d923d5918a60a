"""Networks of the FCDD paper and the authors' code: parameter counts, shapes, receptive-field arithmetic."""
import pytest
import torch
from torch import nn

from oneclass.methods.fcdd import nets

# (name, receptive field, cumulative stride, output side) from appendix B / REFERENCE_FACTS
GEOMETRY = [
    ("fcdd_28", 16, 4, 7),
    ("fcdd_32", 18, 4, 8),
    ("fcdd_224", 52, 8, 28),
    ("fcdd_28_wide", 16, 4, 7),
    ("fcdd_32_lw3k", 22, 4, 8),
    ("fcdd_vgg", 62, 8, 28),
]


@pytest.mark.parametrize("name,rf,jump,side", GEOMETRY)
def test_receptive_field_and_stride_from_layers(name, rf, jump, side):
    net = nets.build(name)
    assert nets.receptive_field(net, net.input_size) == (rf, jump)
    assert nets.geometry(net, net.input_size).out_size == side


@pytest.mark.parametrize("name,rf,jump,side", GEOMETRY[:5])
def test_output_size_matches_geometry(name, rf, jump, side):
    net = nets.build(name).eval()
    out = net(torch.zeros(2, net.in_channels, net.input_size, net.input_size))
    assert out.shape == (2, 1, side, side)


@pytest.mark.parametrize("name,count", [("fcdd_28", 3416), ("fcdd_32", 93152), ("fcdd_224", 246744)])
def test_paper_parameter_counts(name, count):
    assert nets.n_parameters(nets.build(name)) == count


def test_receptive_field_is_computed_not_looked_up():
    # a network made up here: conv3 s1 p1, pool 2, conv3 dilation 2 p2 -> r = 1+2+1*... checked by hand
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=2, dilation=2))
    # r: 1 -> 3 -> 4 (j=2) -> 4 + 2*2*2 = 12; jump 2
    assert nets.receptive_field(net, 16) == (12, 2)


def test_receptive_field_is_the_true_dependency_region():
    # the gradient of one output pixel w.r.t. the input is nonzero exactly on its receptive field
    net = nets.build("fcdd_32").eval()
    g = nets.geometry(net, 32)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    net(x)[0, 0, 4, 4].backward()
    rows = torch.nonzero(x.grad.abs().sum((0, 1, 3)) > 0).flatten()
    assert rows.max() - rows.min() + 1 == g.rf
    assert (rows.min() + rows.max()) / 2 == pytest.approx(g.start + 4 * g.jump)


def test_hsc_has_fully_connected_head_and_no_local_receptive_field():
    net = nets.build("hsc_32").eval()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError, match="fully connected"):
        nets.receptive_field(net, 32)
    assert nets.receptive_field(nets.build(nets.partner("hsc_32")), 32) == (18, 4)


@pytest.mark.parametrize("name,channels,size", [("ae_28", 1, 28), ("ae_32", 3, 32)])
def test_autoencoder_reconstructs_input_shape(name, channels, size):
    net = nets.build(name).eval()
    assert net(torch.zeros(2, channels, size, size)).shape == (2, channels, size, size)


def test_unknown_network_names_the_choices():
    with pytest.raises(ValueError, match="fcdd_28"):
        nets.build("fcdd_64")


def test_vgg_weights_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="vgg11_bn"):
        nets.build("fcdd_vgg", weights_path=tmp_path / "nope.pth")


def test_vgg_weights_from_local_file_and_freezing(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["A"], batch_norm=True).state_dict().items()}
    torch.save(state, tmp_path / "w.pth")
    net = nets.build("fcdd_vgg", weights_path=tmp_path / "w.pth", freeze=3)
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    frozen = [not p.requires_grad for p in net.features.parameters()]
    # three blocks = conv, bn, conv, bn, conv, bn, conv, bn -> 4 convs and 4 BN = 16 tensors frozen
    assert sum(frozen) == 16 and not all(frozen)
    assert net.head.weight.requires_grad


def test_paper_sigma_formula():
    import math

    assert nets.paper_sigma(16) == pytest.approx(math.log(0.45 * 16 + 1) + 0.25)
    assert nets.paper_sigma(52) == 10.0


def test_authors_hsc_32_layer_shapes():
    """The authors' CNN32 (REFERENCE_FACTS): 5x5 convs of 32 / 64 / 128 channels, each halved by a pool, then
    fc 2048 -> 512 with 1-D batch norm, then fc 512 -> 64."""
    net = nets.build("hsc_32_authors").eval()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (5, 5), (2, 2)), (32, 64, (5, 5), (2, 2)), (64, 128, (5, 5), (2, 2))]
    assert all(c.bias is not None for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.features) == 3
    assert net.features(torch.zeros(2, 3, 32, 32)).shape == (2, 128, 4, 4)
    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(2048, 512), (512, 64)]
    bn = [m for m in net.head if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bn) == 1 and bn[0].num_features == 512 and bn[0].affine and bn[0].eps == 1e-4
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 64)
    assert nets.n_parameters(net) == 1_342_016
    assert nets.input_spec("hsc_32_authors") == (3, 32)
    assert nets.receptive_field(nets.build(nets.partner("hsc_32_authors")), 32) == (22, 4)
    from oneclass.methods import fcdd
    assert fcdd.defaults("cifar10", "hsc", official=True)["net"] == "hsc_32_authors"
    assert fcdd.defaults("cifar10", "hsc")["net"] == "hsc_32"
