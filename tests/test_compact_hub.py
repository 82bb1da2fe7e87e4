"""Compaction of keras-hub backbones built from small configs (no downloads)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from test_compact_graph import check_same_outputs, prune_units

from keras_lottery.compact import compact

keras_hub = pytest.importorskip("keras_hub")  # the hub extra

pytestmark = pytest.mark.slow

SEQ, VOCAB = 8, 40


def _inputs(n=2, segments=False):
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, VOCAB, (n, SEQ)).astype("int32"),
        "padding_mask": np.ones((n, SEQ), "int32"),
    }
    if segments:
        x["segment_ids"] = np.zeros((n, SEQ), "int32")
    return x


def test_bert_backbone_loses_feed_forward_units_and_says_why_heads_stay():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    ticket = prune_units(backbone, 0.5)
    small, report = compact(ticket)
    check_same_outputs(ticket, small, _inputs(segments=True))
    assert report.units["transformer_layer_0 ffn"] == (32, 16)
    assert report.units["transformer_layer_1 ffn"] == (32, 16)
    assert any("hidden_dim // num_heads" in k for k in report.kept)
    assert report.params_after < report.params_before


def test_gpt2_backbone_loses_feed_forward_units():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    ticket = prune_units(backbone, 0.5, "product")
    small, report = compact(ticket)
    check_same_outputs(ticket, small, _inputs())
    assert report.units["transformer_layer_1 ffn"] == (32, 16)


def test_gemma_backbone_loses_key_value_groups_and_gated_units():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=64,
        head_dim=8,
    )
    ticket = prune_units(backbone, 0.5)
    small, report = compact(ticket)
    check_same_outputs(ticket, small, _inputs())
    assert report.units["decoder_block_0 kv_heads"] == (2, 1)
    assert report.units["decoder_block_0 ffn"] == (32, 16)
    block = small.get_layer("decoder_block_0")
    assert (block.num_query_heads, block.num_key_value_heads) == (2, 1)
