"""The FP16 trunk for a strongly typed TensorRT network, with GroupNorm's statistics kept in FP32.

torch exports GroupNorm as  Reshape -> ReduceMean -> Sub -> Mul(d, d) -> ReduceMean
-> Add(eps) -> Sqrt -> Div -> Reshape -> Mul(gamma) -> Add(beta). In FP16 the
squared deviation `Mul(d, d)` overflows (65504) once |x - mean| > 256, and the
variance loses its low bits well before that. So every node that computes
normalisation statistics stays FP32: ReduceMean, Sub, the squaring Mul, the Add
of epsilon, Sqrt, Div (and Pow/the ONNX normalisation ops, should an exporter
emit those). The affine Mul/Add after the Div and the convolutions run in FP16.

Conversion is ONNX Runtime's float16 converter with that explicit node list
(the same file then runs on ONNX Runtime CPU, which is how the tests check it
agrees with FP32). The converter wraps each blocked node in its own Casts, so
between two FP32 nodes the tensor would still be rounded to FP16 — the square
of a deviation too, which is exactly what overflows; `drop_fp16_round_trips`
connects such nodes directly. TensorRT builds it strongly typed: the types in the file are
the types it runs, on TensorRT 10 and 11 alike (11 removed weak typing).
"""
from __future__ import annotations

STATISTICS_OPS = frozenset({"ReduceMean", "Sub", "Sqrt", "Div", "Pow", "ReduceSumSquare",
                            "InstanceNormalization", "GroupNormalization", "LayerNormalization"})


def normalisation_nodes(model) -> list[str]:
    """Names of the nodes that compute normalisation statistics (see the module docstring)."""
    nodes = model.graph.node
    produced_by = {out: n for n in nodes for out in n.output}
    keep = []
    for n in nodes:
        if n.op_type in STATISTICS_OPS:
            keep.append(n.name)
        elif n.op_type == "Mul" and len(n.input) == 2 and n.input[0] == n.input[1]:  # a square
            keep.append(n.name)
        elif n.op_type == "Add" and any(produced_by.get(i) is not None and produced_by[i].op_type == "ReduceMean" for i in n.input):
            keep.append(n.name)  # variance + eps
    return keep


def name_every_node(model) -> None:
    """The converter blocks nodes by name: give unnamed nodes a unique one."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in taken:
                name += "_"
            n.name = name
            taken.add(name)


def fp16_onnx(onnx_bytes: bytes) -> bytes:
    """FP16 weights and activations, FP32 inputs/outputs and normalisation statistics."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load_from_string(onnx_bytes)
    name_every_node(model)
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST),
                                         node_block_list=normalisation_nodes(model))
    drop_fp16_round_trips(converted)
    return converted.SerializeToString()


def drop_fp16_round_trips(model) -> int:
    """Replace FP32 -> Cast(FP16) -> Cast(FP32) by the FP32 tensor itself; returns how many casts were removed."""
    import onnx

    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    types = _tensor_types(model)
    graph = model.graph
    outputs = {o.name for o in graph.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    removed = set()
    for down in graph.node:
        if down.op_type != "Cast" or _cast_to(down) != fp16 or types.get(down.input[0]) != fp32:
            continue
        users = consumers.get(down.output[0], [])
        for up in users:
            if up.op_type == "Cast" and _cast_to(up) == fp32 and up.output[0] not in outputs:
                for reader in consumers.get(up.output[0], []):
                    reader.input[:] = [down.input[0] if x == up.output[0] else x for x in reader.input]
                removed.add(id(up))
        if users and all(id(u) in removed for u in users) and down.output[0] not in outputs:
            removed.add(id(down))
    keep = [n for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(keep)
    return len(removed)


def _cast_to(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _tensor_types(model) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def float32_nodes(onnx_bytes: bytes) -> set[str]:
    """Names of the nodes whose first output is FP32 after shape inference (to check a conversion)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    types = _tensor_types(model)
    return {n.name for n in model.graph.node if n.output and types.get(n.output[0]) == onnx.TensorProto.FLOAT}


def float_nodes(onnx_bytes: bytes) -> set[str]:
    """Names of the nodes that compute on floating-point tensors (not shape arithmetic on integers)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    types = _tensor_types(model)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    return {n.name for n in model.graph.node if n.output and types.get(n.output[0]) in floats}
