import pytest
import torch

from dinosavi.models.slot_attention import WEIGHTED_MEANS, SlotAttention, SlotInit


@pytest.mark.parametrize(("B", "S", "N", "D_in", "D"), [(1, 1, 1, 8, 16), (2, 7, 30, 12, 16), (3, 4, 5, 16, 32)])
def test_shapes(B, S, N, D_in, D):
    sa = SlotAttention(D_in, D, 2 * D)
    slots = SlotInit(D)(B, S)
    out = sa(torch.randn(B, N, D_in), slots, num_iters=2)
    assert out.slots.shape == (B, S, D)
    assert out.attention.shape == (B, S, N)
    # softmax over slots: every token's attention sums to one
    torch.testing.assert_close(out.attention.sum(1), torch.ones(B, N))


def test_mask_restricts_attention():
    B, S, N = 2, 3, 10
    sa = SlotAttention(8, 16, 32)
    mask = torch.zeros(B, S, N, dtype=torch.bool)
    mask[:, 0, :4] = True
    mask[:, 1, 4:] = True
    mask[:, 2, 4:8] = True
    out = sa(torch.randn(B, N, 8), SlotInit(16)(B, S), num_iters=3, mask=mask)
    assert (out.attention[~mask] == 0).all()
    torch.testing.assert_close(out.attention[:, 0, :4], torch.ones(B, 4))  # only slot 0 may take tokens 0..3


def test_fully_masked_token_gets_no_attention():
    mask = torch.ones(1, 2, 4, dtype=torch.bool)
    mask[:, :, 3] = False
    out = SlotAttention(8, 16, 32)(torch.randn(1, 4, 8), SlotInit(16)(1, 2), num_iters=1, mask=mask)
    assert torch.isfinite(out.slots).all()
    assert (out.attention[..., 3] == 0).all()


def test_bad_mask_shape_names_expected_shape():
    sa = SlotAttention(8, 16, 32)
    with pytest.raises(ValueError, match=r"\(B, S, N\)"):
        sa(torch.randn(1, 4, 8), SlotInit(16)(1, 2), num_iters=1, mask=torch.ones(1, 3, 4, dtype=torch.bool))


def test_carried_slots_and_any_slot_count():
    sa = SlotAttention(8, 16, 32)
    x = torch.randn(2, 9, 8)
    first = sa(x, SlotInit(16)(2, 5), num_iters=3)
    second = sa(x, first.slots, num_iters=1)
    assert second.slots.shape == (2, 5, 16)
    assert sa(x, SlotInit(16)(2, 11), num_iters=1).slots.shape == (2, 11, 16)


def test_slot_init_generator_is_deterministic():
    init = SlotInit(16)
    a = init(2, 4, torch.Generator().manual_seed(3))
    b = init(2, 4, torch.Generator().manual_seed(3))
    c = init(2, 4, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_slot_groups():
    init = SlotInit(16, num_groups=2)
    assert init(3, [2, 5]).shape == (3, 7, 16)
    with pytest.raises(ValueError, match="one count per slot group"):
        init(3, 4)
    with pytest.raises(ValueError, match="one integer"):
        SlotInit(16)(3, [2, 5])


def test_gradients_reach_every_parameter():
    sa = SlotAttention(8, 16, 32)
    init = SlotInit(16)
    out = sa(torch.randn(2, 9, 8), init(2, 3), num_iters=2)
    out.slots.sum().backward()
    for name, p in [*sa.named_parameters(), *init.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_per_group_draws_and_noise_formula():
    init = SlotInit(16, num_groups=2, per_group=True)
    g = torch.Generator().manual_seed(0)
    slots = init(2, [2, 3], g)
    g = torch.Generator().manual_seed(0)
    noise = torch.cat([torch.randn(2, 2, 16, generator=g), torch.randn(2, 3, 16, generator=g)], dim=1)
    torch.testing.assert_close(slots, init.from_noise(noise, [2, 3]))
    expected_bg = init.mu + init.group_mu[0] + (init.log_sigma + init.group_log_sigma[0]).exp() * noise[:, :2]
    torch.testing.assert_close(slots[:, :2], expected_bg)
    with pytest.raises(ValueError, match=r"noise must be \(B, 5, 16\)"):
        init.from_noise(torch.zeros(1, 4, 16), [2, 3])


def test_original_weighted_mean_gives_a_slot_without_attention_no_update():
    """A slot that may attend nowhere takes nothing from the inputs with the original's weighted mean: other
    inputs leave it as it was; the paper's smoothed mean still gives it their average."""
    mask = torch.ones(1, 3, 6, dtype=torch.bool)
    mask[0, 2] = False  # slot 2 may attend nowhere
    slots, x, other = SlotInit(16)(1, 3), torch.randn(1, 6, 8), torch.randn(1, 6, 8)
    for weighted_mean in WEIGHTED_MEANS:
        sa = SlotAttention(8, 16, 32, weighted_mean=weighted_mean)
        first, second = sa(x, slots, 1, mask).slots, sa(other, slots, 1, mask).slots
        assert not torch.allclose(first[:, :2], second[:, :2])
        assert torch.equal(first[:, 2], second[:, 2]) == (weighted_mean == "original"), weighted_mean
    with pytest.raises(ValueError, match="Unknown slot-attention weighted mean `mean`"):
        SlotAttention(8, 16, 32, weighted_mean="mean")
