"Sampler: float64 re-derivations, diffusers references, bad input (the oracle sweep over spacing x steps x prediction type is in nbs/05_sampler)."
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from digseg.models import build_unet
from digseg.components import SD2_SCHEDULER_CONFIG
from digseg.sampler import (PREDICTION_TYPES, TIMESTEP_SPACINGS, DEFAULT_PREDICTION_TYPE, DenoiseOutput, add_noise,
                            ddim_timesteps, denoise, ensemble_latents, make_sampler, make_train_scheduler,
                            sample_timesteps, training_target, oracle_model)

ALPHAS = make_sampler().alphas_cumprod.double()
Y0 = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def sd2_alphas_float64():
    "ᾱ re-derived from SD2's scaled-linear betas entirely in float64 (independent of diffusers)."
    c = SD2_SCHEDULER_CONFIG
    betas = np.linspace(c["beta_start"]**0.5, c["beta_end"]**0.5, c["num_train_timesteps"], dtype=np.float64)**2
    return np.cumprod(1 - betas)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_oracle_recovers_target_with_eta(kind):
    out = denoise(oracle_model(Y0, kind, ALPHAS), torch.zeros_like(Y0), None, 10, "trailing", 3, eta=1.0,
                  generator=torch.Generator().manual_seed(0), prediction_type=kind)
    torch.testing.assert_close(out.mean, Y0, rtol=0, atol=1e-9)


def test_prediction_type_from_scheduler():
    for kind in PREDICTION_TYPES:
        out = denoise(oracle_model(Y0, kind, ALPHAS), torch.zeros_like(Y0), None, 3, scheduler=make_train_scheduler(kind))
        torch.testing.assert_close(out.mean, Y0, rtol=0, atol=1e-10)
    assert DEFAULT_PREDICTION_TYPE == "v_prediction"
    out = denoise(oracle_model(Y0, "v_prediction", ALPHAS), torch.zeros_like(Y0), None)  # default is v
    torch.testing.assert_close(out.mean, Y0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 5, 10, 20, 50])
def test_ddim_timesteps_match_diffusers(spacing, steps):
    ref = DDIMScheduler.from_config(SD2_SCHEDULER_CONFIG, timestep_spacing=spacing)
    ref.set_timesteps(steps)
    assert ddim_timesteps(steps, spacing) == ref.timesteps.tolist()
    assert ddim_timesteps(steps, spacing, make_train_scheduler()) == ref.timesteps.tolist()


def test_first_timestep_trailing_vs_leading():
    for spacing, expect in [("trailing", [999]), ("leading", [1]), ("linspace", [0])]:
        seen = []
        denoise(oracle_model(Y0, "sample", ALPHAS, seen), torch.zeros_like(Y0), None, 1, spacing)
        assert seen == expect == ddim_timesteps(1, spacing)
    assert ddim_timesteps(10, "trailing")[0] == 999 and ddim_timesteps(10, "leading")[-1] == 1
    # a scheduler's own steps_offset is honoured
    assert ddim_timesteps(1, "leading", make_sampler(steps_offset=0)) == [0]
    # a DDPM training scheduler's defaulted 'leading' spacing must not override the spacing asked for
    # (diffusers' from_config drops `_use_default_values` keys from a merged dict)
    for spacing, expect in [("trailing", [999]), ("leading", [1])]:
        seen = []
        denoise(oracle_model(Y0, "sample", ALPHAS, seen), torch.zeros_like(Y0), None, 1, spacing, scheduler=make_train_scheduler())
        assert seen == expect


def test_epsilon_error_amplification_at_t999():
    inv_sqrt_a = 1/np.sqrt(sd2_alphas_float64()[999])
    assert 14.5 < inv_sqrt_a < 14.7
    np.testing.assert_allclose(ALPHAS[999].item(), sd2_alphas_float64()[999], rtol=1e-5)
    err = {}
    for kind in ("epsilon", "v_prediction"):
        biased = lambda x, t, c, f=oracle_model(Y0, kind, ALPHAS): f(x, t, c) + 0.05
        err[kind] = (denoise(biased, torch.zeros_like(Y0), None, 1, "trailing", prediction_type=kind).mean - Y0).abs()
    np.testing.assert_allclose(err["epsilon"].numpy(), 0.05*np.sqrt(1 - 1/inv_sqrt_a**2)*inv_sqrt_a, rtol=1e-5)
    np.testing.assert_allclose((err["epsilon"]/err["v_prediction"]).numpy(), inv_sqrt_a, rtol=1e-5)


def test_ensembling_vs_manual_float64():
    lat = torch.randn(5, 2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    mean, std = ensemble_latents(lat)
    ref = lat.double().numpy()
    np.testing.assert_allclose(mean.numpy(), ref.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), ref.std(0), rtol=1e-5, atol=1e-6)  # population std
    out = denoise(lambda x, t, c: 0.5*x, lat[0], None, 2, ensemble_size=5,
                  generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(out.mean.numpy(), out.latents.double().numpy().mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.std.numpy(), out.latents.double().numpy().std(0), rtol=1e-5, atol=1e-6)


def test_member_order_and_generator_list():
    "Row k = e*B + b; a list of E*B generators seeds row k with generator k."
    E, B, starts = 3, 2, []
    def grab(x, t, c):
        starts.append(x.clone()); return torch.zeros_like(x)
    gens = [torch.Generator().manual_seed(10 + k) for k in range(E*B)]
    denoise(grab, torch.zeros(B, 4, 2, 2), torch.arange(B), 1, ensemble_size=E, generator=gens, prediction_type="sample")
    for k in range(E*B):
        torch.testing.assert_close(starts[0][k], torch.randn(4, 2, 2, generator=torch.Generator().manual_seed(10 + k)))
    conds = []
    denoise(lambda x, t, c: conds.append(c) or torch.zeros_like(x), torch.zeros(B, 4, 2, 2), torch.arange(B), 1,
            ensemble_size=E)
    assert conds[0].tolist() == [0, 1]*E


@pytest.mark.parametrize("n", [1, 5, 7])
def test_wrong_generator_list_length(n):
    with pytest.raises(ValueError, match="`generator` list must have ensemble_size\\*batch = 6"):
        denoise(oracle_model(Y0, "sample", ALPHAS), torch.zeros_like(Y0), None, ensemble_size=3,
                generator=[torch.Generator().manual_seed(i) for i in range(n)])


def test_determinism_and_fresh_scheduler():
    unet = build_unet("tiny", in_channels=8)
    zx, text = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 32)
    def fn(x, t, c): return unet(torch.cat([zx.repeat(len(x)//2, 1, 1, 1), x], 1), t, encoder_hidden_states=c).sample
    sched = make_sampler("leading")
    runs = [denoise(fn, zx, text, 2, ensemble_size=2, generator=torch.Generator().manual_seed(7), scheduler=sched)
            for _ in range(2)]
    assert torch.equal(runs[0].latents, runs[1].latents)
    assert runs[0].latents.shape == (2, 2, 4, 8, 8) and runs[0].mean.shape == runs[0].std.shape == (2, 4, 8, 8)
    assert torch.isfinite(runs[0].latents).all() and runs[0].latents.dtype == torch.float32
    assert sched.num_inference_steps is None  # the caller's scheduler was not touched
    other = denoise(fn, zx, text, 2, ensemble_size=2, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other.latents, runs[0].latents)


def test_training_target_and_add_noise_match_diffusers():
    clean = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 1, 500, 999])
    for kind in PREDICTION_TYPES:
        s = make_train_scheduler(kind)
        ref = DDPMScheduler.from_config(SD2_SCHEDULER_CONFIG, prediction_type=kind)
        assert isinstance(s, DDPMScheduler) and s.config.prediction_type == kind
        torch.testing.assert_close(s.betas, ref.betas, rtol=0, atol=0)
        assert torch.equal(add_noise(s, clean, noise, t), ref.add_noise(clean, noise, t))
        expect = {"epsilon": noise, "sample": clean, "v_prediction": ref.get_velocity(clean, noise, t)}[kind]
        assert torch.equal(training_target(s, clean, noise, t), expect)
    # float64 re-derivation of Eq. 5 and of v
    a = torch.from_numpy(sd2_alphas_float64())[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(add_noise(make_train_scheduler(), clean.double(), noise.double(), t),
                               a.sqrt()*clean.double() + (1 - a).sqrt()*noise.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(training_target(make_train_scheduler(), clean.double(), noise.double(), t),
                               a.sqrt()*noise.double() - (1 - a).sqrt()*clean.double(), rtol=1e-5, atol=1e-6)
    d = make_sampler("trailing", "epsilon")
    assert isinstance(d, DDIMScheduler) and d.config.timestep_spacing == "trailing" and d.config.steps_offset == 1


def test_sample_timesteps():
    t = sample_timesteps(20000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() == 0 and t.max() == 999
    assert abs(t.double().mean().item() - 499.5) < 10
    assert torch.equal(t, sample_timesteps(20000, generator=torch.Generator().manual_seed(0)))
    t = sample_timesteps(1000, T=10, low=3, high=5)
    assert set(t.tolist()) == {3, 4}


Z = torch.zeros(2, 4, 3, 3)
F_OK = oracle_model(Z.double(), "sample", ALPHAS)


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: denoise(F_OK, Z[0], None), ValueError, "`image_latent` must have rank 4"),
    (lambda: denoise(F_OK, Z.long(), None), TypeError, "`image_latent` must be a floating-point"),
    (lambda: denoise(F_OK, Z*float("nan"), None), ValueError, "`image_latent` contains NaN"),
    (lambda: denoise(F_OK, [Z], None), TypeError, "`image_latent` must be a torch.Tensor"),
    (lambda: denoise(F_OK, Z, torch.zeros(3, 5)), ValueError, "`cond` must have batch size 2"),
    (lambda: denoise(F_OK, Z, torch.tensor(1.0)), ValueError, "`cond` must have batch size 2"),
    (lambda: denoise(F_OK, Z, "a cat"), TypeError, "`cond` must be a torch.Tensor"),
    (lambda: denoise(F_OK, Z, None, 0), ValueError, "`num_inference_steps` must be >= 1"),
    (lambda: denoise(F_OK, Z, None, 1001), ValueError, "`num_inference_steps` must be <= 1000"),
    (lambda: denoise(F_OK, Z, None, 2.0), TypeError, "`num_inference_steps` must be an integer"),
    (lambda: denoise(F_OK, Z, None, 1, "leading2"), ValueError, "`timestep_spacing` must be one of"),
    (lambda: denoise(F_OK, Z, None, ensemble_size=0), ValueError, "`ensemble_size` must be >= 1"),
    (lambda: denoise(F_OK, Z, None, prediction_type="eps"), ValueError, "`prediction_type` must be one of"),
    (lambda: denoise(F_OK, Z, None, eta=-0.1), ValueError, "`eta` must be in"),
    (lambda: denoise(F_OK, Z, None, generator=123), TypeError, "`generator` must be a torch.Generator"),
    (lambda: denoise(lambda x, t, c: x[..., :1], Z, None), ValueError, "`model_fn` must return a tensor of shape"),
    (lambda: denoise(lambda x, t, c: None, Z, None), ValueError, "`model_fn` must return a tensor"),
    (lambda: make_sampler("late"), ValueError, "`timestep_spacing` must be one of"),
    (lambda: make_sampler(prediction_type="x0"), ValueError, "`prediction_type` must be one of"),
    (lambda: make_train_scheduler("x0"), ValueError, "`prediction_type` must be one of"),
    (lambda: ddim_timesteps(0, "trailing"), ValueError, "`num_inference_steps` must be >= 1"),
    (lambda: ddim_timesteps(1, "none"), ValueError, "`timestep_spacing` must be one of"),
    (lambda: sample_timesteps(0), ValueError, "`batch_size` must be >= 1"),
    (lambda: sample_timesteps(2, low=-1), ValueError, "`low` must be >= 0"),
    (lambda: sample_timesteps(2, high=2000), ValueError, "`high` must be <= 1000"),
    (lambda: ensemble_latents(torch.ones(3)), ValueError, "`latents` must be (E, B, ...)"),
    (lambda: ensemble_latents(torch.ones(2, 3, dtype=torch.long)), TypeError, "`latents` must be a floating-point"),
    (lambda: add_noise(make_train_scheduler(), Z, Z, torch.tensor([0, 1000])), ValueError, "`timesteps` must lie in"),
    (lambda: add_noise(make_train_scheduler(), Z, Z, torch.tensor([[0, 1]])), ValueError, "`timesteps` must have rank 1"),
    (lambda: add_noise(make_train_scheduler(), Z, Z[:1], torch.tensor([0, 1])), ValueError, "`noise` must have the shape"),
    (lambda: training_target(make_train_scheduler(), Z, Z, torch.tensor([-1, 1])), ValueError, "`timesteps` must lie in"),
    (lambda: training_target(make_train_scheduler(), Z.long(), Z, torch.tensor([0, 1])), TypeError, "`clean` must be a floating"),
])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc, match=msg.replace("(", "\\(").replace(")", "\\)").replace(".", "\\.").replace("*", "\\*")):
        call()
