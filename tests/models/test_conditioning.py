import torch
from torch import nn

from dinosavi.models.conditioning import MaskConditioner
from dinosavi.models.slot_attention import SlotAttention


def _identity_conditioner(dim: int) -> MaskConditioner:
    """A conditioner whose slot is the mask-averaged token itself (hand-set weights, no noise)."""
    conditioner = MaskConditioner(dim, dim, dim)
    with torch.no_grad():
        conditioner.norm = nn.Identity()  # type: ignore[assignment]
        conditioner.mlp[0].weight.copy_(torch.eye(dim))
        conditioner.mlp[0].bias.fill_(0.0)
        conditioner.mlp[2].weight.copy_(torch.eye(dim))
        conditioner.mlp[2].bias.fill_(0.0)
        conditioner.log_sigma.fill_(-30.0)
    return conditioner


def test_conditioned_slots_attend_to_their_masks_without_an_attention_mask():
    # two kinds of tokens, one-hot in the first two channels; a region of each kind gives a slot of that kind
    dim = 4
    tokens = torch.zeros(1, 10, dim)
    tokens[0, :6, 0] = 1.0  # patches 0-5: kind A
    tokens[0, 6:, 1] = 1.0  # patches 6-9: kind B
    regions = torch.zeros(1, 2, 10, dtype=torch.bool)
    regions[0, 0, 6:] = True  # slot 0 is given kind B's patches
    regions[0, 1, :6] = True  # slot 1 kind A's
    slots = _identity_conditioner(dim)(tokens, regions)
    torch.testing.assert_close(slots[0, 0], tokens[0, 6])
    attention = SlotAttention(dim, dim, 8)
    with torch.no_grad():  # queries and keys compare slots and tokens as they are
        attention.norm_inputs = nn.Identity()  # type: ignore[assignment]
        attention.norm_slots = nn.Identity()  # type: ignore[assignment]
        attention.project_q.weight.copy_(10 * torch.eye(dim))
        attention.project_k.weight.copy_(torch.eye(dim))
    out = attention(tokens, slots, num_iters=1)  # no mask: the initialiser alone decides
    won = out.attention[0].argmax(0)
    assert torch.equal(won, torch.tensor([1] * 6 + [0] * 4))


def test_noise_separates_slots_of_one_region_and_can_be_given():
    conditioner = MaskConditioner(3, 5, 8)
    tokens = torch.randn(2, 7, 3)
    regions = torch.ones(2, 2, 7)  # two slots, one region
    slots = conditioner(tokens, regions, generator=torch.Generator().manual_seed(0))
    assert slots.shape == (2, 2, 5) and not torch.allclose(slots[:, 0], slots[:, 1])
    noise = torch.zeros(2, 2, 5)
    quiet = conditioner(tokens, regions, noise=noise)
    torch.testing.assert_close(quiet[:, 0], quiet[:, 1])
    empty = conditioner(tokens, torch.zeros(2, 1, 7), noise=noise[:, :1])  # an empty region: the mean token
    full = conditioner(tokens, torch.ones(2, 1, 7), noise=noise[:, :1])
    torch.testing.assert_close(empty, full)
