import pytest
import torch

from mer.models import cpu_kernels, stock_ops
from mer.models.mer3dcnn import MER3DCNN
from mer.models.microexpstcnn import MicroExpSTCNN


def n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_table2_shapes_and_parameter_count():
    model = MER3DCNN(num_classes=3, depth=10, size=128, dropout=0.3)
    assert n_params(model) == 452_611
    x = torch.zeros(2, 1, 10, 128, 128)
    shapes = []
    for layer in model.features:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    # Table II: conv 32x8x126x126, pool 32x2x42x42, dropout, pool 32x1x21x21, dropout, flatten 14112
    assert shapes == [(32, 8, 126, 126), (32, 8, 126, 126), (32, 2, 42, 42), (32, 2, 42, 42),
                      (32, 1, 21, 21), (32, 1, 21, 21), (14112,)]
    assert model(torch.zeros(2, 1, 10, 128, 128)).shape == (2, 3)
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 4


def test_shapes_follow_the_config():
    model = MER3DCNN(num_classes=5, depth=12, size=64)
    assert model(torch.zeros(1, 1, 12, 64, 64)).shape == (1, 5)


def test_microexpstcnn_baseline_shapes():
    model = MicroExpSTCNN(num_classes=3, depth=18, size=64)
    assert model.features(torch.zeros(1, 1, 18, 64, 64)).shape == (1, 32 * 1 * 20 * 20)
    assert model(torch.zeros(4, 1, 18, 64, 64)).shape == (4, 3)


def test_bad_model_values_are_refused():
    with pytest.raises(ValueError, match="dropout"):
        MER3DCNN(dropout=1.5)
    with pytest.raises(ValueError, match="model.impl must be one of fused, stock, reference"):
        MER3DCNN(impl="fast")
    with pytest.raises(ValueError, match="temporal_kernel"):
        MicroExpSTCNN(depth=10, temporal_kernel=15)


def test_the_cpu_kernels_build_here():
    # a machine with a compiler must get the fused path, not a silent fallback
    assert cpu_kernels.load_kernels() is not None


def test_a_kernel_build_failure_falls_back_to_stock_ops_with_one_notice(kernel_build_fails, caplog):
    x = torch.rand(2, 1, 10, 32, 32)
    model = MER3DCNN(impl="fused", size=32).eval()
    assert torch.allclose(model(x), model.reference_forward(x), atol=1e-5, rtol=0)
    model(x)  # a second forward: still the one notice
    assert model.impl_ran == "stock"
    notices = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert notices == ["MER3DCNN CPU kernels unavailable (ninja: build stopped: subcommand failed.); using stock PyTorch ops"]


@pytest.mark.parametrize("impl", ["fused", "stock"])
def test_fast_forward_is_exactly_the_reference_in_float64(impl):
    torch.manual_seed(0)
    model = MER3DCNN(impl=impl).double().eval()
    x = torch.rand(3, 1, 10, 128, 128, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    grads = []
    for forward in (model.reference_forward, model.forward):
        model.zero_grad()
        logits = forward(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (ref_logits, ref_grads), (fast_logits, fast_grads) = grads
    assert torch.allclose(ref_logits, fast_logits, atol=1e-10, rtol=0)
    for ref, fast in zip(ref_grads, fast_grads):
        assert torch.allclose(ref, fast, atol=1e-10, rtol=0)


@pytest.mark.parametrize("impl", ["fused", "stock"])
@pytest.mark.parametrize("depth", [10, 11, 12, 18])
def test_fast_forward_matches_for_other_depths(depth, impl):
    model = MER3DCNN(depth=depth, size=64, impl=impl).double().eval()
    x = torch.rand(2, 1, depth, 64, 64, dtype=torch.float64)
    assert torch.allclose(model(x), model.reference_forward(x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("channels", [16, 48, 8])
def test_fused_path_takes_channel_counts_in_sixteens(channels):
    # 48 = a full pass of register blocks and a remainder; 8 falls back to stock ops
    model = MER3DCNN(channels=channels, depth=10, size=32).eval()
    conv, pool = model.features[0], model.features[2]
    x = torch.rand(2, 1, 10, 32, 32)
    assert cpu_kernels.conv_pool_applies(x, conv, pool) == (channels % 16 == 0)
    assert torch.allclose(model(x), model.reference_forward(x), atol=1e-5, rtol=0)
    model, x = model.double(), x.double()
    assert torch.allclose(model(x), model.reference_forward(x), atol=1e-10, rtol=0)


def test_fused_path_follows_pooling_ties_like_maxpool():
    # a constant clip makes every conv output in a window equal: the gradient must go to the
    # window's first position, as MaxPool3d sends it
    torch.manual_seed(0)
    model = MER3DCNN(size=64).double().eval()
    x = torch.full((2, 1, 10, 64, 64), 0.5, dtype=torch.float64)
    grads = []
    for impl in ("reference", "fused"):
        model.impl = impl
        model.zero_grad()
        model(x).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for ref, fused in zip(*grads):
        assert torch.allclose(ref, fused, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dropout", [cpu_kernels.dropout, stock_ops.dropout], ids=["kernel", "stock"])
def test_fast_dropouts_have_dropouts_distribution_and_gradient(dropout):
    x = torch.ones(400_001, requires_grad=True)  # odd: the kernel draws in pairs, the last alone
    torch.manual_seed(3)
    out = dropout(x, 0.3, training=True)
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.7) < 5 * (0.21 / 400_000) ** 0.5
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))
    pairs = (kept[:-1] & kept[1:]).double().mean().item()  # neighbours drawn independently
    assert abs(pairs - 0.49) < 5 * (0.25 / 400_000) ** 0.5
    out.backward(torch.full_like(out, 2.0))
    assert torch.equal(x.grad, out.detach() * 2.0)
    assert dropout(x, 0.3, training=False) is x


def test_kernel_dropout_masks_follow_torchs_seed_not_the_thread_count():
    x = torch.rand(2, 32, 2, 42, 42).contiguous(memory_format=torch.channels_last_3d)
    threads = torch.get_num_threads()
    masks = []
    try:
        for seed, n_threads in ((5, 1), (5, 2), (6, 2)):
            torch.manual_seed(seed)
            torch.set_num_threads(n_threads)
            masks.append(cpu_kernels.dropout(x, 0.5, training=True))
    finally:
        torch.set_num_threads(threads)
    assert masks[0].is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[1], masks[2])


def test_flatten_hands_pooling_a_channels_last_gradient():
    x = torch.rand(4, 32, 2, 6, 6, requires_grad=True)
    pooled = torch.nn.functional.max_pool3d(x.contiguous(memory_format=torch.channels_last_3d), 2)
    flat = stock_ops.flatten_channels_last(pooled)
    assert torch.equal(flat, pooled.flatten(1))
    grad = torch.rand_like(flat)
    (pooled_grad,) = torch.autograd.grad(flat, pooled, grad)
    assert pooled_grad.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(pooled_grad, grad.view(pooled.shape))


def test_stock_path_never_convolves_a_lone_clip_of_a_batch():
    assert stock_ops.chunk_sizes(20) == [2] * 10
    assert stock_ops.chunk_sizes(11) == [2, 2, 2, 2, 3]
    assert stock_ops.chunk_sizes(1) == [1]
