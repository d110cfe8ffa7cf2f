"""DenoisingUNet: 1D/2D/3D forward + backward, receptive field of the kernel, batch independence, checkpointing,
padding modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_gen.networks.nets import DenoisingUNet

SHAPES = {1: (2, 3, 32), 2: (2, 2, 16, 16), 3: (2, 1, 8, 8, 8)}


def _net(spatial_dims: int, **kwargs) -> DenoisingUNet:
    args = dict(
        channels=(8, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        norm_num_groups=8,
        num_head_channels=8,
        with_conditioning=True,
        cross_attention_dim=8,
    )
    args.update(kwargs)
    channels = SHAPES[spatial_dims][1]
    torch.manual_seed(0)
    net = DenoisingUNet(spatial_dims, channels, channels, **args)
    for module in net.modules():  # undo MONAI's zero init so every path carries signal and gradient
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not module.weight.any():
            nn.init.normal_(module.weight, std=0.1)
    return net


@pytest.mark.parametrize("spatial_dims, resblock_updown", [(1, False), (1, True), (2, False), (3, False)])
def test_forward_backward_reaches_every_parameter(spatial_dims, resblock_updown):
    net = _net(spatial_dims, kernel_size=5 if spatial_dims == 1 else 3, resblock_updown=resblock_updown)
    x = torch.randn(SHAPES[spatial_dims])
    out = net(x, torch.tensor([0.1, 0.9]), context=torch.randn(2, 3, 8))
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("kernel_size", [3, 9])
def test_1d_convolutions_are_width_k_1d_convolutions(kernel_size):
    net = _net(1, kernel_size=kernel_size)
    spatial = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert spatial and all(m.kernel_size == (kernel_size, 1) and m.stride[1] == 1 for m in spatial)
    x = torch.randn(2, 3, 32)
    conv = net.conv_in.conv
    expected = nn.functional.conv1d(x, conv.weight.squeeze(-1), conv.bias, padding=kernel_size // 2)
    torch.testing.assert_close(net.conv_in(x.unsqueeze(-1)).squeeze(-1), expected)
    # the length halves per level and the width stays one: a level's output reaches the next level unchanged
    down = net.down_blocks[0].downsampler(net.conv_in(x.unsqueeze(-1)))
    assert down.shape == (2, 8, 16, 1)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_1d_convolutions_compute_what_the_2d_convolution_they_replace_computes(padding_mode):
    net = _net(1, kernel_size=7, padding_mode=padding_mode)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is not nn.Conv2d for m in convs)  # every one runs as conv1d
    for conv in convs:
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, padding_mode=conv.padding_mode, bias=conv.bias is not None)
        plain.load_state_dict(conv.state_dict())
        x = torch.randn(2, conv.in_channels, 32, 1)
        torch.testing.assert_close(conv(x), plain(x))


def test_context_time_tokens_add_a_zero_initialised_path_from_the_context_to_every_level():
    plain, timed = _net(1), _net(1, context_time_tokens=2)
    missing = timed.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["context_time_embed.weight", "context_time_embed.bias"]
    x, t, context = torch.randn(2, 3, 32), torch.tensor([0.4, 0.4]), torch.randn(2, 2, 8)
    torch.testing.assert_close(timed(x, t, context=context), plain(x, t, context=context))  # starts as without
    optimiser = torch.optim.SGD(timed.context_time_embed.parameters(), lr=0.1)  # train the new path alone
    (timed(x, t, context=context) - x).square().mean().backward()
    optimiser.step()
    with torch.no_grad():
        assert (timed(x, t, context=context) - plain(x, t, context=context)).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"projects 2 context tokens .* shape \(B, 2, 8\)"):
        timed(x, t, context=torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match="projects 2 context tokens"):
        timed(x, t)
    with pytest.raises(ValueError, match="context_time_tokens needs with_conditioning=True"):
        DenoisingUNet(1, 3, 3, channels=(8,), attention_levels=(False,), norm_num_groups=8, context_time_tokens=2)


def test_per_axis_kernel_size_for_volumes():
    net = _net(3, kernel_size=(3, 3, 1))  # Medical Diffusion's 3 x 3 x 1 convolutions
    spatial = [m for m in net.modules() if isinstance(m, nn.Conv3d) and m.kernel_size != (1, 1, 1)]
    assert spatial and all(m.kernel_size == (3, 3, 1) and m.padding == (1, 1, 0) for m in spatial)
    x = torch.randn(SHAPES[3])
    assert net(x, torch.rand(2), context=torch.randn(2, 1, 8)).shape == x.shape


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_samples_do_not_mix_across_the_batch(spatial_dims):
    net = _net(spatial_dims).eval()
    x, context, t = torch.randn(SHAPES[spatial_dims]), torch.randn(2, 3, 8), torch.tensor([0.2, 0.7])
    with torch.no_grad():
        both = net(x, t, context=context)
        first = net(x[:1], t[:1], context=context[:1])
        other_t = net(x[:1], t[1:], context=context[:1])
        other_context = net(x[:1], t[:1], context=context[1:])
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-4)
    assert (first - other_t).abs().max() > 1e-3  # time reaches the output
    assert (first - other_context).abs().max() > 1e-3  # cross-attention context reaches the output


def test_class_labels_change_the_output():
    net = _net(2, num_class_embeds=3).eval()
    x, t = torch.randn(1, 2, 16, 16), torch.tensor([0.5])
    with torch.no_grad():
        a = net(x, t, context=torch.zeros(1, 1, 8), class_labels=torch.tensor([0]))
        b = net(x, t, context=torch.zeros(1, 1, 8), class_labels=torch.tensor([2]))
    assert (a - b).abs().max() > 1e-3


def test_checkpointing_keeps_outputs_gradients_and_state_dict_keys():
    plain, ckpt = _net(1), _net(1, use_checkpointing=True)
    assert list(plain.state_dict()) == list(ckpt.state_dict())
    ckpt.load_state_dict(plain.state_dict())
    x, t, context = torch.randn(SHAPES[1]), torch.tensor([0.3, 0.6]), torch.randn(2, 2, 8)
    outs = [net(x, t, context=context) for net in (plain, ckpt)]
    torch.testing.assert_close(outs[0], outs[1])
    for out in outs:
        out.square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 4}, "spatial_dims must be one of"),
        ({"kernel_size": 4}, "kernel_size must be an odd"),
        ({"kernel_size": (3, 3)}, r"kernel_size must be one int or 1 ints, got \(3, 3\)"),
        ({"padding_mode": "mirror"}, r"padding_mode must be one of \('zeros', 'reflect', 'replicate', 'circular'\), got 'mirror'"),
    ],
)
def test_bad_configuration_is_rejected(kwargs, match):
    args = {
        "spatial_dims": 1,
        "in_channels": 1,
        "out_channels": 1,
        "channels": (8,),
        "attention_levels": (False,),
        "norm_num_groups": 8,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DenoisingUNet(**args)


def test_bad_input_is_rejected():
    net = _net(1)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 3, 33), torch.rand(1), context=torch.randn(1, 1, 8))
    with pytest.raises(ValueError, match="1 spatial dims"):
        net(torch.randn(1, 3, 32, 32), torch.rand(1), context=torch.randn(1, 1, 8))
    with pytest.raises(ValueError, match=r"timesteps must have shape \(B,\)"):
        net(torch.randn(2, 3, 32), torch.rand(1), context=torch.randn(2, 1, 8))


@pytest.mark.parametrize("coordinates", [False, True])
def test_coordinate_channels_break_translation_equivariance(coordinates):
    torch.manual_seed(0)
    net = DenoisingUNet(1, 2, 2, channels=(8, 8), attention_levels=(False, False), num_res_blocks=1,
                        norm_num_groups=8, coordinate_channels=coordinates)
    assert net.conv_in.conv.in_channels == 2 + coordinates  # signal channels (+ 1 coordinate channel)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        flat = net(torch.zeros(1, 2, 256), 0.5)
    # away from the borders a constant input gives a position-dependent output only through the coordinates
    # (compared one downsampling period apart, so the stride-2 pattern of the U-Net itself cancels)
    shifted = (flat[..., 96:160] - flat[..., 98:162]).abs().max()
    assert (shifted > 1e-5) == coordinates


@pytest.mark.parametrize("spatial_dims", [1, 2])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_mode_decides_whether_the_window_border_shows_in_the_output(spatial_dims, padding_mode):
    # a constant input has no border of its own: any position dependence of the output comes from how the
    # convolutions pad (no coordinate channels here); MONAI's zero padding makes the border samples differ
    net = _net(spatial_dims, padding_mode=padding_mode)
    shape = (1, SHAPES[spatial_dims][1], *(32,) * spatial_dims)
    with torch.no_grad():
        out = net(torch.full(shape, 0.7), 0.5, context=torch.randn(1, 2, 8))
    spread = float((out.flatten(2).amax(-1) - out.flatten(2).amin(-1)).max())
    assert (spread > 1e-3) if padding_mode == "zeros" else (spread < 1e-5), spread


def test_padding_mode_keeps_the_parameters_and_state_dict():
    zeros, reflect = _net(1), _net(1, padding_mode="reflect")
    assert zeros.padding_mode == "zeros" and reflect.padding_mode == "reflect"
    reflect.load_state_dict(zeros.state_dict())  # strict: weights move between padding modes
    padded = [m for m in reflect.modules() if isinstance(m, nn.Conv2d) and m.padding[0] > 0]
    assert padded and all(m.padding_mode == "reflect" for m in padded)
    assert all(m.padding_mode == "zeros" for m in zeros.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("spatial_dims, resblock_updown", [(1, False), (1, True), (2, False)])
def test_forward_is_monai_diffusion_unet_forward(spatial_dims, resblock_updown):
    """The TorchScript-compilable forward computes what MONAI's DiffusionModelUNet.forward computes."""
    from monai.networks.nets import DiffusionModelUNet

    net = _net(spatial_dims, resblock_updown=resblock_updown, num_class_embeds=3).eval()
    x = torch.randn(SHAPES[spatial_dims])
    h = x.unsqueeze(-1) if spatial_dims == 1 else x
    time, context, labels = torch.tensor([10.0, 900.0]), torch.randn(2, 3, 8), torch.tensor([0, 2])
    with torch.no_grad():
        ours = net._unet_forward(h, time, context, labels)
        monai = DiffusionModelUNet.forward(net, h, time, context=context, class_labels=labels)
    torch.testing.assert_close(ours, monai, rtol=0, atol=0)


@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_torchscript_equals_eager(spatial_dims):
    net = _net(spatial_dims, coordinate_channels=True, padding_mode="reflect").eval()
    scripted = torch.jit.script(net)
    x, t, context = torch.randn(SHAPES[spatial_dims]), torch.tensor([0.2, 0.7]), torch.randn(2, 3, 8)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x, t, context), net(x, t, context=context), rtol=0, atol=0)


def test_time_argument_names_and_default():
    net = _net(1).eval()
    x, t, context = torch.randn(2, 3, 32), torch.tensor([0.3, 0.8]), torch.randn(2, 3, 8)
    with torch.no_grad():
        expected = net(x, t, context=context)
        torch.testing.assert_close(net(x, timesteps=t, context=context), expected)
        torch.testing.assert_close(net(x, t=t, context=context), expected)  # the former name
        ones = torch.ones(2)
        torch.testing.assert_close(net(x, context=context), net(x, ones, context=context))  # default: t = 1
        assert not torch.equal(net(x, context=context), expected)
    with pytest.raises(ValueError, match="give the diffusion time once"):
        net(x, t, context=context, t=t)
