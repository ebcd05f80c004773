"""The width of a state dict's features, read off the first LayerNorm they go through."""

from dinosavi.models.factory import build_model
from dinosavi.models.keys import feature_width
from dinosavi.models.options import ModelConfig


def test_feature_width_with_and_without_the_input_mlp():
    small = dict(slot_dim=16, hidden_dim=32, decoder_depth=2, decoder_hidden_dim=32, num_slots=3, pe_size=[4, 5])
    for input_mlp in (True, False):
        model = build_model(ModelConfig(**small, input_mlp=input_mlp), 24)
        assert feature_width(model.state_dict()) == 24
    assert feature_width({}) is None
