import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from dinosavi.models.background import background_mask, bgfg_slot_masks
from dinosavi.models.decoders import AlphaDecoder
from dinosavi.models.factory import build_model
from dinosavi.models.options import ModelConfig
from dinosavi.models.pos_embed import PositionalEncoding
from dinosavi.models.predictor import SaviPredictor
from dinosavi.models.regions import kmeans_regions
from dinosavi.models.slot_model import SlotModel

D = 24


def _cfg(**kw):
    base = dict(slot_dim=16, hidden_dim=32, decoder_depth=2, decoder_hidden_dim=32, num_slots=4, num_iters=2,
                pe_size=[6, 7])
    return ModelConfig(**{**base, **kw})


def _hand_alpha(model: SlotModel, feats: torch.Tensor, init: torch.Tensor, masks=()) -> torch.Tensor:
    """A temporal model's present-frame alpha ``(B, T, S, h, w)``, written out: frame 0 binds ``init`` with
    ``ini_iters`` slot-attention iterations, each later frame the predictor's carried slots with ``num_iters``;
    ``masks[t]`` (if given) restricts frame ``t``'s attention."""
    assert model.predictor is not None
    h, w = feats.shape[-2:]
    slots, alphas = init, []
    for t in range(feats.shape[1]):
        if t:
            slots = model.predictor(slots)
        mask = masks[t] if t < len(masks) else None
        iters = model.num_iters if t else model.ini_iters
        slots = model.frame.slot_attention(model.frame.embed(feats[:, t]), slots, iters, mask).slots
        alphas.append(model.frame.decode(model.time_decoders[model.present](slots), (h, w)).alpha)
    return torch.stack(alphas, 1)


@pytest.mark.parametrize("predictor", ["savi", "none"])
@pytest.mark.parametrize("time_decoder", ["linear", "attn", "identity"])
@pytest.mark.parametrize("decoder", ["alpha", "mlp", "transformer"])
def test_clip_loss_shapes(predictor, time_decoder, decoder):
    model = build_model(_cfg(predictor=predictor, time_steps=[0, 1], time_decoder=time_decoder, decoder=decoder), D)
    out = model.clip_loss(torch.randn(2, 4, D, 6, 7))
    assert out.alpha.shape == (2, 3, 4, 6, 7)
    assert set(out.logs) == {"loss/t+0", "loss/t+1"}
    torch.testing.assert_close(out.loss, torch.stack(list(out.logs.values())).mean())
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name


def test_a_clip_and_a_stream_are_one_forward():
    """The clip (training) and the stream (inference) give the same slots, attention, masks and present
    prediction, for a per-frame model (fresh draws every frame) and a model that carries slots."""
    feats = torch.randn(1, 3, D, 6, 7)
    for predictor in ("none", "savi"):
        model = build_model(_cfg(predictor=predictor, time_steps=[0, 1], time_decoder="linear"), D).eval()
        clip = model(feats, generator=torch.Generator().manual_seed(0))
        frames = model(iter(feats.unbind(1)), generator=torch.Generator().manual_seed(0))
        for t, frame in enumerate(frames):
            torch.testing.assert_close(frame.slots, clip.slots[:, t])
            torch.testing.assert_close(frame.attention, clip.attention[:, t])
            torch.testing.assert_close(frame.masks, clip.masks[:, t])
            torch.testing.assert_close(frame.prediction, clip.prediction[0, :, t])  # the present step
        assert clip.slots.shape == (1, 3, 4, 16) and clip.masks.shape == (1, 3, 4, 6, 7)
        assert clip.prediction.shape == (2, 1, 3, D, 6, 7)
        assert not torch.allclose(clip.prediction[1], clip.prediction[0])  # t+1 has its own time decoder
        skipped = model(feats, generator=torch.Generator().manual_seed(0), decode=False)
        assert skipped.masks is None and skipped.prediction is None
        torch.testing.assert_close(skipped.attention, clip.attention)


def test_the_loss_is_a_function_of_the_forward():
    """clip_loss = the MSE of forward's present prediction to the layer-normalised features (one time step)."""
    model = build_model(_cfg(predictor="none", num_iters=3), D)
    feats = torch.randn(2, 3, D, 6, 7)
    torch.manual_seed(1)
    clip = model.clip_loss(feats)
    torch.manual_seed(1)
    out = model(feats)
    torch.testing.assert_close(clip.alpha, out.masks)
    target = torch.nn.functional.layer_norm(feats.movedim(2, -1), (D,)).movedim(-1, 2)
    torch.testing.assert_close(clip.loss, torch.nn.functional.mse_loss(out.prediction[0], target))


def test_time_step_targets():
    """The t+1 prediction of frame t is scored against frame t+1's features: of a 3-frame clip, frames 0 and 1
    are bound and frame 2 is only the target of frame 1's t+1 prediction."""
    model = build_model(_cfg(predictor="savi", time_steps=[0, 1], time_decoder="linear"), D)
    feats = torch.randn(1, 3, D, 6, 7)
    torch.manual_seed(0)
    out = model.clip_loss(feats)
    changed = feats.clone()
    changed[:, 2] = torch.randn(D, 6, 7)
    torch.manual_seed(0)
    other = model.clip_loss(changed)
    torch.testing.assert_close(other.logs["loss/t+0"], out.logs["loss/t+0"])
    torch.testing.assert_close(other.alpha, out.alpha)  # frame 2 is bound nowhere
    assert not torch.allclose(other.logs["loss/t+1"], out.logs["loss/t+1"])


def test_savi_carries_slots_and_ini_iters():
    """Frame 0 binds the drawn slots with ini_iters iterations, each later frame the predictor's slots with
    num_iters: the masks are those of the steps written out."""
    model = build_model(_cfg(predictor="savi", ini_iters=5, num_iters=1), D)
    assert model.ini_iters == 5 and model.num_iters == 1
    feats = torch.randn(2, 4, D, 6, 7)
    torch.manual_seed(0)
    alpha = model.clip_loss(feats).alpha
    torch.manual_seed(0)
    init = model.frame.init_slots(2)
    with torch.no_grad():
        torch.testing.assert_close(alpha, _hand_alpha(model, feats, init))
        model.ini_iters = 1  # the iterations matter: 1 at the first frame gives other masks
        assert not torch.allclose(alpha, _hand_alpha(model, feats, init))
    assert model.carries_slots and build_model(_cfg(predictor="identity"), D).carries_slots
    assert not build_model(_cfg(), D).carries_slots


def test_scan_of_a_per_frame_model_draws_fresh_slots_every_frame():
    """Frame by frame (evaluation) equals the whole clip as one batched frame (training), draw for draw, and
    each frame is a fresh draw bound with ini_iters iterations, never num_iters."""
    model = build_model(_cfg(predictor="none", ini_iters=3, num_iters=1), D).eval()
    feats = torch.randn(1, 4, D, 6, 7)
    tokens = model.frame.embed(feats[0])  # (T, N, C)
    g = torch.Generator().manual_seed(0)
    looped = [out.slots for out in model.scan(tokens.unsqueeze(1), model.frame.init_slots(1, generator=g), generator=g)]
    g = torch.Generator().manual_seed(0)
    by_hand = [model.frame.slot_attention(tokens[t : t + 1], model.frame.init_slots(1, generator=g), 3).slots
               for t in range(4)]
    torch.testing.assert_close(torch.cat(looped), torch.cat(by_hand))
    batched = next(model.scan([tokens], model.frame.init_slots(4, generator=torch.Generator().manual_seed(0))))
    torch.testing.assert_close(torch.cat(looped), batched.slots)


def test_scan_of_a_temporal_model_carries_slots():
    model = build_model(_cfg(predictor="identity", ini_iters=2, num_iters=1), D).eval()
    tokens = model.frame.embed(torch.randn(3, D, 6, 7)).unsqueeze(1)  # T x (1, N, C)
    init = model.frame.init_slots(1)
    outs = list(model.scan(tokens, init))
    expected = model.frame.slot_attention(tokens[1], outs[0].slots, 1).slots  # identity predictor: carried as is
    torch.testing.assert_close(outs[1].slots, expected)


def test_clip_too_short_names_frames_per_clip():
    model = build_model(_cfg(time_steps=[0, 2]), D)
    with pytest.raises(ValueError, match="frames_per_clip must be at least 3"):
        model.clip_loss(torch.randn(1, 2, D, 6, 7))


def test_sharded_batch_matches_global_batch():
    model = build_model(_cfg(predictor="savi", time_steps=[0, 1], time_decoder="linear"), D)
    feats = torch.randn(4, 3, D, 6, 7)
    torch.manual_seed(3)
    full = model.clip_loss(feats)
    halves = []
    for rank in (0, 1):
        torch.manual_seed(3)
        halves.append(model.clip_loss(feats[2 * rank : 2 * rank + 2], shard=(rank, 2)))
    torch.testing.assert_close(torch.cat([h.alpha for h in halves]), full.alpha)
    torch.testing.assert_close((halves[0].loss + halves[1].loss) / 2, full.loss)


@pytest.mark.parametrize("strategy", ["initial", "always"])
def test_bgfg_model_restricts_slot_attention(strategy):
    """Background slots bind the CLS-attention background, the others the rest: at the first frame (initial)
    or at every frame (always), as the masks of bgfg_slot_masks written out."""
    model = build_model(_cfg(num_slots=[2, 3], bgfg=True, bgfg_strategy=strategy, predictor="savi"), D)
    feats, attn = torch.randn(2, 3, D, 6, 7), torch.rand(2, 3, 4, 6, 7)
    torch.manual_seed(0)
    alpha = model.clip_loss(feats, attn).alpha
    background = background_mask(attn.flatten(0, 1)).unflatten(0, (2, 3))  # (B, T, h, w)
    masks = bgfg_slot_masks(background, 2, 3, strategy).unbind(1)
    torch.manual_seed(0)
    init = model.frame.init_slots(2)
    with torch.no_grad():
        torch.testing.assert_close(alpha, _hand_alpha(model, feats, init, masks))
        assert not torch.allclose(alpha, _hand_alpha(model, feats, init))  # the masks matter
    later = attn.clone()
    later[:, 1:] = torch.rand(2, 2, 4, 6, 7)  # another background after the first frame
    torch.manual_seed(0)
    moved = model.clip_loss(feats, later).alpha
    assert torch.equal(moved, alpha) if strategy == "initial" else not torch.allclose(moved, alpha)
    with pytest.raises(ValueError, match="CLS attention"):
        model.clip_loss(torch.randn(2, 3, D, 6, 7))


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match=r"Unknown model\.decoder `conv`"):
        build_model(_cfg(decoder="conv"), D)
    with pytest.raises(ValueError, match=r"Unknown model\.predictor `lstm`"):
        build_model(_cfg(predictor="lstm"), D)
    with pytest.raises(ValueError, match=r"needs bgfg"):
        build_model(_cfg(num_slots=[2, 3]), D)


def test_a_stream_decodes_the_present_time_step():
    model = build_model(_cfg(time_steps=[1, 0], time_decoder="linear"), D).eval()  # the present is step 0
    assert model.present == 1
    frame = next(model(iter([torch.randn(1, D, 6, 7)]), generator=torch.Generator().manual_seed(0)))
    direct = model.frame.decoder(model.time_decoders[1](frame.slots), (6, 7))
    torch.testing.assert_close(frame.masks, direct.alpha)
    torch.testing.assert_close(frame.prediction, direct.reconstruction)
    assert isinstance(model, SlotModel) and isinstance(model.frame.decoder, AlphaDecoder)
    assert isinstance(model.frame.decoder.pos_embed, PositionalEncoding)


def test_original_architecture_options():
    """input_mlp=false: raw features into slot attention; loss_norm=prediction: LayerNorm on the prediction,
    the raw features as the target."""
    D = 12
    dec = AlphaDecoder(16, D, 2, 1, 32, PositionalEncoding("linear"))
    model = SlotModel(D, 16, 32, 3, 1, dec, predictor=SaviPredictor(16), time_steps=(0, 1),
                      input_mlp=False, loss_norm="prediction", style="original")
    assert model.frame.input_mlp is None and model.frame.slot_attention.norm_inputs.weight.shape == (D,)
    assert "prediction_norm.weight" in model.state_dict()
    features = torch.randn(2, 3, D, 4, 5)
    assert torch.equal(model.frame.embed(features[:, 0]), rearrange(features[:, 0], "b d h w -> b (h w) d"))
    bias = torch.randn(D)
    assert model.prediction_norm is not None
    with torch.no_grad():  # the prediction's LayerNorm now gives `bias` whatever the decoder predicts
        model.prediction_norm.weight.zero_()
        model.prediction_norm.bias.copy_(bias)
    prediction = bias[None, None, :, None, None].expand(2, 2, D, 4, 5)  # (B, T', D, h, w)
    expected = (F.mse_loss(prediction, features[:, 0:2]) + F.mse_loss(prediction, features[:, 1:3])) / 2
    torch.testing.assert_close(model.clip_loss(features).loss, expected)
    with pytest.raises(ValueError, match=r"Unknown model\.loss_norm `both`"):
        SlotModel(D, 16, 32, 3, 1, dec, loss_norm="both")
    with pytest.raises(ValueError, match=r"Unknown model\.style `faithful`"):
        SlotModel(D, 16, 32, 3, 1, dec, style="faithful")


def test_conditioned_training_shards_match_the_global_batch():
    model = build_model(_cfg(predictor="savi", condition="kmeans", condition_share=0.5, track_weight=1.0,
                             contrast_weight=0.5), D).train()
    feats = torch.randn(4, 3, D, 6, 7)
    torch.manual_seed(3)
    full = model.clip_loss(feats)
    assert {"loss/track", "loss/contrast"} <= set(full.logs)
    halves = []
    for rank in (0, 1):
        torch.manual_seed(3)
        halves.append(model.clip_loss(feats[2 * rank : 2 * rank + 2], shard=(rank, 2)))
    torch.testing.assert_close(torch.cat([h.alpha for h in halves]), full.alpha)


def test_conditioned_clips_start_from_their_regions():
    """Share 0.5 conditions clips 1 and 3 of the batch (an even spread): they start from the conditioner's
    slots of their k-means regions, each slot restricted to its region at frame 0 and free after; the other
    clips start from random slots. Evaluation's loss starts every clip from random slots."""
    model = build_model(_cfg(predictor="savi", condition="kmeans", condition_share=0.5), D).train()
    feats = torch.randn(4, 2, D, 6, 7)
    torch.manual_seed(0)
    alpha = model.clip_loss(feats).alpha
    torch.manual_seed(0)
    init, noise = model.frame.init_slots(4), torch.randn(4, 4, 16)
    chosen = [1, 3]
    with torch.no_grad():
        tokens = model.frame.embed(feats[:, 0])
        regions = kmeans_regions(rearrange(feats[chosen, 0], "b d h w -> b (h w) d"), 4)  # (2, S, N)
        assert torch.equal(regions.sum(1), torch.ones(2, 42, dtype=torch.long))  # a partition of the patches
        start = init.clone()
        assert model.conditioner is not None
        start[chosen] = model.conditioner(tokens[chosen], regions, noise=noise[chosen])
        mask = torch.ones(4, 4, 42, dtype=torch.bool)
        mask[chosen] = regions
        torch.testing.assert_close(alpha, _hand_alpha(model, feats, start, [mask]))
        torch.testing.assert_close(alpha[[0, 2]], _hand_alpha(model, feats[[0, 2]], init[[0, 2]]))
        assert not torch.allclose(alpha[chosen], _hand_alpha(model, feats[chosen], init[chosen]))
    model.eval()
    torch.manual_seed(0)
    alpha = model.clip_loss(feats).alpha
    torch.manual_seed(0)
    with torch.no_grad():
        torch.testing.assert_close(alpha, _hand_alpha(model, feats, model.frame.init_slots(4)))


def test_anchor_one_starts_every_frame_from_the_first_slots():
    model = build_model(_cfg(predictor="savi", anchor=1.0), D).eval()
    assert model.predictor is not None
    tokens = [model.frame.embed(torch.randn(1, D, 6, 7)) for _ in range(3)]
    init = model.frame.init_slots(1)
    with torch.no_grad():
        outs = list(model.scan(tokens, init))
        first = model.frame.slot_attention(tokens[0], init, model.ini_iters).slots
        torch.testing.assert_close(outs[0].slots, first)
        for t in (1, 2):  # bound from the first frame's slots, not the predictor's
            expected = model.frame.slot_attention(tokens[t], first, model.num_iters).slots
            torch.testing.assert_close(outs[t].slots, expected)
        outs = list(model.scan(tokens, init, anchor=0.0))  # the call overrides the model's
        expected = model.frame.slot_attention(tokens[2], model.predictor(outs[1].slots), model.num_iters).slots
        torch.testing.assert_close(outs[2].slots, expected)


def test_neighbourhood_is_what_a_slot_won_dilated():
    from dinosavi.models.slot_model import neighbourhood

    attention = torch.zeros(1, 3, 5, 5)
    attention[0, 0] = 1.0  # slot 0 wins every patch but the centre
    attention[0, 1, 2, 2] = 2.0  # slot 1 wins the centre
    near = neighbourhood(attention.flatten(2).softmax(1), (5, 5), 1).reshape(1, 3, 5, 5)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[1:4, 1:4] = True
    assert torch.equal(near[0, 1], expected)
    assert near[0, 0].all()  # the background's dilation covers everything
    assert near[0, 2].all()  # slot 2 won nothing: unrestricted


def test_conditioning_errors_name_the_key():
    with pytest.raises(ValueError, match=r"model\.condition"):
        build_model(_cfg(condition="boxes"), D)
    with pytest.raises(ValueError, match="needs a predictor"):
        build_model(_cfg(condition="kmeans", predictor="none"), D)
    with pytest.raises(ValueError, match=r"model\.track_weight"):
        build_model(_cfg(predictor="savi", track_weight=1.0), D)
    with pytest.raises(ValueError, match=r"model\.anchor"):
        build_model(_cfg(predictor="savi", anchor=2.0), D)


def test_clip_loss_decreases_with_training():
    torch.manual_seed(0)
    model = SlotModel(24, 16, 32, 5, 2, AlphaDecoder(16, 24, 2, 1, 32, PositionalEncoding("linear")))
    # three "objects": constant feature vectors on fixed regions
    regions = torch.zeros(6, 7, dtype=torch.long)
    regions[:3, :4], regions[3:, 4:] = 1, 2
    feats = torch.randn(3, 24)[regions].permute(2, 0, 1).expand(2, 2, 24, 6, 7).contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model.clip_loss(feats)
        first = first if first is not None else out.loss.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.alpha.shape == (2, 2, 5, 6, 7)
    assert out.loss.item() < 0.5 * first
