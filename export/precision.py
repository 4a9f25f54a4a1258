"""Which nodes of the region-expert graph must stay FP32 when the rest is INT8 or FP16.

The graph is ``uint8 tiles -> normalise -> DINOv2 -> L2-normalise -> cosine kNN
to the bank``. Reduced precision pays off in the backbone's matrix products;
it hurts where small differences decide the verdict:

* the **preprocessing** before the patch-embedding convolution (uint8 -> float,
  ImageNet scale/shift: a handful of element-wise ops, no gain);
* **LayerNorm and Softmax** (variance and exp overflow in FP16; INT8 kernels are
  not faster on a CPU);
* the **distance head** after the final LayerNorm (patch selection, L2
  normalisation, the bank matmul, max, ``1 - s``): patch distances near the
  threshold differ by a few 1e-3, which an 8-bit bank product would blur.

Found structurally (graph walk from the inputs and the last LayerNorm), not by
node names, so it holds for every DINOv2 size and register variant we export.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

FP32_OP_TYPES = ("LayerNormalization", "Softmax")  # kept FP32 wherever they are


def _consumers(graph: Any) -> dict[str, list[Any]]:
    table: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                table[name].append(node)
    return table


def _downstream(graph: Any, start_tensors: Iterable[str]) -> list[Any]:
    """Nodes reachable forward from ``start_tensors`` (in graph order)."""
    consumers = _consumers(graph)
    seen: set[int] = set()
    queue = deque(start_tensors)
    while queue:
        tensor = queue.popleft()
        for node in consumers.get(tensor, ()):
            if id(node) not in seen:
                seen.add(id(node))
                queue.extend(o for o in node.output if o)
    return [n for n in graph.node if id(n) in seen]


def _upstream(graph: Any, end_tensors: Iterable[str]) -> list[Any]:
    """Nodes that ``end_tensors`` depend on (in graph order)."""
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[int] = set()
    queue = deque(end_tensors)
    while queue:
        tensor = queue.popleft()
        node = producer.get(tensor)
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            queue.extend(i for i in node.input if i)
    return [n for n in graph.node if id(n) in seen]


def distance_head_nodes(model: Any) -> list[Any]:
    """The final LayerNorm and everything after it, plus everything that touches the ``bank`` input."""
    graph = model.graph
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    if not norms:
        raise ValueError("no LayerNormalization node in the graph (export with opset >= 17)")
    last = norms[-1]
    head = {id(n): n for n in _downstream(graph, last.output)}
    head[id(last)] = last
    for node in _downstream(graph, ["bank"]):
        head[id(node)] = node
    return [n for n in graph.node if id(n) in head]


def preprocessing_nodes(model: Any) -> list[Any]:
    """uint8 -> float -> scale/shift: the nodes between ``tiles`` and the patch-embedding Conv."""
    graph = model.graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if not convs:
        raise ValueError("no Conv node (patch embedding) in the graph")
    conv = convs[0]
    before = _upstream(graph, [conv.input[0]])
    from_tiles = {id(n) for n in _downstream(graph, ["tiles"])}
    return [n for n in before if id(n) in from_tiles]


def fp32_node_names(model: Any) -> list[str]:
    """Names of the nodes kept FP32: preprocessing + distance head (every node gets a name first)."""
    name_nodes(model)
    names = [n.name for n in preprocessing_nodes(model)] + [n.name for n in distance_head_nodes(model)]
    return sorted(set(names))


def activation_matmul_names(model: Any) -> list[str]:
    """MatMul nodes whose both operands are activations (attention's QK^T and AV): no weight to quantise."""
    name_nodes(model)
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def name_nodes(model: Any) -> None:
    """Give unnamed nodes stable names (the quantisers address nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def fold_attention_scale(model: Any) -> int:
    """Fold ``softmax((Q K^T) * s)``'s scale ``s`` into the query projection: ``Q' = X (s W) + s b``.

    Exact algebra (up to float rounding). Why: with INT8 attention, ``Q K^T``
    becomes an integer matmul with a float output and the separate ``Mul``
    costs a full pass over the heads x tokens x tokens scores (≈ 13 % of an INT8
    ViT-S run at 448 px); FP32 graphs get the same effect from ORT's FusedMatMul.
    Returns how many attention blocks were folded.
    """
    from onnx import numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def scalar(name: str) -> Any:
        if name in inits:
            value = numpy_helper.to_array(inits[name])
        elif name in constants:
            attr = next((a for a in constants[name].attribute if a.name == "value"), None)
            if attr is None:
                return None
            value = numpy_helper.to_array(attr.t)
        else:
            return None
        return float(value.reshape(-1)[0]) if value.size == 1 else None

    def walk(tensor: str, ops: tuple[str, ...]) -> Any:
        node = producer.get(tensor)
        for op in ops:
            if node is None or node.op_type != op:
                return None
            if op == "Add":
                return node
            node = producer.get(node.input[0])
        return None

    folded = 0
    for mul in [n for n in graph.node if n.op_type == "Mul"]:
        scores = producer.get(mul.input[0])
        scale = scalar(mul.input[1])
        if scores is None or scores.op_type != "MatMul" or scale is None:
            continue
        if any(i in inits for i in scores.input):
            continue  # not an activation x activation matmul
        add = walk(scores.input[0], ("Transpose", "Reshape", "Add"))
        if add is None:
            continue
        def constant_source(name: str) -> Any:
            while name not in inits and name in producer and producer[name].op_type == "Identity":
                name = producer[name].input[0]  # the exporter shares equal initializers through Identity
            return name if name in inits else None

        slots = [(k, constant_source(i)) for k, i in enumerate(add.input)]
        bias_slot = next(((k, src) for k, src in slots if src is not None), None)
        matmul = next((producer.get(i) for k, i in enumerate(add.input) if slots[k][1] is None), None)
        if bias_slot is None or matmul is None or matmul.op_type != "MatMul":
            continue
        weight_source = constant_source(matmul.input[1])
        if weight_source is None:
            continue
        if len(consumers[add.output[0]]) != 1 or len(consumers[matmul.output[0]]) != 1:
            continue  # the projection feeds something else too: scaling it would change that
        # new, scaled initializers (the originals may be shared with other nodes)
        for node, slot, source in ((add, bias_slot[0], bias_slot[1]), (matmul, 1, weight_source)):
            array = numpy_helper.to_array(inits[source])
            name = f"{source}_scaled_{folded}"
            graph.initializer.append(numpy_helper.from_array((array * scale).astype(array.dtype), name))
            inits[name] = graph.initializer[-1]
            node.input[slot] = name
        for consumer in consumers[mul.output[0]]:
            for k, name in enumerate(consumer.input):
                if name == mul.output[0]:
                    consumer.input[k] = scores.output[0]
        graph.node.remove(mul)
        folded += 1
    return folded


def drop_unused(model: Any) -> None:
    """Remove initializers and Constant nodes that no node (or graph output) reads any more."""
    graph = model.graph
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]
        for node in dead:
            graph.node.remove(node)
        if not dead:
            break
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def fuse_attention(model: Any, feature_dim: int) -> int:
    """Replace each ``softmax((Q K^T) * s) V`` block by ONNX Runtime's ``com.microsoft.MultiHeadAttention``.

    Exact (the same arithmetic in one kernel, without the transposes and the materialised
    heads x tokens x tokens score tensor). Used for the CPU-only INT8 graph, where the FP32 attention is
    the largest remaining cost at 448 px; the portable FP32 export keeps plain ONNX ops. The head size is
    read from the query reshape (``[B, S, -1, head_dim]``); heads = ``feature_dim / head_dim``. Returns how
    many blocks were fused.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    inits = {i.name: i for i in graph.initializer}

    def scalar(name: str) -> Any:
        if name in inits:
            value = numpy_helper.to_array(inits[name])
        elif name in constants:
            attr = next((a for a in constants[name].attribute if a.name == "value"), None)
            value = numpy_helper.to_array(attr.t) if attr is not None else None
        else:
            return None
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def only(tensor: str, op: str) -> Any:
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        mul = producer.get(softmax.input[0])
        scores = producer.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
        scale = scalar(mul.input[1]) if mul is not None else None
        av = only(softmax.output[0], "MatMul")
        if scores is None or scores.op_type != "MatMul" or scale is None or av is None:
            continue
        chain = [producer.get(scores.input[0]), producer.get(scores.input[1]), producer.get(av.input[1])]
        if any(t is None or t.op_type != "Transpose" for t in chain):
            continue
        reshapes = [producer.get(t.input[0]) for t in chain]
        if any(r is None or r.op_type != "Reshape" for r in reshapes):
            continue
        out_t = only(av.output[0], "Transpose")
        out_r = only(out_t.output[0], "Reshape") if out_t is not None else None
        if out_r is None:
            continue
        shape = producer.get(reshapes[0].input[1])
        head_dim = scalar(shape.input[-1]) if shape is not None and shape.op_type == "Concat" else None
        if not head_dim or feature_dim % int(head_dim):
            continue
        q, k, v = (r.input[0] for r in reshapes)
        node = helper.make_node("MultiHeadAttention", [q, k, v], [out_r.output[0]], name=f"{softmax.name}_mha",
                                domain="com.microsoft", num_heads=feature_dim // int(head_dim), scale=scale)
        replaced[id(out_r)] = node
        for old in (*chain, *reshapes, scores, mul, softmax, av, out_t):
            dropped.add(id(old))
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    # Declare the fused nodes' outputs as float: ONNX shape inference does not know the contrib op, and the
    # quantiser skips a tensor of unknown type, which left each block's output projection unquantised
    # (ORT then ran it as a weight-only MatMulNBits with float activations, 12 % of an INT8 run at 448 px).
    typed = {v.name for v in graph.value_info}
    for node in replaced.values():
        if node.output[0] not in typed:
            graph.value_info.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replaced)
