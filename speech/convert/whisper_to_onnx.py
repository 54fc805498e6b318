"""Converts a Whisper model in CTranslate2's format (model.bin) to two ONNX graphs for
ONNX Runtime, plus int8 variants:

- encoder.onnx: mel [1, 80, 3000] -> for every decoder layer, the cross-attention keys and
  values of the audio (cross_k_L, cross_v_L: [1, 1500, d_model]), computed once per window.
- decoder.onnx: one token at a time with a key/value cache. Inputs: token [1, 1] int64,
  position [1] int64, past_k_L / past_v_L [1, past, d_model], cross_k_L / cross_v_L.
  Outputs: logits [1, vocab], present_k_L / present_v_L [1, past + 1, d_model].

Reads the CT2 layout directly (see DESIGN.md); needs numpy, onnx and onnxruntime (for the
int8 quantization) only. Usage: whisper_to_onnx.py MODEL_DIR OUT_DIR
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20


def read_ct2(path):
    data = Path(path).read_bytes()
    pos = 0

    def u32():
        nonlocal pos
        (v,) = struct.unpack_from("<I", data, pos)
        pos += 4
        return v

    def text():
        nonlocal pos
        (n,) = struct.unpack_from("<H", data, pos)
        pos += 2
        v = data[pos : pos + n - 1].decode()
        pos += n
        return v

    version = u32()
    if version < 5:
        raise SystemExit(f"{path}: CTranslate2 model version {version} is too old")
    name, _revision, count = text(), u32(), u32()
    if name != "WhisperSpec":
        raise SystemExit(f"{path}: a {name}, not a Whisper model")
    types = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    weights, scalars = {}, {}
    for _ in range(count):
        key = text()
        rank = data[pos]
        pos += 1
        dims = [u32() for _ in range(rank)]
        dtype = data[pos]
        pos += 1
        size = u32()
        raw = data[pos : pos + size]
        pos += size
        if dtype not in types:
            raise SystemExit(f"{path}: {key} has a data type ({dtype}) this converter does not read")
        array = np.frombuffer(raw, dtype=types[dtype]).reshape(dims)
        if rank == 0:
            scalars[key] = array.item()
        else:
            weights[key] = array.astype(np.float32)
    for _ in range(u32()):
        alias, target = text(), text()
        weights[alias] = weights[target]
    return weights, scalars


class Graph:
    def __init__(self, weights):
        self.w = weights
        self.nodes, self.inits, self.names = [], {}, 0

    def const(self, key, array=None):
        if key not in self.inits:
            value = self.w[key] if array is None else array
            self.inits[key] = numpy_helper.from_array(np.ascontiguousarray(value), key.replace("/", "."))
        return self.inits[key].name

    def op(self, kind, inputs, **attrs):
        self.names += 1
        out = f"t{self.names}"
        self.nodes.append(helper.make_node(kind, inputs, [out], name=f"n{self.names}", **attrs))
        return out

    def named(self, kind, inputs, output, **attrs):
        """A node whose output is a graph output or a cache tensor (named by the caller)."""
        self.names += 1
        self.nodes.append(helper.make_node(kind, inputs, [output], name=f"n{self.names}", **attrs))

    def linear(self, x, prefix, rows=None):
        """x @ W.T + b, optionally with only rows [a, b) of the fused weight."""
        weight, bias = self.w[prefix + "/weight"], self.w.get(prefix + "/bias")
        key = prefix if rows is None else f"{prefix}[{rows[0]}:{rows[1]}]"
        if rows is not None:
            weight = weight[rows[0] : rows[1]]
            bias = None if bias is None else bias[rows[0] : rows[1]]
        y = self.op("MatMul", [x, self.const(key + "/wt", weight.T)])
        return y if bias is None else self.op("Add", [y, self.const(key + "/b", bias)])

    def norm(self, x, prefix):
        return self.op(
            "LayerNormalization",
            [x, self.const(prefix + "/gamma"), self.const(prefix + "/beta")],
            axis=-1,
            epsilon=1e-5,
        )

    def heads(self, x, n_heads, d_model):
        """[1, T, D] -> [1, H, T, D/H]"""
        shape = self.const(f"shape/heads/{n_heads}", np.array([1, -1, n_heads, d_model // n_heads], dtype=np.int64))
        return self.op("Transpose", [self.op("Reshape", [x, shape])], perm=[0, 2, 1, 3])

    def attention(self, q, k, v, n_heads, d_model):
        qh, kh, vh = (self.heads(t, n_heads, d_model) for t in (q, k, v))
        scale = self.const("scale", np.array(1.0 / np.sqrt(d_model // n_heads), dtype=np.float32))
        scores = self.op("Mul", [self.op("MatMul", [qh, self.op("Transpose", [kh], perm=[0, 1, 3, 2])]), scale])
        out = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), vh])
        merged = self.const("shape/merge", np.array([1, -1, d_model], dtype=np.int64))
        return self.op("Reshape", [self.op("Transpose", [out], perm=[0, 2, 1, 3]), merged])

    def model(self, inputs, outputs, name):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, list(self.inits.values()))
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 9
        onnx.checker.check_model(m)
        return m


def encoder(w, s):
    g = Graph(w)
    layers = sum(1 for k in w if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    dec_layers = sum(1 for k in w if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    heads, d = s["encoder/num_heads"], w["encoder/conv1/bias"].shape[0]
    x = "mel"
    for conv, stride in (("encoder/conv1", 1), ("encoder/conv2", 2)):
        x = g.op("Conv", [x, g.const(conv + "/weight"), g.const(conv + "/bias")], pads=[1, 1], strides=[stride])
        x = g.op("Gelu", [x])
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    x = g.op("Add", [x, g.const("encoder/position_encodings/encodings")])
    for layer in range(layers):
        p = f"encoder/layer_{layer}"
        h = g.norm(x, p + "/self_attention/layer_norm")
        q, k, v = (g.linear(h, p + "/self_attention/linear_0", (i * d, (i + 1) * d)) for i in range(3))
        x = g.op("Add", [x, g.linear(g.attention(q, k, v, heads, d), p + "/self_attention/linear_1")])
        h = g.norm(x, p + "/ffn/layer_norm")
        x = g.op("Add", [x, g.linear(g.op("Gelu", [g.linear(h, p + "/ffn/linear_0")]), p + "/ffn/linear_1")])
    x = g.norm(x, "encoder/layer_norm")
    outputs = []
    for layer in range(dec_layers):
        p = f"decoder/layer_{layer}/attention/linear_1"
        for i, kind in enumerate(("k", "v")):
            name = f"cross_{kind}_{layer}"
            g.named("Identity", [g.linear(x, p, (i * d, (i + 1) * d))], name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1500, d]))
    inputs = [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, w["encoder/conv1/weight"].shape[1], 3000])]
    return g.model(inputs, outputs, "whisper_encoder")


def decoder(w, s, tied=True):
    g = Graph(w)
    layers = sum(1 for k in w if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    heads, d = s["decoder/num_heads"], w["decoder/embeddings/weight"].shape[1]
    vocab = w["decoder/embeddings/weight"].shape[0]
    tok = g.op("Gather", [g.const("decoder/embeddings/weight"), "token"], axis=0)  # [1, 1, d]
    pos = g.op("Gather", [g.const("decoder/position_encodings/encodings"), "position"], axis=0)  # [1, d]
    x = g.op("Add", [tok, pos])
    inputs = [
        helper.make_tensor_value_info("token", TensorProto.INT64, [1, 1]),
        helper.make_tensor_value_info("position", TensorProto.INT64, [1]),
    ]
    outputs = []
    for layer in range(layers):
        p = f"decoder/layer_{layer}"
        h = g.norm(x, p + "/self_attention/layer_norm")
        q, k, v = (g.linear(h, p + "/self_attention/linear_0", (i * d, (i + 1) * d)) for i in range(3))
        keys, values = f"present_k_{layer}", f"present_v_{layer}"
        g.named("Concat", [f"past_k_{layer}", k], keys, axis=1)
        g.named("Concat", [f"past_v_{layer}", v], values, axis=1)
        x = g.op("Add", [x, g.linear(g.attention(q, keys, values, heads, d), p + "/self_attention/linear_1")])
        h = g.norm(x, p + "/attention/layer_norm")
        q = g.linear(h, p + "/attention/linear_0")
        attended = g.attention(q, f"cross_k_{layer}", f"cross_v_{layer}", heads, d)
        x = g.op("Add", [x, g.linear(attended, p + "/attention/linear_2")])
        h = g.norm(x, p + "/ffn/layer_norm")
        x = g.op("Add", [x, g.linear(g.op("Gelu", [g.linear(h, p + "/ffn/linear_0")]), p + "/ffn/linear_1")])
        for kind in ("k", "v"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{layer}", TensorProto.FLOAT, [1, "past", d]))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{layer}", TensorProto.FLOAT, [1, "total", d]))
        for kind in ("k", "v"):
            inputs.append(helper.make_tensor_value_info(f"cross_{kind}_{layer}", TensorProto.FLOAT, [1, 1500, d]))
    x = g.norm(x, "decoder/layer_norm")
    flat = g.op("Reshape", [x, g.const("shape/flat", np.array([1, d], dtype=np.int64))])
    if tied:
        # The output projection is the embedding table itself, shared, not copied.
        g.named("Gemm", [flat, g.const("decoder/embeddings/weight")], "logits", transB=1)
    else:
        # For quantization: a separate (transposed) copy the quantizer may rewrite freely.
        g.named("MatMul", [flat, g.const("decoder/projection/wt", w["decoder/embeddings/weight"].T)], "logits")
    outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, vocab]))
    return g.model(inputs, outputs, "whisper_decoder")


def main():
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, scalars = read_ct2(model_dir / "model.bin")
    for name, build in (("encoder", encoder), ("decoder", decoder)):
        print(f"building {name}.onnx", flush=True)
        onnx.save(build(weights, scalars), out_dir / f"{name}.onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx.save(decoder(weights, scalars, tied=False), out_dir / "decoder.untied.onnx")
    for name, source in (("encoder", "encoder"), ("decoder", "decoder.untied")):
        print(f"quantizing {name}.int8.onnx", flush=True)
        # Only the linear layers: the tied embedding table stays float (it is both a lookup
        # table and the output projection).
        quantize_dynamic(
            out_dir / f"{source}.onnx", out_dir / f"{name}.int8.onnx", weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )
    (out_dir / "decoder.untied.onnx").unlink()
    config = json.loads((model_dir / "config.json").read_text())
    (out_dir / "model.json").write_text(json.dumps({
        "n_vocab": int(weights["decoder/embeddings/weight"].shape[0]),
        "d_model": int(weights["decoder/embeddings/weight"].shape[1]),
        "decoder_layers": sum(1 for k in weights if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight")),
        "suppress_ids": config.get("suppress_ids", []),
        "suppress_ids_begin": config.get("suppress_ids_begin", []),
    }, indent=2))
    print("done", flush=True)


if __name__ == "__main__":
    main()
