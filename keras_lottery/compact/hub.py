"""Slicing rules for keras-hub's transformer blocks (registered when a model uses them).

keras-hub builds its backbones as functional graphs of whole blocks, each a
subclassed layer: compaction reads the block's inner weights through these
rules.  The residual stream of every block is normalized inside it, so it
keeps its width; what goes is inside:

* ``TransformerEncoder`` (BERT) and ``TransformerDecoder`` (GPT-2): the
  feed-forward units.  Their heads stay: the block derives a head's size from
  ``hidden_dim // num_heads``, so fewer heads would be larger ones.
* ``GemmaDecoderBlock``: the gated feed-forward units and a key/value head
  with the query heads that share it (the head size is a setting of its own).
"""

from __future__ import annotations

import numpy as np

from keras_lottery.compact.rules import (
    CARRY,
    CONSUME,
    PRODUCE,
    LayerRule,
    LayerSpec,
    Slice,
    register_rule,
)


def _stream_frozen(call, why: str) -> list:
    return [(t, f"{call.name} {why}") for t in [*call.inputs, *call.outputs]]


def _dense_slices(intermediate, output, port: str) -> list[Slice]:
    slices = [Slice(intermediate.kernel, 1, port, PRODUCE)]
    if intermediate.bias is not None:
        slices.append(Slice(intermediate.bias, 0, port, PRODUCE))
    slices.append(Slice(output.kernel, 0, port, CONSUME))
    return slices


class TransformerBlockRule(LayerRule):
    """keras-hub ``TransformerEncoder``/``TransformerDecoder``: feed-forward units."""

    def spec(self, layer, call):
        if getattr(layer, "_cross_attention_layer", None) is not None:
            return LayerSpec(frozen=_stream_frozen(call, "attends over an encoder's sequence"))
        slices = _dense_slices(
            layer._feedforward_intermediate_dense, layer._feedforward_output_dense, "ffn"
        )
        frozen = _stream_frozen(call, "normalizes its residual stream inside")
        frozen.append(("heads", f"{call.name} sizes its heads as hidden_dim // num_heads"))
        return LayerSpec(
            slices=slices,
            frozen=frozen,
            inner={"ffn": layer.intermediate_dim, "heads": layer.num_heads},
        )

    def config(self, layer, call, keep):
        return {**layer.get_config(), "intermediate_dim": keep.count("ffn")}


class GemmaBlockRule(LayerRule):
    """keras-hub ``GemmaDecoderBlock``: key/value heads with their query group; gated FFN units."""

    def spec(self, layer, call):
        attention = layer.attention
        repeats = layer.num_query_heads // layer.num_key_value_heads
        group = np.arange(layer.num_query_heads) // repeats
        slices = [
            Slice(attention.query_dense.kernel, 0, "kv_heads", CARRY, group),
            Slice(attention.key_dense.kernel, 0, "kv_heads", CARRY),
            Slice(attention.value_dense.kernel, 0, "kv_heads", CARRY),
            Slice(attention.output_dense.kernel, 0, "kv_heads", CONSUME, group),
            Slice(layer.gating_ffw.kernel, 1, "ffn", PRODUCE),
            Slice(layer.gating_ffw_2.kernel, 1, "ffn", PRODUCE),
            Slice(layer.ffw_linear.kernel, 0, "ffn", CONSUME),
        ]
        return LayerSpec(
            slices=slices,
            frozen=_stream_frozen(call, "normalizes its residual stream inside"),
            inner={"kv_heads": layer.num_key_value_heads, "ffn": layer.intermediate_dim // 2},
        )

    def config(self, layer, call, keep):
        repeats = layer.num_query_heads // layer.num_key_value_heads
        n = keep.count("kv_heads")
        return {
            **layer.get_config(),
            "num_query_heads": n * repeats,
            "num_key_value_heads": n,
            "intermediate_dim": 2 * keep.count("ffn"),
        }


def register() -> None:
    """Register the rules of the keras-hub blocks that can be imported."""
    from keras_hub.layers import TransformerDecoder, TransformerEncoder

    register_rule(TransformerEncoder, TransformerBlockRule())
    register_rule(TransformerDecoder, TransformerBlockRule())
    try:
        from keras_hub.src.models.gemma.gemma_decoder_block import GemmaDecoderBlock
    except ImportError:  # another keras-hub layout: Gemma blocks keep their widths
        return
    register_rule(GemmaDecoderBlock, GemmaBlockRule())
