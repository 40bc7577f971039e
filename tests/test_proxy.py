"DEDOS proxy queries (§3.4): Kronecker kernels, masked attention, U-Net layers, DDIM chain, global queries."
import itertools

import pytest
import torch
from torch import nn
from diffusers import DDIMScheduler

from digseg.models import build_unet
from digseg.sampler import make_train_scheduler
from digseg.proxy import (DEFAULT_TIMESTEPS, GlobalQueries, ProxyKernels, ProxyLayer, ProxyQueries, UNetFeatures,
                          attention_mask, ddim_step, denoising_schedule, kron_queries, unet_layer_channels, unet_layer_names)


@pytest.fixture(scope="module")
def unet():
    return build_unet("tiny").requires_grad_(False).eval()


def tiny_proxy(unet, **kw):
    torch.manual_seed(0)
    return ProxyQueries.for_unet(unet, **{**dict(n1=2, n2=3, c1=4, c2=4, out_dim=24, num_heads=2), **kw})


def test_kron_hand_example_and_torch_kron():
    A, B = torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([[0., 5.]])
    assert torch.equal(kron_queries(A, B), torch.tensor([[0., 5., 0., 10.], [0., 15., 0., 20.]]))
    qb, qk = torch.randn(3, 4), torch.randn(4, 2, 5)
    stacked = kron_queries(qb, qk)
    assert stacked.shape == (4, 6, 20)
    for t in range(4): torch.testing.assert_close(stacked[t], torch.kron(qb, qk[t]))
    for i, j, k, l in itertools.product(range(3), range(4), range(2), range(5)):   # (A⊗B)[i n2 + k, j c2 + l] = A_ij B_kl
        assert stacked[1, i*2 + k, j*5 + l] == qb[i, j] * qk[1, k, l]


def test_default_split_reaches_full_rank():
    torch.manual_seed(0)
    k = ProxyKernels()
    assert k().shape == (3, 100, 256)
    assert all(int(torch.linalg.matrix_rank(q)) == 100 for q in k())
    assert int(torch.linalg.matrix_rank(ProxyKernels(1, n1=100, c1=2, n2=1, c2=128)()[0])) == 2
    with pytest.raises(ValueError, match="`n2` must be >= 1"): ProxyKernels(n2=0)


def test_attention_mask_empty_row_attends_everywhere():
    logits = torch.tensor([[[5., -5., 5.], [-5., -5., -5.]]])
    assert torch.equal(attention_mask(logits), torch.tensor([[[False, True, False], [False, False, False]]]))
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)
    q, f = torch.randn(1, 2, 8), torch.randn(1, 3, 6)
    out = mha(q, f, f, attn_mask=attention_mask(logits, 2), need_weights=False)[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 1], mha(q, f, f, need_weights=False)[0][0, 1])
    ref0 = mha(q[:, :1], f[:, [0, 2]], f[:, [0, 2]], need_weights=False)[0][0, 0]   # query 0 sees only keys 0 and 2
    torch.testing.assert_close(out[0, 0], ref0, atol=1e-5, rtol=1e-5)


def test_proxy_layer_identity_update_at_init():
    torch.manual_seed(0)
    layer = ProxyLayer(16, 12, num_heads=2, mask_mode="none")
    q, feat = torch.randn(2, 5, 16), torch.randn(2, 12, 3, 4)
    out, m = layer(q, feat)
    f = layer.norm_f(feat.flatten(2).transpose(1, 2))
    torch.testing.assert_close(out, q + layer.attn(layer.norm_q(q), f, f)[0])
    assert m is None


def test_unet_layers_and_hooks(unet):
    names = unet_layer_names(unet, "all")
    with UNetFeatures(unet, names) as feats, torch.no_grad():
        unet(torch.randn(1, 4, 8, 8), 5, encoder_hidden_states=torch.randn(1, 2, 32))
    assert [feats[n].shape[1] for n in names] == unet_layer_channels(unet, names)
    assert unet_layer_names(unet) == ["mid_block"] + [f"up_blocks.{j}" for j in range(4)]
    assert not any(m._forward_hooks for m in unet.modules())


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_ddim_step_matches_diffusers(kind):
    sch = make_train_scheduler(kind)
    ddim = DDIMScheduler.from_config(sch.config, timestep_spacing="leading"); ddim.set_timesteps(20)   # stride 50
    x, pred = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    ref = ddim.step(pred, 101, x)
    mine, x0 = ddim_step(sch, x, pred, 101, 51)
    torch.testing.assert_close(mine, ref.prev_sample, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x0, ref.pred_original_sample, atol=1e-4, rtol=1e-4)
    assert denoising_schedule(DEFAULT_TIMESTEPS) == [200, 100, 50]


def test_global_queries_order():
    g = GlobalQueries(3, 1, 5)
    with torch.no_grad(): g.proj.weight.copy_(torch.eye(5)); g.proj.bias.zero_()
    q = torch.tensor([2., -1., 5.]).view(1, 3, 1, 1)
    assert torch.equal(g(q).detach(), torch.tensor([[[5., 2., 2., -1., 5.]]]))


def test_gradient_reaches_both_kernels_not_the_unet(unet):
    pq = tiny_proxy(unet)
    seen = []
    h = unet.register_forward_pre_hook(lambda m, a, kw: seen.append(int(a[1][0])), with_kwargs=True)
    out = pq(unet, torch.randn(2, 4, 8, 8), torch.randn(1, 3, 32), make_train_scheduler())
    h.remove()
    assert seen == [200, 100, 50]
    assert out.queries.shape == (2, 6, 24) and out.step_queries.shape == (2, 3, 6, 16) and out.denoised.shape == (2, 4, 8, 8)
    out.queries.sum().backward()
    assert pq.kernels.basic.grad.abs().sum() > 0
    assert (pq.kernels.diffusion.grad.flatten(1).abs().sum(1) > 0).all()
    assert all(p.grad is None for p in unet.parameters())


def test_memory_ema_and_inference_without_unet(unet):
    pq, sched, ehs = tiny_proxy(unet, memory_momentum=0.5), make_train_scheduler(), torch.randn(1, 3, 32)
    z1, z2 = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(pq(batch_size=1).step_queries[0], pq.kernels())
        a = pq(unet, z1, ehs, sched).step_queries.mean(0)
        b = pq(unet, z2, ehs, sched).step_queries.mean(0)
        torch.testing.assert_close(pq.memory, 0.5*a + 0.5*b)
        pq.eval(); before = pq.memory.clone(); pq(unet, z1, ehs, sched)
        assert torch.equal(pq.memory, before)
        torch.testing.assert_close(pq(batch_size=2).queries[1], pq.merge(pq.memory[None])[0])


def test_plain_queries_once(unet):
    pq = tiny_proxy(unet, progressive=False, timesteps=(50,))
    assert pq.schedule == [50] and not pq.kernels.progressive
    out = pq(unet, torch.randn(1, 4, 8, 8), torch.randn(1, 3, 32), make_train_scheduler())
    assert out.step_queries.shape == (1, 1, 6, 16)


def test_bad_input(unet):
    pq = tiny_proxy(unet)
    with pytest.raises(ValueError, match="`scheduler` is needed"): pq(unet, torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="distinct"): denoising_schedule([5, 5])
    with pytest.raises(ValueError, match="`mask_mode` must be one of"): ProxyLayer(8, 8, 2, mask_mode="soft")
    with pytest.raises(ValueError, match="no block"): UNetFeatures(unet, ["down_blocks.7"])
    with pytest.raises(ValueError, match="`t_prev` must be in"): ddim_step(make_train_scheduler(), torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), 10, 20)
