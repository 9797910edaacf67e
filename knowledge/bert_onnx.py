"""A BERT sentence encoder written as an ONNX graph from its weights, without torch.

The graph is the one transformers' BertModel computes in eval mode (eager attention), followed by
sentence-transformers' mean pooling and L2 normalisation: word + position + token-type
embeddings and a LayerNorm; per layer, multi-head self-attention with an additive padding
mask, a residual LayerNorm, a GELU (erf) feed-forward and another residual LayerNorm; then the
mask-weighted mean of the last hidden states, divided by its L2 norm. Every weight is float32
in the graph, whatever precision it is stored in.

Token ids, attention mask and token types in (int64, batch x tokens); `embedding` out
(float32, batch x hidden).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np

# A model folder holding this file runs as it is; others are built from their weights.
SHIPPED_GRAPH = "model.onnx"
OPSET = 17  # the first with LayerNormalization; onnxruntime has run it since 1.14
SUPPORTED_ACTIVATIONS = ("gelu",)  # transformers' "gelu" is the exact, erf-based one


class UnsupportedModel(ValueError):
    """The folder is not a plain BERT encoder that this graph reproduces."""


def bert_config(folder: Path) -> dict:
    """The parts of a BERT config.json the graph needs; raises UnsupportedModel for anything else."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise UnsupportedModel(f"no readable config.json in {folder}: {exc}") from exc
    if config.get("model_type") != "bert":
        raise UnsupportedModel(f"model_type {config.get('model_type')!r} is not 'bert'")
    if config.get("hidden_act", "gelu") not in SUPPORTED_ACTIVATIONS:
        raise UnsupportedModel(f"hidden_act {config.get('hidden_act')!r} is not supported")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("only absolute position embeddings are supported")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UnsupportedModel("hidden_size is not a multiple of num_attention_heads")
    return config


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    """The folder's safetensors weights as numpy arrays, with any `bert.` prefix dropped."""
    from safetensors.numpy import load_file

    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise UnsupportedModel(f"expected one .safetensors file in {folder}, found {len(files)}")
    weights = load_file(str(files[0]))
    return {name.removeprefix("bert."): array for name, array in weights.items()}


class _Graph:
    """ONNX nodes and initialisers being built; intermediate values are named in the order they are made."""

    def __init__(self, weights: Mapping[str, np.ndarray], half_matrices: bool, eps: float):
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper, self.float = helper, numpy_helper, TensorProto.FLOAT
        self.weights, self.half_matrices, self.eps = weights, half_matrices, eps
        self.nodes: list = []
        self.inits: list = []
        self._counter = iter(range(1_000_000))

    def tmp(self, prefix: str) -> str:
        return f"{prefix}_{next(self._counter)}"

    def const(self, name: str, value) -> str:
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, name: str, transpose: bool = False) -> str:
        try:
            array = self.weights[name]
        except KeyError as exc:
            raise UnsupportedModel(f"weight {name!r} is missing") from exc
        array = np.ascontiguousarray(array.T if transpose else array)
        if self.half_matrices and array.ndim == 2:
            self.inits.append(self.numpy_helper.from_array(array.astype(np.float16), f"{name}.f16"))
            self.nodes.append(self.helper.make_node("Cast", [f"{name}.f16"], [name], to=self.float))
        else:
            self.inits.append(self.numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def op(self, kind: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self.tmp(prefix or kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.op("LayerNormalization", [x, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")],
                       axis=-1, epsilon=self.eps)

    def linear(self, x: str, prefix: str) -> str:
        # nn.Linear keeps (out, in); the graph multiplies by the transpose, stored once.
        return self.op("Add", [self.op("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)]),
                               self.weight(f"{prefix}.bias")])


def _embeddings(g: _Graph) -> str:
    """Embeddings: word + position (0..tokens-1) + token type, then LayerNorm."""
    op = g.op
    tokens = op("Gather", [op("Shape", ["input_ids"]), g.const("one", np.array(1, np.int64))], axis=0)
    positions = op("Range", [g.const("zero", np.array(0, np.int64)), tokens, "one"])
    x = op("Add", [op("Gather", [g.weight("embeddings.word_embeddings.weight"), "input_ids"]),
                   op("Gather", [g.weight("embeddings.position_embeddings.weight"), positions])])
    x = op("Add", [x, op("Gather", [g.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"])])
    return g.layer_norm(x, "embeddings.LayerNorm")


def _padding_bias(g: _Graph) -> tuple[str, str]:
    """(the mask as floats, the attention bias): as transformers builds it, 0 where attended and the
    float32 minimum where padded."""
    op = g.op
    mask = op("Cast", ["attention_mask"], to=g.float)
    mask_4d = op("Unsqueeze", [mask, g.const("axes_1_2", np.array([1, 2], np.int64))])
    bias = op("Mul", [op("Sub", [g.const("f_one", np.array(1.0, np.float32)), mask_4d]),
                      g.const("f_min", np.array(np.finfo(np.float32).min, np.float32))])
    return mask, bias


def _encoder_layer(g: _Graph, x: str, p: str, bias: str, shapes: dict[str, str]) -> str:
    """One BERT layer: self-attention and the feed-forward block (exact GELU), each with its residual LayerNorm."""
    op, linear = g.op, g.linear

    def heads_of(name: str, perm: list[int]) -> str:
        return op("Transpose", [op("Reshape", [linear(x, f"{p}.attention.self.{name}"), shapes["split_heads"]])],
                  perm=perm)

    q = heads_of("query", [0, 2, 1, 3])  # batch, heads, tokens, head_dim
    k = heads_of("key", [0, 2, 3, 1])  # batch, heads, head_dim, tokens
    v = heads_of("value", [0, 2, 1, 3])
    scores = op("Add", [op("Mul", [op("MatMul", [q, k]), shapes["scale"]]), bias])
    context = op("MatMul", [op("Softmax", [scores], axis=-1), v])
    context = op("Reshape", [op("Transpose", [context], perm=[0, 2, 1, 3]), shapes["merge_heads"]])
    x = g.layer_norm(op("Add", [linear(context, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
    inner = linear(x, f"{p}.intermediate.dense")
    gelu = op("Mul", [op("Mul", [inner, shapes["half"]]),
                      op("Add", [op("Erf", [op("Mul", [inner, shapes["sqrt_half"]])]), "f_one"])])
    return g.layer_norm(op("Add", [linear(gelu, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")


def _pool(g: _Graph, x: str, mask: str) -> None:
    """Mean pooling over attended tokens, then L2 normalisation (both as sentence-transformers does)."""
    op = g.op
    mask_3d = op("Unsqueeze", [mask, g.const("axis_last", np.array([-1], np.int64))])
    summed = op("ReduceSum", [op("Mul", [x, mask_3d]), "one_axis"], keepdims=0)
    count = op("Max", [op("ReduceSum", [mask_3d, "one_axis"], keepdims=0),
                       g.const("min_count", np.array(1e-9, np.float32))])
    pooled = op("Div", [summed, count])
    norm = op("Max", [op("ReduceL2", [pooled], axes=[-1], keepdims=1), g.const("min_norm", np.array(1e-12, np.float32))])
    g.nodes.append(g.helper.make_node("Div", [pooled, norm], ["embedding"]))
    g.const("one_axis", np.array([1], np.int64))


def build_model(config: Mapping, weights: Mapping[str, np.ndarray], *, half_matrices: bool = False):
    """The ONNX ModelProto of the encoder with mean pooling and normalisation.

    With `half_matrices`, weight matrices are stored as float16 and cast to float32 inside the
    graph (onnxruntime folds the casts when it loads the file): half the file size, vectors
    within 1e-6 cosine of the float32 graph's. Biases and LayerNorm parameters stay float32.
    """
    from onnx import TensorProto, helper

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    g = _Graph(weights, half_matrices, float(config.get("layer_norm_eps", 1e-12)))
    x = _embeddings(g)
    mask, bias = _padding_bias(g)
    shapes = {
        "split_heads": g.const("split_heads", np.array([0, 0, heads, head_dim], np.int64)),
        "merge_heads": g.const("merge_heads", np.array([0, 0, hidden], np.int64)),
        "scale": g.const("scale", np.array(head_dim ** -0.5, np.float32)),
        "sqrt_half": g.const("sqrt_half", np.array(2 ** -0.5, np.float32)),
        "half": g.const("half", np.array(0.5, np.float32)),
    }
    for i in range(int(config["num_hidden_layers"])):
        x = _encoder_layer(g, x, f"encoder.layer.{i}", bias, shapes)
    _pool(g, x, mask)

    def ids(name: str):
        return helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])

    graph = helper.make_graph(
        g.nodes, "sentence_encoder", [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])], g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="chatbot")
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    return model


def write_onnx(folder: Path, target: Path, *, half_matrices: bool = False) -> Path:
    """Build the graph for the SentenceTransformer folder and save it at `target`."""
    import onnx

    model = build_model(bert_config(folder), load_weights(folder), half_matrices=half_matrices)
    onnx.save_model(model, str(target))
    return target


def write_sentence_model(source: Path, target: Path) -> Path:
    """Write the runnable copy of a BERT SentenceTransformer folder: graph, tokenizer, sequence length.

    This is how `knowledge/models/` is made from the model package of the training install: the
    graph with float16 matrices (half the size in the repository), the tokenizer as it is.
    """
    target.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "sentence_bert_config.json"):
        shutil.copyfile(source / name, target / name)
    return write_onnx(source, target / SHIPPED_GRAPH, half_matrices=True)
