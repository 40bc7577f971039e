"Noise schedules (§3.6, A.1, Table 4): moments per sample, annealing limits, low-frequency energy, seeding, float64 weights, bad inputs."
import math
import pytest
import torch
import torch.nn.functional as F

from digseg.noise import (NOISE_TYPES, ANNEAL_RULES, anneal_weights, multi_res_noise, annealed_noise, sample_noise,
                          standardize_per_sample, pyramid_sizes, default_levels)

SHAPE = (32, 4, 16, 16)


def gen(seed=0): return torch.Generator().manual_seed(seed)
def lowfreq(x): return F.avg_pool2d(x, 4).var().item()


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
@pytest.mark.parametrize("downscale", ["random", "fixed"])
def test_per_sample_moments(noise_type, downscale):
    t = torch.randint(0, 1000, (SHAPE[0],), generator=gen(5))
    e = sample_noise(noise_type, SHAPE, t, downscale=downscale, generator=gen())
    assert e.shape == SHAPE and e.dtype == torch.float32 and torch.isfinite(e).all()
    # gaussian is raw randn (1024 values a sample: sampling error); the others are standardised exactly
    mean_tol, var_tol = (0.15, 0.2) if noise_type == "gaussian" else (1e-5, 1e-4)
    torch.testing.assert_close(e.mean((1, 2, 3)), torch.zeros(SHAPE[0]), atol=mean_tol, rtol=0)
    torch.testing.assert_close(e.var((1, 2, 3), unbiased=False), torch.ones(SHAPE[0]), atol=var_tol, rtol=0)


@pytest.mark.parametrize("noise_type", ["annealed", "multires_annealed"])
@pytest.mark.parametrize("rule", ANNEAL_RULES)
def test_annealed_is_gaussian_at_t0(noise_type, rule):
    t = torch.zeros(4, dtype=torch.long)
    e = sample_noise(noise_type, (4, 4, 16, 16), t, anneal_rule=rule, generator=gen(3))
    ref = standardize_per_sample(torch.randn(4, 4, 16, 16, generator=gen(3)))   # level 0 is drawn first
    torch.testing.assert_close(e, ref, atol=1e-6, rtol=0)
    # and close to it at t = 1 (weights are O(1/T))
    e1 = sample_noise(noise_type, (4, 4, 16, 16), torch.ones(4, dtype=torch.long), anneal_rule=rule, generator=gen(3))
    assert (e1 - ref).abs().max() < 0.05


@pytest.mark.parametrize("noise_type", ["annealed", "multires", "multires_annealed"])
def test_more_low_frequency_energy_than_gaussian(noise_type):
    t = torch.full((64,), 999)
    g = lowfreq(sample_noise("gaussian", (64, 4, 16, 16), t, generator=gen()))
    e = lowfreq(sample_noise(noise_type, (64, 4, 16, 16), t, generator=gen()))
    assert abs(g - 1/16) < 0.02          # white noise keeps 1/16 of its variance after 4x4 pooling
    assert e > 3*g, (noise_type, e, g)


def test_annealing_monotone_in_t():
    lf = [lowfreq(sample_noise("multires_annealed", (64, 4, 16, 16), torch.full((64,), v), generator=gen())) for v in (0, 250, 500, 999)]
    assert lf == sorted(lf), lf


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_seeded_reproducibility(noise_type):
    t = torch.tensor([3, 999, 500, 0])
    a = sample_noise(noise_type, (4, 4, 8, 8), t, generator=gen(7))
    assert torch.equal(a, sample_noise(noise_type, (4, 4, 8, 8), t, generator=gen(7)))
    assert not torch.equal(a, sample_noise(noise_type, (4, 4, 8, 8), t, generator=gen(8)))
    torch.manual_seed(0); b = sample_noise(noise_type, (4, 4, 8, 8), t, generator=gen(7))
    torch.manual_seed(1); c = sample_noise(noise_type, (4, 4, 8, 8), t, generator=gen(7))
    assert torch.equal(b, c)            # the global RNG plays no part


def test_dtype_and_device():
    e = sample_noise("multires_annealed", (2, 4, 8, 8), torch.tensor([1, 2]), generator=gen(), dtype=torch.float64, device="cpu")
    assert e.dtype == torch.float64 and e.device.type == "cpu"
    e16 = sample_noise("multires_annealed", (2, 4, 8, 8), torch.tensor([1, 2]), generator=gen(), dtype=torch.bfloat16)
    assert e16.dtype == torch.bfloat16


@pytest.mark.parametrize("t", [0, 1, 10, 250, 500, 998, 999])
@pytest.mark.parametrize("s", [0.0, 0.5, 0.9, 1.0])
def test_anneal_weights_float64(t, s):
    L, T = 5, 1000
    got = anneal_weights(torch.tensor([t]), L, s, T, "marigold")[0].tolist()
    assert got == pytest.approx([(s*t/T)**i for i in range(L + 1)], abs=1e-15)
    want = [1.0] + [(s**i)**(T/t) if t > 0 else 0.0 for i in range(1, L + 1)]
    assert anneal_weights(torch.tensor([t]), L, s, T, "power")[0].tolist() == pytest.approx(want, abs=1e-15)
    assert anneal_weights(torch.tensor([t]), L, s, T, None)[0].tolist() == pytest.approx([s**i for i in range(L + 1)], abs=1e-15)


def test_weights_at_T_agree():
    w = anneal_weights(torch.tensor([999]), 4, 0.9, 1000, "marigold")
    wp = anneal_weights(torch.tensor([999]), 4, 0.9, 1000, "power")
    torch.testing.assert_close(w, wp, atol=5e-3, rtol=0)        # both -> s^i as t -> T


def test_pyramid_sizes_and_levels():
    assert default_levels((1, 4, 64, 64)) == 6 and default_levels((1, 4, 1, 9)) == 0
    assert pyramid_sizes(64, 32, 5, "fixed") == [(32, 16), (16, 8), (8, 4), (4, 2), (2, 1)]
    for (h, w), i in zip(pyramid_sizes(64, 64, 6, "random", gen()), range(1, 7)):
        assert max(1, int(64/4**i)) <= h <= 64/2**i and h == w
    e = multi_res_noise((2, 4, 1, 1), generator=gen())        # 0 levels fit: standardised Gaussian
    assert e.shape == (2, 4, 1, 1)
    # levels=None: as many as fit, i.e. stop after the first level with a side of 1 (r = 2: int(log2(min)))
    for H, W in [(16, 16), (64, 64), (64, 12), (7, 30), (1, 5)]:
        assert len(pyramid_sizes(H, W, None, "fixed")) == default_levels((1, 1, H, W))
        for seed in range(5):
            sz = pyramid_sizes(H, W, None, "random", gen(seed))
            assert len(sz) <= default_levels((1, 1, H, W))
            if sz: assert min(sz[-1]) == 1 and all(min(s) > 1 for s in sz[:-1])
    assert pyramid_sizes(4, 4, 4, "fixed") == [(2, 2), (1, 1), (1, 1), (1, 1)]     # explicit levels are kept


def test_contract_positional_order():
    t = torch.tensor([5, 900])
    a = sample_noise("multires_annealed", (2, 4, 8, 8), t, 1000, 0.9, None, "fixed", gen(2), "cpu", torch.float64)
    b = sample_noise("multires_annealed", (2, 4, 8, 8), t, T=1000, strength=0.9, downscale="fixed", generator=gen(2), dtype=torch.float64)
    assert a.dtype == torch.float64 and torch.equal(a, b)


def test_multires_matches_hand_pyramid():
    "Independent re-derivation of one multires_annealed draw in float64 (fixed factors, explicit levels)."
    shape, t, L = (3, 2, 8, 8), torch.tensor([0, 400, 999]), 3
    got = sample_noise("multires_annealed", shape, t, levels=L, downscale="fixed", generator=gen(4), dtype=torch.float64)
    g = gen(4)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    for i in range(1, L + 1):
        e = torch.randn(3, 2, 8 // 2**i, 8 // 2**i, generator=g, dtype=torch.float64)
        w = (0.9 * t.double() / 1000) ** i
        x = x + F.interpolate(e, size=(8, 8), mode="bilinear", align_corners=False) * w[:, None, None, None]
    x = x - x.mean((1, 2, 3), keepdim=True)
    x = x / x.var((1, 2, 3), unbiased=False, keepdim=True).sqrt()
    torch.testing.assert_close(got, x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(noise_type="pink"), ValueError, "`noise_type` must be one of ('gaussian', 'annealed', 'multires', 'multires_annealed')"),
    (dict(shape=(2, 4, 8)), ValueError, "`shape` must be a (B, C, H, W)"),
    (dict(shape=(2, 4, 0, 8)), ValueError, "`shape` must be >= 1"),
    (dict(shape=(2, 4, 8.0, 8)), TypeError, "`shape` must be an integer"),
    (dict(shape="2x4x8x8"), ValueError, "`shape` must be a (B, C, H, W)"),
    (dict(t=torch.tensor([1, 1000])), ValueError, "`t` values must be in [0, 1000)"),
    (dict(t=torch.tensor([-1, 3])), ValueError, "`t` values must be in [0, 1000)"),
    (dict(t=torch.tensor([1.0, 3.0])), TypeError, "`t` must be an integer tensor"),
    (dict(t=torch.tensor([1, 2, 3])), ValueError, "`t` must have one timestep per sample (2)"),
    (dict(t=torch.tensor([[1, 2]])), ValueError, "`t` must have rank 1"),
    (dict(t=[1, 2]), TypeError, "`t` must be a torch.Tensor"),
    (dict(t=None), ValueError, "`t` is required"),
    (dict(T=0), ValueError, "`T` must be >= 1"),
    (dict(strength=1.5), ValueError, "`strength` must be in [0, 1]"),
    (dict(strength=float("nan")), ValueError, "`strength` must be finite"),
    (dict(levels=-1), ValueError, "`levels` must be >= 0"),
    (dict(levels=1.5), TypeError, "`levels` must be an integer"),
    (dict(downscale="nearest"), ValueError, "`downscale` must be one of ('random', 'fixed')"),
    (dict(anneal_rule="linear"), ValueError, "`anneal_rule` must be one of ('marigold', 'power')"),
    (dict(generator=42), TypeError, "`generator` must be a torch.Generator"),
    (dict(levels=None, shape=(2, 4, 8, 8), downscale="bicubic"), ValueError, "`downscale` must be one of"),
    (dict(dtype=torch.int64), TypeError, "`dtype` must be a floating torch.dtype"),
])
def test_sample_noise_bad_inputs(kw, exc, msg):
    args = {**dict(noise_type="multires_annealed", shape=(2, 4, 8, 8), t=torch.tensor([1, 2])), **kw}
    with pytest.raises(exc) as e: sample_noise(**args)
    assert msg in str(e.value)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="`rule` must be one of"): anneal_weights(torch.tensor([1]), 2, rule="cos")
    with pytest.raises(ValueError, match="`levels` must be >= 0"): anneal_weights(torch.tensor([1]), -2)
    with pytest.raises(ValueError, match="`t` is required"): multi_res_noise((2, 4, 8, 8), anneal="marigold")
    with pytest.raises(ValueError, match="`rule` must be one of"): annealed_noise((2, 4, 8, 8), torch.tensor([1, 2]), rule=None)
    with pytest.raises(ValueError, match="at least 2 values"): standardize_per_sample(torch.zeros(3, 1, 1, 1))
