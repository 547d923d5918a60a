"""Networks of the FCDD paper (appendix B), the wider ones of the authors' public code, HSC and autoencoders.

Names (``build(name)``):

=================  ======  ============================================================================
name               input   what
=================  ======  ============================================================================
``fcdd_28``        28px    paper, appendix B (3,416 parameters); receptive field 16, stride 4
``fcdd_32``        32px    paper, appendix B (93,152 parameters); 18 / 4
``fcdd_224``       224px   paper, appendix B (246,744 parameters); 52 / 8
``fcdd_28_wide``   28px    authors' code default for Fashion-MNIST ('wide'); 16 / 4
``fcdd_32_lw3k``   32px    authors' code default for CIFAR-10 ('LW3K'); 22 / 4
``fcdd_vgg``       224px   VGG11-BN features up to the 4th block + 1x1 conv (ImageNet, VOC); 62 / 8
``fcdd_vgg_mvtec`` 224px   the same, ImageNet-pretrained, first three blocks frozen (MVTec-AD)
``hsc_<x>``                the convolutions of ``fcdd_<x>`` followed by a fully connected head (HSC)
``hsc_32_authors`` 32px    the authors' code's HSC network for 32px images ('CNN32'); the HSC of net='official'
``ae_28/32/224``           convolutional autoencoders, encoder like the paper's FCDD network
=================  ======  ============================================================================

Every FCDD / HSC network keeps its convolutions in ``net.features`` (an ``nn.Sequential``) so that
:func:`receptive_field` can read the geometry from the layers themselves.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-4          # the authors' code and Deep SVDD use 1e-4
LEAK = 0.01


def _conv(cin, cout, k, bias=False):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def _bn(c, affine=False):
    return nn.BatchNorm2d(c, eps=BN_EPS, affine=affine)


def _act():
    # in place: every _act follows a batch norm (whose backward needs its input, not its output), so overwriting
    # the BN output changes no number and saves one activation tensor per layer (~0.7 GB of the 2.9 GB a batch of
    # 128 MVTec-AD images takes in fcdd_224)
    return nn.LeakyReLU(LEAK, inplace=True)


def _pool():
    return nn.MaxPool2d(2, 2)


class FCN(nn.Module):
    """A fully convolutional network: ``features`` (convolutions and pools) then a 1x1 conv to one channel."""

    def __init__(self, features: nn.Sequential, channels: int, in_channels: int, input_size: int,
                 head_bias: bool = False):
        super().__init__()
        self.features = features
        self.head = nn.Conv2d(channels, 1, 1, bias=head_bias)
        self.in_channels, self.input_size = in_channels, input_size

    def forward(self, x):
        return self.head(self.features(x))


class HSCNet(nn.Module):
    """The same convolutions as an FCDD network, flattened into a fully connected head (eq. 1's phi)."""

    def __init__(self, features: nn.Sequential, flat: int, in_channels: int, input_size: int, hidden: int = 128,
                 out: int = 64, pooled: bool = False):
        super().__init__()
        self.features = features
        # 224px feature maps are 28x28: pool them to 7x7 first so the dense layer stays a few million weights
        pool = [nn.AdaptiveAvgPool2d(7)] if pooled else []
        self.head = nn.Sequential(*pool, nn.Flatten(), nn.Linear(flat, hidden), nn.LeakyReLU(LEAK),
                                  nn.Linear(hidden, out))
        self.in_channels, self.input_size = in_channels, input_size

    def forward(self, x):
        return self.head(self.features(x))


def _hsc_32_authors():
    """The authors' 32px HSC network (REFERENCE_FACTS: their ``CNN32``): three blocks of a 5x5 convolution (bias),
    affine batch norm, leaky ReLU and 2x2 max pool (32, 64, 128 channels), then a 512-unit fully connected layer
    with affine 1-D batch norm and leaky ReLU, and a 64-unit output (1,342,016 parameters)."""
    features = nn.Sequential(_conv(3, 32, 5, True), _bn(32, True), _act(), _pool(),
                             _conv(32, 64, 5, True), _bn(64, True), _act(), _pool(),
                             _conv(64, 128, 5, True), _bn(128, True), _act(), _pool())
    net = HSCNet(features, 128 * 4 * 4, 3, 32)
    net.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, 512), nn.BatchNorm1d(512, eps=BN_EPS),
                             nn.LeakyReLU(LEAK), nn.Linear(512, 64))
    return net


class AutoEncoder(nn.Module):
    """Convolutional encoder (the paper's FCDD convolutions) and a mirrored decoder (upsample + conv)."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential, in_channels: int, input_size: int):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.in_channels, self.input_size = in_channels, input_size

    def forward(self, x):
        return self.decoder(self.encoder(x))


# --- the paper's networks (appendix B): no conv biases, BN without affine parameters (the parameter counts
# 3,416 / 93,152 / 246,744 of appendix B hold only that way), leaky ReLU after BN, none before the last conv.

def _features_28():
    return nn.Sequential(_conv(1, 8, 5), _bn(8), _act(), _pool(), _conv(8, 16, 5), _pool()), 16


def _features_32():
    return nn.Sequential(_conv(3, 32, 3), _bn(32), _act(), _pool(), _conv(32, 64, 3), _bn(64), _act(), _pool(),
                         _conv(64, 128, 3)), 128


def _features_224():
    return nn.Sequential(_conv(3, 8, 5), _bn(8), _act(), _pool(), _conv(8, 32, 5), _bn(32), _act(), _pool(),
                         _conv(32, 64, 3), _bn(64), _act(), _conv(64, 128, 3), _bn(128), _act(), _pool(),
                         _conv(128, 128, 3)), 128


# --- the authors' public code (REFERENCE_FACTS): conv biases on, affine BN with eps 1e-4.

def _features_28_wide():
    return nn.Sequential(_conv(1, 128, 5, True), _bn(128, True), _act(), _pool(), _conv(128, 128, 5, True),
                         _pool()), 128


def _features_32_lw3k():
    return nn.Sequential(_conv(3, 128, 3, True), _bn(128, True), _act(), _pool(),
                         _conv(128, 256, 3, True), _bn(256, True), _act(),
                         _conv(256, 256, 3, True), _bn(256, True), _act(), _pool(),
                         _conv(256, 128, 3, True)), 128


VGG_WEIGHTS_FILE = "vgg11_bn-6002323d.pth"   # torchvision's file name for IMAGENET1K_V1


def _features_vgg(pretrained: bool = False, weights_path: str | os.PathLike | None = None, freeze: int = 0):
    """VGG11-BN features up to (not including) the 4th max-pool: receptive field 62, stride 8, 512 channels.

    ``pretrained`` loads ImageNet weights: from ``weights_path`` when given, else through torchvision (its
    cache, or a download when online). ``freeze`` = number of leading conv blocks whose parameters are frozen.
    """
    from torchvision.models.vgg import cfgs, make_layers

    # only the convolutional part: building the full VGG would allocate its 120M-weight classifier for nothing
    features = make_layers(cfgs["A"], batch_norm=True)
    if pretrained or weights_path:
        state = _vgg_state(weights_path)
        features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    features = features[:21]
    frozen = 0
    for layer in features:
        if frozen >= freeze:
            break
        for p in layer.parameters():
            p.requires_grad_(False)
        if isinstance(layer, nn.MaxPool2d):
            frozen += 1
    return features, 512


def _vgg_state(weights_path):
    if weights_path:
        path = os.fspath(weights_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"VGG11-BN weights file {path!r} does not exist; pass the path of torchvision's "
                                    f"{VGG_WEIGHTS_FILE} (ImageNet-pretrained vgg11_bn state dict)")
        return torch.load(path, map_location="cpu", weights_only=True)
    from torchvision.models import VGG11_BN_Weights

    try:
        return VGG11_BN_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as err:   # offline, proxy, corrupt cache: all end the same way for the user
        hub = os.path.join(torch.hub.get_dir(), "checkpoints", VGG_WEIGHTS_FILE)
        raise RuntimeError(
            f"ImageNet-pretrained VGG11-BN weights are not available ({type(err).__name__}: {err}). Put "
            f"torchvision's {VGG_WEIGHTS_FILE} at {hub} or pass weights_path=..., or use pretrained=False "
            "(random initialisation, as the paper's ImageNet and VOC runs do)") from None


FEATURES = {
    "28": (_features_28, 1, 28),
    "32": (_features_32, 3, 32),
    "224": (_features_224, 3, 224),
    "28_wide": (_features_28_wide, 1, 28),
    "32_lw3k": (_features_32_lw3k, 3, 32),
    "vgg": (_features_vgg, 3, 224),
}

# The paper's networks as printed have no bias in the last layer either (1x1 conv: 16 / 128 parameters).
PAPER = {"28", "32", "224"}


def _fcdd(key, **kw):
    make, cin, size = FEATURES[key]
    features, ch = make(**kw)
    return FCN(features, ch, cin, size, head_bias=key not in PAPER)


def _hsc(key, **kw):
    make, cin, size = FEATURES[key]
    features, ch = make(**kw)
    with torch.no_grad():
        shape = features(torch.zeros(1, cin, size, size)).shape
    pooled = shape[-1] > 7
    return HSCNet(features, shape[1] * 49 if pooled else shape.numel(), cin, size, pooled=pooled)


def _ae(size: int, in_channels: int | None = None):
    """Encoder = the paper's FCDD convolutions for that size (each with BN and leaky ReLU), a 1x1 bottleneck,
    and a decoder that mirrors it with nearest upsampling and convolutions."""
    cin = in_channels or (1 if size == 28 else 3)
    spec = {28: [(8, 5), (16, 5)], 32: [(32, 3), (64, 3), (128, 3)], 224: [(8, 5), (32, 5), (64, 3), (128, 3)]}
    if size not in spec:
        raise ValueError(f"no autoencoder for input size {size}; choose 28, 32 or 224")
    enc, c = [], cin
    for w, k in spec[size]:
        enc += [_conv(c, w, k), _bn(w), _act(), _pool()]
        c = w
    code = max(4, c // 4)
    enc += [nn.Conv2d(c, code, 1, bias=False)]
    dec, c2 = [nn.Conv2d(code, c, 1, bias=False), _bn(c), _act()], c
    for w, k in reversed([(cin, spec[size][0][1])] + spec[size][:-1]):
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(c2, max(w, 8), k), _bn(max(w, 8)), _act()]
        c2 = max(w, 8)
    dec += [nn.Conv2d(c2, cin, 3, padding=1)]
    return AutoEncoder(nn.Sequential(*enc), nn.Sequential(*dec), cin, size)


NAMES = tuple(f"fcdd_{k}" for k in FEATURES) + ("fcdd_vgg_mvtec",) + tuple(f"hsc_{k}" for k in FEATURES) + (
    "hsc_32_authors", "ae_28", "ae_32", "ae_224")


def build(name: str, **kwargs) -> nn.Module:
    """A network by name (see the module docstring). ``fcdd_vgg`` / ``hsc_vgg`` take ``pretrained``,
    ``weights_path`` and ``freeze``; ``fcdd_vgg_mvtec`` is ``fcdd_vgg`` pretrained with 3 blocks frozen."""
    if name == "hsc_32_authors":
        if kwargs:
            raise TypeError(f"network {name!r} takes no options, got {sorted(kwargs)}")
        return _hsc_32_authors()
    if name == "fcdd_vgg_mvtec":
        return _fcdd("vgg", pretrained=kwargs.pop("pretrained", True), freeze=kwargs.pop("freeze", 3), **kwargs)
    kind, _, key = name.partition("_")
    if kind in ("fcdd", "hsc") and key in FEATURES:
        if kwargs and key != "vgg":
            raise TypeError(f"network {name!r} takes no options, got {sorted(kwargs)}")
        return (_fcdd if kind == "fcdd" else _hsc)(key, **kwargs)
    if kind == "ae" and key.isdigit():
        return _ae(int(key), **kwargs)
    raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NAMES)}")


def input_spec(name: str) -> tuple[int, int]:
    """(channels, size) of the images network ``name`` takes, without building it."""
    if name not in NAMES:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NAMES)}")
    kind, _, key = name.partition("_")
    if kind == "ae":
        return (1 if key == "28" else 3), int(key)
    if name == "hsc_32_authors":
        return 3, 32
    _, cin, size = FEATURES["vgg" if key == "vgg_mvtec" else key]
    return cin, size


def partner(name: str) -> str:
    """The FCDD network whose convolutions (and so receptive field) an HSC or AE network shares."""
    kind, _, key = name.partition("_")
    if kind == "ae":
        key = {"28": "28", "32": "32", "224": "224"}[key]
    if name == "hsc_32_authors":      # no FCDD network shares its 5x5 convolutions: blur with the authors' LW3K's
        key = "32_lw3k"
    return "fcdd_" + ("vgg" if key == "vgg_mvtec" else key)


def n_parameters(net: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable)


@dataclass(frozen=True)
class Geometry:
    """Receptive field ``rf`` and cumulative stride ``jump`` of an output pixel, ``start``: the input
    coordinate (pixel centres at 0, 1, ...) of the centre of output pixel (0, 0)'s receptive field, and the
    output size for the given input size."""

    rf: int
    jump: int
    start: float
    out_size: int


def _pair(v):
    return v if isinstance(v, int) else v[0]


def geometry(net: nn.Module, input_size: int) -> Geometry:
    """Receptive-field arithmetic over the network's conv and pool layers, in order:
    n' = floor((n + 2p - d(k-1) - 1)/s) + 1, j' = j s, r' = r + (k-1) d j, start' = start + ((k-1)d/2 - p) j.
    Reads ``net.features`` and ``net.head`` when present (FCDD / HSC networks), else every module."""
    parts = [net.features, getattr(net, "head", nn.Identity())] if hasattr(net, "features") else [net]
    n, j, r, start = int(input_size), 1, 1, 0.0
    for part in parts:
        for m in part.modules():
            if isinstance(m, (nn.Linear, nn.Flatten)):
                raise ValueError(f"{type(net).__name__} has a fully connected layer: every output depends on the "
                                 "whole input, so it has no local receptive field; use its FCDD partner network")
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
                d = _pair(getattr(m, "dilation", 1))
                if getattr(m, "ceil_mode", False):
                    raise ValueError("ceil_mode pooling is not supported by the receptive-field arithmetic")
                n = (n + 2 * p - d * (k - 1) - 1) // s + 1
                r += (k - 1) * d * j
                start += ((k - 1) * d / 2 - p) * j
                j *= s
            elif isinstance(m, (nn.ConvTranspose2d, nn.Upsample)):
                raise ValueError("the network upsamples: receptive-field arithmetic assumes an encoder-only network")
    if n < 1:
        raise ValueError(f"input size {input_size} is too small for this network (output would be empty)")
    return Geometry(rf=r, jump=j, start=start, out_size=n)


def receptive_field(net: nn.Module, input_size: int) -> tuple[int, int]:
    """(receptive field, cumulative stride) of one output pixel, computed from the network's layers."""
    g = geometry(net, input_size)
    return g.rf, g.jump


def paper_sigma(rf: int) -> float:
    """Gaussian upsampling sigma of appendix A: log(0.45 k + 1) + 0.25 for k < 20, else 10 (natural log).
    (The authors' code uses log10 and a threshold of 32, and its runners pass sigma explicitly.)"""
    return math.log(0.45 * rf + 1) + 0.25 if rf < 20 else 10.0
