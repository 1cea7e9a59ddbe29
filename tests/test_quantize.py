"""The vector quantizer: lookup, straight-through gradients, EMA, k-means init, dead-code restart."""

import torch

from helpers.models.quantize import VectorQuantizer


def _flat_to_map(v: torch.Tensor, h: int = 1) -> torch.Tensor:
    """(N, D) vectors -> (N // h**2, D, h, h) maps, the layout the quantizer takes."""
    n, d = v.shape
    return v.view(n // (h * h), h, h, d).permute(0, 3, 1, 2).contiguous()


def test_vq_codes_to_vectors_to_codes_round_trip_is_exact():
    torch.manual_seed(0)
    vq = VectorQuantizer(64, 8, kmeans_init=False)
    codes = torch.randint(0, 64, (5, 8, 8))
    vectors = vq.embed(codes)
    assert vectors.shape == (5, 8, 8, 8)
    assert torch.equal(vq.quantize(vectors), codes)
    vq.eval()
    out = vq(vectors)
    assert torch.equal(out.codes, codes)
    assert torch.allclose(out.quantized, vectors)
    assert out.loss.item() < 1e-10


def test_vq_straight_through_gradient_and_commitment_loss():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, beta=0.25, kmeans_init=False).eval()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    e = vq.embed(out.codes)
    assert torch.allclose(out.loss, 0.25 * ((z - e) ** 2).mean())
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))      # identity gradient through the lookup
    z.grad = None
    vq(z).loss.backward()                                     # commitment pulls z towards its code
    assert torch.allclose(z.grad, 0.25 * 2 * (z - e).detach() / z.numel())


def test_vq_ema_moves_codes_toward_their_inputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(2, 2, kmeans_init=False, restart_window=0).train()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vq.embed_sum.copy_(vq.codebook * vq.cluster_size.unsqueeze(1))
    targets = torch.tensor([[1.0, -1.0], [8.0, 12.0]])
    data = torch.cat([targets[0] + 0.01 * torch.randn(32, 2), targets[1] + 0.01 * torch.randn(32, 2)])
    before = (vq.codebook - targets).norm(dim=1)
    vq(_flat_to_map(data))
    after_one = (vq.codebook - targets).norm(dim=1)
    assert (after_one < before).all()
    for _ in range(300):
        vq(_flat_to_map(data))
    assert torch.allclose(vq.codebook, targets, atol=0.05)


def test_vq_eval_mode_never_updates_codebook():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, kmeans_init=True).eval()
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(4, 4, 5, 5))
    vq.quantize(torch.randn(4, 4, 5, 5))
    for k, v in vq.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_vq_kmeans_init_uses_data_once():
    torch.manual_seed(0)
    centers = torch.tensor([[10.0, 0, 0], [-10.0, 0, 0], [0, 10.0, 0], [0, 0, -10.0]])
    data = centers.repeat_interleave(64, 0) + 0.1 * torch.randn(256, 3)
    vq = VectorQuantizer(4, 3, kmeans_init=True, restart_window=0).train()
    assert not bool(vq.initialized)
    out = vq(_flat_to_map(data[torch.randperm(256)], h=4))
    assert bool(vq.initialized)
    # each cluster centre has a code next to it (the random start had none)
    d = torch.cdist(centers, vq.codebook)
    assert (d.min(dim=1).values < 0.5).all()
    assert out.used == 4
    # a later batch (or a loaded checkpoint) never re-initialises: codes only drift by EMA
    fresh = VectorQuantizer(4, 3, kmeans_init=True, restart_window=0)
    fresh.load_state_dict(vq.state_dict())
    fresh.train()(_flat_to_map(torch.full((16, 3), 50.0), h=2))
    assert (torch.cdist(centers, fresh.codebook).min(dim=1).values < 1.5).all()


def test_vq_restart_revives_dead_codes():
    def run(restart_window):
        torch.manual_seed(0)
        vq = VectorQuantizer(16, 4, kmeans_init=False, restart_window=restart_window).train()
        # codes 8..15 sit far away from every input: they never win a vector
        vq.codebook.copy_(torch.cat([torch.randn(8, 4), torch.randn(8, 4) + 100.0]))
        vq.embed_sum.copy_(vq.codebook.clone())
        for _ in range(30):
            vq(torch.randn(8, 4, 4, 4))
        # after the window, which codes does fresh data use?
        return vq, vq.quantize(torch.randn(64, 4, 4, 4)).unique().numel()

    dead, used_without = run(restart_window=0)
    assert used_without <= 8 and int(dead.restarts) == 0           # without restart they stay dead
    revived, used_with = run(restart_window=5)
    assert int(revived.restarts) >= 8
    assert used_with > 12
    assert revived.codebook.abs().max() < 10                         # re-seeded where the data are


def test_vq_perplexity_and_used_count():
    vq = VectorQuantizer(8, 2, kmeans_init=False).eval()
    one = vq.embed(torch.full((2, 4, 4), 3))
    out = vq(one)
    assert out.used == 1 and abs(out.perplexity.item() - 1.0) < 1e-5
    all8 = vq.embed(torch.arange(8).view(2, 2, 2))
    out = vq(all8)
    assert out.used == 8 and abs(out.perplexity.item() - 8.0) < 1e-3


def test_vq_works_under_bf16_autocast():
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 8, kmeans_init=True).train()
    conv = torch.nn.Conv2d(3, 8, 1)
    x = torch.randn(4, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = conv(x)
        assert z.dtype == torch.bfloat16
        out = vq(z)
    assert out.quantized.dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert vq.codebook.dtype == torch.float32 and vq.cluster_size.dtype == torch.float32
    # the codes are the fp32 nearest codes of the bf16 encoder output
    assert torch.equal(out.codes, vq.quantize(z.detach()))
    out.loss.backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_vq_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = VectorQuantizer(16, 4, restart_window=3).train()
    for _ in range(5):
        a(torch.randn(4, 4, 4, 4))
    b = VectorQuantizer(16, 4, restart_window=3)
    b.load_state_dict(a.state_dict())
    b.train()
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    z = torch.randn(4, 4, 4, 4)
    torch.manual_seed(1)
    oa = a(z)
    torch.manual_seed(1)
    ob = b(z)
    assert torch.equal(oa.codes, ob.codes) and torch.equal(a.codebook, b.codebook)
