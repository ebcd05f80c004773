"""Slot attention (Locatello et al., 2020) with carried-in slots, any slot count and attention masks.

Shapes: ``B`` batch, ``S`` slots, ``N`` input tokens, ``D`` channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

__all__ = ["WEIGHTED_MEANS", "SlotAttention", "SlotAttentionOutput", "SlotInit"]

WEIGHTED_MEANS = ("smoothed", "original")


@dataclass
class SlotAttentionOutput:
    """Result of binding slots to inputs.

    Attributes:
        slots: ``(B, S, D)`` updated slots.
        attention: ``(B, S, N)`` attention of the last iteration, softmax-normalised over slots.
    """

    slots: Tensor
    attention: Tensor


class SlotInit(nn.Module):
    """Learned Gaussian slot initialisation, optionally with slot groups.

    Slots are drawn from ``N(mu, exp(log_sigma)^2)``. With ``num_groups > 0`` (e.g. background and
    foreground) each group adds its own learned ``mu`` and ``log_sigma`` to the shared ones.

    Args:
        slot_dim: size of a slot.
        num_groups: number of slot groups; 0 for one shared distribution.
        per_group: as the original DINOSAVi code: each group's parameters are initialised on their own
            (Xavier bounds of a ``(1, 1, slot_dim)`` tensor) and each group's noise is its own draw, in
            group order; otherwise one draw covers all slots.
    """

    def __init__(self, slot_dim: int, num_groups: int = 0, per_group: bool = False) -> None:
        super().__init__()
        self.slot_dim = slot_dim
        self.num_groups = num_groups
        self.per_group = per_group
        self.mu = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, slot_dim)))
        self.log_sigma = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, 1, slot_dim)))
        if num_groups:
            self.group_mu = nn.Parameter(self._group_init(num_groups, slot_dim))
            self.group_log_sigma = nn.Parameter(self._group_init(num_groups, slot_dim))

    def _group_init(self, num_groups: int, slot_dim: int) -> Tensor:
        if self.per_group:
            return torch.cat([nn.init.xavier_uniform_(torch.empty(1, 1, slot_dim)) for _ in range(num_groups)])
        return nn.init.xavier_uniform_(torch.empty(num_groups, 1, slot_dim))

    def forward(
        self, batch_size: int, num_slots: int | Sequence[int], generator: torch.Generator | None = None
    ) -> Tensor:
        """Sample slots.

        Args:
            batch_size: ``B``.
            num_slots: slot count, or one count per group (groups concatenated in order).
            generator: random source; the global one when None.

        Returns:
            ``(B, S, D)`` slots.
        """
        counts = self._counts(num_slots)
        noise_device = generator.device if generator is not None else self.mu.device
        draws = counts if self.per_group else [sum(counts)]
        noise = torch.cat([torch.randn(batch_size, n, self.slot_dim, generator=generator, device=noise_device)
                           for n in draws], dim=1)
        return self.from_noise(noise, num_slots)

    def _counts(self, num_slots: int | Sequence[int]) -> list[int]:
        counts = [num_slots] if isinstance(num_slots, int) else list(num_slots)
        if self.num_groups and len(counts) != self.num_groups:
            raise ValueError(f"num_slots must give one count per slot group ({self.num_groups}), got {num_slots}")
        if not self.num_groups and len(counts) != 1:
            raise ValueError(f"num_slots must be one integer without slot groups, got {num_slots}")
        return counts

    def from_noise(self, noise: Tensor, num_slots: int | Sequence[int]) -> Tensor:
        """Slots from standard-normal ``noise: (B, S, D)``: ``mu + exp(log_sigma) * noise`` per group.

        Args:
            noise: ``(B, S, D)``, ``S`` the total of ``num_slots``.
            num_slots: slot count, or one count per group (groups concatenated in order).

        Returns:
            ``(B, S, D)`` slots.
        """
        counts = self._counts(num_slots)
        if noise.shape[1:] != (sum(counts), self.slot_dim):
            raise ValueError(f"noise must be (B, {sum(counts)}, {self.slot_dim}), got {tuple(noise.shape)}")
        mu: Tensor = self.mu
        log_sigma: Tensor = self.log_sigma
        if self.num_groups:
            mu = torch.cat([(mu + self.group_mu[g]).expand(1, n, -1) for g, n in enumerate(counts)], dim=1)
            log_sigma = torch.cat(
                [(log_sigma + self.group_log_sigma[g]).expand(1, n, -1) for g, n in enumerate(counts)], dim=1
            )
        return mu + log_sigma.exp() * noise.to(device=mu.device, dtype=mu.dtype)


class SlotAttention(nn.Module):
    """Iterative slot attention: softmax over slots, weighted mean over inputs, GRU + residual MLP update.

    Args:
        input_dim: channels of the input tokens.
        slot_dim: size of a slot.
        hidden_dim: hidden size of the residual MLP.
        epsilon: added to the attention before the weighted mean, as in the paper.
        weighted_mean: ``smoothed``: ``(a + epsilon) / sum(a + epsilon)`` (the paper); ``original``: the
            original DINOSAVi code's ``a / (sum(a) + 1e-6)``, where a slot with no attention gets no update.
    """

    def __init__(self, input_dim: int, slot_dim: int, hidden_dim: int, epsilon: float = 1e-8,
                 weighted_mean: str = "smoothed") -> None:
        super().__init__()
        if weighted_mean not in WEIGHTED_MEANS:
            raise ValueError(f"Unknown slot-attention weighted mean `{weighted_mean}`; expected one of "
                             f"{WEIGHTED_MEANS}")
        self.slot_dim = slot_dim
        self.epsilon = epsilon
        self.weighted_mean = weighted_mean
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.norm_mlp = nn.LayerNorm(slot_dim)
        self.project_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.project_k = nn.Linear(input_dim, slot_dim, bias=False)
        self.project_v = nn.Linear(input_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        self.mlp = nn.Sequential(nn.Linear(slot_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, slot_dim))

    def forward(
        self, inputs: Tensor, slots: Tensor, num_iters: int, mask: Tensor | None = None
    ) -> SlotAttentionOutput:
        """Bind ``slots`` to ``inputs``.

        Args:
            inputs: ``(B, N, D_in)`` tokens.
            slots: ``(B, S, D)`` initial slots (sampled, or carried in from a previous frame).
            num_iters: attention iterations, ``>= 1``.
            mask: ``(B, S, N)`` boolean; True where slot ``s`` may attend to token ``n``.

        Returns:
            The updated slots and the last iteration's attention.
        """
        if num_iters < 1:
            raise ValueError(f"num_iters must be >= 1, got {num_iters}")
        if mask is not None and mask.shape != (slots.shape[0], slots.shape[1], inputs.shape[1]):
            raise ValueError(
                f"mask must be (B, S, N) = {(slots.shape[0], slots.shape[1], inputs.shape[1])}, got {tuple(mask.shape)}"
            )
        inputs = self.norm_inputs(inputs)
        k, v = self.project_k(inputs), self.project_v(inputs)  # (B, N, D)
        k = k * (1.0 / math.sqrt(self.slot_dim))
        attention = inputs.new_empty(0)
        for _ in range(num_iters):
            q = self.project_q(self.norm_slots(slots))  # (B, S, D)
            logits = torch.einsum("bsd,bnd->bsn", q, k)
            if mask is not None:
                logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
            attention = logits.softmax(dim=1)  # (B, S, N): slots compete for tokens
            if mask is not None:
                attention = attention * mask  # a token no slot may take gives nothing
            if self.weighted_mean == "original":
                weights = attention / (attention.sum(dim=-1, keepdim=True) + 1e-6)
            else:
                weights = attention + self.epsilon
                weights = weights / weights.sum(dim=-1, keepdim=True)
            updates = torch.einsum("bsn,bnd->bsd", weights, v)
            slots = self.gru(rearrange(updates, "b s d -> (b s) d"), rearrange(slots, "b s d -> (b s) d"))
            slots = rearrange(slots, "(b s) d -> b s d", b=inputs.shape[0])
            slots = slots + self.mlp(self.norm_mlp(slots))
        return SlotAttentionOutput(slots=slots, attention=attention)
