"""Tests of the 3D networks: spinedx.models.deepmedic and spinedx.models.segmentation.

Shapes and the paper's size bookkeeping (Kamnitsas et al. 2017: 25^3 normal input, 19^3
context input, 9^3 output, receptive field 51), the receptive field measured by
gradients, residual connections, a gradient step, CPU determinism with one thread
(bit-identical weights on this machine only), and the MONAI factory.
"""

import pytest
import torch


from spinedx.models import deepmedic, segmentation  # noqa: E402
DeepMedic = deepmedic.DeepMedic

SMALL = dict(normal_widths=(4, 4, 4), fc_widths=(8,), subsample_factor=3)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_paper_configuration_bookkeeping():
    model = DeepMedic(2)
    assert model.pathway_sizes(9) == {"region": (57,) * 3, "normal_input": (25,) * 3,
                                      "context_input": (19,) * 3, "output": (9,) * 3}
    assert model.receptive_field == 51 and model.input_margin == 24 and model.size_divisor == 3
    assert model.output_size(57) == (9, 9, 9)
    # DeepMedic's inference segments: 45^3 output from 93^3 (normal 61^3, context 31^3)
    assert model.pathway_sizes(45)["normal_input"] == (61,) * 3
    assert model.pathway_sizes(45)["context_input"] == (31,) * 3
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 57, 57, 57)).shape == (1, 1, 9, 9, 9)


def test_shapes_and_size_errors():
    model = DeepMedic(3, 2, **SMALL)
    assert model.input_margin == 9 and model.receptive_field == 21
    assert model.input_size((3, 6, 9)) == (21, 24, 27)
    normal, context = model.split(torch.zeros(2, 3, 21, 24, 27))
    assert normal.shape == (2, 3, 9, 12, 15) and context.shape == (2, 3, 7, 8, 9)
    assert model(torch.zeros(2, 3, 21, 24, 27)).shape == (2, 2, 3, 6, 9)
    with pytest.raises(ValueError, match="multiples of 3"):
        model.input_size(4)
    with pytest.raises(ValueError, match="input size"):
        model(torch.zeros(1, 3, 22, 22, 22))
    with pytest.raises(ValueError, match="expected"):
        model(torch.zeros(1, 2, 21, 21, 21))
    with pytest.raises(ValueError, match="residual_layers"):
        DeepMedic(1, residual_layers=(1,), **SMALL)


def test_receptive_field_by_gradient():
    torch.manual_seed(0)
    model = DeepMedic(1, **SMALL).eval()  # eval: batch statistics would couple all voxels
    region = torch.randn(1, 1, 27, 27, 27, requires_grad=True)  # output 9^3
    model(region)[0, 0, 4, 4, 4].backward()
    support = region.grad[0, 0].abs() > 0
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        seen = torch.nonzero(support.any(dim=other)).flatten()
        # output voxel 4 lies in low-resolution block 1 (outputs 3..5), which sees input
        # blocks 1..7 of the pooled region: full-resolution voxels 3..23
        assert (seen.min().item(), seen.max().item()) == (3, 23)
        assert seen.max().item() - seen.min().item() + 1 == model.receptive_field
    # the normal pathway alone sees 7 voxels: 13 +- 3
    normal_model = DeepMedic(1, **SMALL).eval()
    with torch.no_grad():
        for p in normal_model.context.parameters():
            p.zero_()
    region.grad = None
    normal_model(region)[0, 0, 4, 4, 4].backward()
    seen = torch.nonzero(region.grad[0, 0].abs().sum(dim=(1, 2)) > 0).flatten()
    assert (seen.min().item(), seen.max().item()) == (10, 16)


def test_residual_connections():
    residual = torch.arange(2 * 2 * 5 * 5 * 5, dtype=torch.float32).reshape(2, 2, 5, 5, 5)
    x = torch.zeros(2, 3, 3, 3, 3)
    added = deepmedic._add_residual(x, residual)
    assert torch.equal(added[:, :2], residual[:, :, 1:4, 1:4, 1:4]) and not added[:, 2].any()
    fewer = deepmedic._add_residual(torch.zeros(2, 1, 3, 3, 3), residual)
    assert torch.equal(fewer, residual[:, :1, 1:4, 1:4, 1:4])
    torch.manual_seed(0)
    plain = DeepMedic(1, normal_widths=(4, 4, 6, 6), fc_widths=(8,))
    torch.manual_seed(0)
    with_residual = DeepMedic(1, normal_widths=(4, 4, 6, 6), fc_widths=(8,), residual_layers=(3, 4))
    region = torch.randn(1, 1, *with_residual.input_size(3))
    plain.eval(), with_residual.eval()
    with torch.no_grad():
        assert not torch.allclose(plain(region), with_residual(region))


def small_batch(model, n=2, output=3, seed=0, in_channels=2):
    generator = torch.Generator().manual_seed(seed)
    size = model.input_size(output) if isinstance(model, DeepMedic) else (output,) * 3
    region = torch.randn(n, in_channels, *size, generator=generator)
    target = (torch.rand(n, 1, output, output, output, generator=generator) > 0.7).float()
    return region, target


def train_steps(model, steps=2, lr=0.05, output=3):
    # plain SGD by hand: torch.optim's first use imports torch._dynamo (~5 s here)
    region, target = small_batch(model, output=output)
    losses = []
    for _ in range(steps):
        model.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(region), target)
        loss.backward()
        losses.append(loss.item())
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= lr * parameter.grad
    return losses


def test_gradient_step_reaches_both_pathways():
    torch.manual_seed(0)
    model = DeepMedic(2, **SMALL)
    region, target = small_batch(model)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(region), target)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    torch.manual_seed(0)
    losses = train_steps(DeepMedic(2, **SMALL), steps=3)
    assert losses[-1] < losses[0]


def test_cpu_determinism_with_one_thread(one_thread):
    def run():
        torch.manual_seed(123)
        model = DeepMedic(2, **SMALL)
        train_steps(model)
        return model.state_dict()

    first, second = run(), run()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_factory_builds_monai_and_deepmedic():
    unet = segmentation.build_network("basic_unet", in_channels=2, features=(4, 4, 8, 8, 16, 4))
    assert (unet.input_margin, unet.size_divisor) == (0, 16)
    x = torch.randn(1, 2, 32, 32, 32)
    assert unet(x).shape == (1, 1, 32, 32, 32)
    other = segmentation.build_network("unet", in_channels=2, channels=(4, 8, 16), strides=(2, (2, 2, 1)))
    assert (other.input_margin, other.size_divisor) == (0, 4)
    assert other(torch.randn(1, 2, 16, 16, 16)).shape == (1, 1, 16, 16, 16)
    built = segmentation.build_network("deepmedic", in_channels=2, **SMALL)
    assert isinstance(built, DeepMedic) and built.input_margin == 9
    with pytest.raises(ValueError, match="unknown network"):
        segmentation.build_network("vnet", in_channels=1)
    with pytest.raises(ValueError, match="3D only"):
        segmentation.build_network("basic_unet", in_channels=1, spatial_dims=2)
    torch.manual_seed(0)
    unet = segmentation.build_network("unet", in_channels=2, channels=(4, 8), strides=(2,))
    losses = train_steps(unet, steps=3, output=8)
    assert losses[-1] < losses[0]
