"""A small deterministic ONNX graph builder shared by the converters.

Node and value names come from a scope plus a running counter, in build order, so the
same weights always give the same graph and byte-identical files (no timestamps, no
random names, no dict-order dependence).
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization (MiniLM) needs 17; the runner's ONNX Runtime reads it
IR_VERSION = 8  # the IR version that goes with opset 17
MS_DOMAIN = "com.microsoft"  # only for the optional int4 (MatMulNBits) variant

# Protobuf cannot serialize one message over 2 GiB; both models are far below it.
MAX_PROTO_BYTES = 2**31 - 1


class Graph:
    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._init_names: set[str] = set()
        self._n = 0
        self.scope = ""
        self.uses_ms_domain = False

    # -- values -------------------------------------------------------------------
    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name: str, elem_type: int, shape: list) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def init(self, name: str, arr: np.ndarray) -> str:
        """A named initializer (weights keep readable, HF-like names)."""
        assert name not in self._init_names, name
        self._init_names.add(name)
        # not np.ascontiguousarray: it turns a 0-d scalar into shape [1]
        self.inits.append(numpy_helper.from_array(np.asarray(arr, order="C"), name))
        return name

    def i64(self, name: str, values) -> str:
        """A small int64 constant (shapes, axes, indices); shared when asked twice."""
        name = f"const/{name}"
        if name not in self._init_names:
            self.init(name, np.array(values, dtype=np.int64))
        return name

    def f32(self, name: str, values) -> str:
        name = f"const/{name}"
        if name not in self._init_names:
            self.init(name, np.array(values, dtype=np.float32))
        return name

    # -- nodes --------------------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], n_out: int = 1, outputs: list[str] | None = None,
           domain: str | None = None, **attrs):
        """Append a node; returns its output name (or a list when n_out > 1)."""
        self._n += 1
        node_name = f"{self.scope}/{op_type}_{self._n}" if self.scope else f"/{op_type}_{self._n}"
        outs = outputs or [f"{node_name}/out{k}" for k in range(n_out)]
        if domain == MS_DOMAIN:
            self.uses_ms_domain = True
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, domain=domain, **attrs))
        return outs[0] if len(outs) == 1 else outs

    # -- model --------------------------------------------------------------------
    def model(self, doc: str, metadata: dict[str, str]) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        if self.uses_ms_domain:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        m = helper.make_model(g, opset_imports=opsets, producer_name="infergate-convert_models",
                              producer_version=metadata.get("converter_version", ""))
        m.ir_version = IR_VERSION
        m.doc_string = doc
        # sorted: the file must not depend on dict insertion order
        for k in sorted(metadata):
            p = m.metadata_props.add()
            p.key, p.value = k, str(metadata[k])
        return m


def save(model: onnx.ModelProto, path: str) -> int:
    """Write the model as one file (weights inline); returns its size in bytes.

    deterministic=True fixes protobuf's field/map ordering, so equal models give equal
    bytes. Written to a temporary name first: a crash never leaves a truncated model.
    """
    onnx.checker.check_model(model)  # in-memory check: fine below 2 GiB
    data = model.SerializeToString(deterministic=True)
    assert len(data) < MAX_PROTO_BYTES, "model over protobuf's 2 GiB limit"
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
BOOL = TensorProto.BOOL
