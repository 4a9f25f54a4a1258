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
from typing import Any, Iterable

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
