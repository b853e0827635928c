"""ONNX models written with protobuf alone, for builders whose isvc venv has onnxruntime (which
reads graphs but cannot write them) and protobuf, but not the `onnx` package.

The messages are a subset of ONNX's own schema: the fields below, with their numbers and types as
in onnx/onnx@v1.22.0:onnx/onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
TensorProto, ValueInfoProto, TypeProto.Tensor, TensorShapeProto.Dimension, OperatorSetIdProto),
proto2 like the original. Fields outside the subset are never set; nested messages
(TypeProto.Tensor, TensorShapeProto.Dimension) are declared at the top level, which names them
differently but encodes them the same. Checked once by hand with onnx 1.23.2 (not a dependency):
`onnx.checker.check_model(full_check=True)` accepts tts_onnx.py's graphs, and onnx's own ModelProto
re-serializes them to the same bytes.
Serialization is deterministic (`SerializeToString(deterministic=True)`, no maps).
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

IR_VERSION = 8  # ONNX 1.10+; onnxruntime 1.27 reads it
FLOAT, INT32, INT64 = 1, 6, 7  # TensorProto.DataType
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int32): INT32, np.dtype(np.int64): INT64}
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7  # AttributeProto.AttributeType

# message: [(field, number, type)], a trailing * on the type for `repeated`.
_SCHEMA: dict[str, list[tuple[str, int, str]]] = {
    "OperatorSetIdProto": [("domain", 1, "string"), ("version", 2, "int64")],
    "TensorProto": [
        ("dims", 1, "int64*"),
        ("data_type", 2, "int32"),
        ("name", 8, "string"),
        ("raw_data", 9, "bytes"),
    ],
    "AttributeProto": [
        ("name", 1, "string"),
        ("f", 2, "float"),
        ("i", 3, "int64"),
        ("ints", 8, "int64*"),
        ("type", 20, "int32"),
    ],
    "Dimension": [("dim_value", 1, "int64"), ("dim_param", 2, "string")],
    "TensorShapeProto": [("dim", 1, "Dimension*")],
    "TensorTypeProto": [("elem_type", 1, "int32"), ("shape", 2, "TensorShapeProto")],
    "TypeProto": [("tensor_type", 1, "TensorTypeProto")],
    "ValueInfoProto": [("name", 1, "string"), ("type", 2, "TypeProto")],
    "NodeProto": [
        ("input", 1, "string*"),
        ("output", 2, "string*"),
        ("name", 3, "string"),
        ("op_type", 4, "string"),
        ("attribute", 5, "AttributeProto*"),
    ],
    "GraphProto": [
        ("node", 1, "NodeProto*"),
        ("name", 2, "string"),
        ("initializer", 5, "TensorProto*"),
        ("input", 11, "ValueInfoProto*"),
        ("output", 12, "ValueInfoProto*"),
    ],
    "ModelProto": [
        ("ir_version", 1, "int64"),
        ("producer_name", 2, "string"),
        ("graph", 7, "GraphProto"),
        ("opset_import", 8, "OperatorSetIdProto*"),
    ],
}
_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
}


def _classes() -> dict[str, type]:
    spec = descriptor_pb2.FileDescriptorProto(
        name="sandbox_onnx_subset.proto", package="onnx", syntax="proto2"
    )
    for message, fields in _SCHEMA.items():
        desc = spec.message_type.add(name=message)
        for name, number, kind in fields:
            repeated = kind.endswith("*")
            kind = kind.rstrip("*")
            field = desc.field.add(
                name=name,
                number=number,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
            )
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".onnx.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(spec)
    return {
        m: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"onnx.{m}")) for m in _SCHEMA
    }


_M = _classes()


def tensor(name: str, array: np.ndarray):
    """An initializer: little-endian raw data, as onnx.numpy_helper.from_array writes it."""
    array = np.ascontiguousarray(array)
    return _M["TensorProto"](
        name=name,
        dims=list(array.shape),
        data_type=_DTYPES[array.dtype],
        raw_data=array.astype(array.dtype.newbyteorder("<")).tobytes(),
    )


def value_info(name: str, elem_type: int, shape: list[int | str]):
    """A graph input or output; a str in `shape` is a symbolic (dynamic) axis."""
    dims = [
        _M["Dimension"](dim_param=d) if isinstance(d, str) else _M["Dimension"](dim_value=d)
        for d in shape
    ]
    tensor_type = _M["TensorTypeProto"](elem_type=elem_type, shape=_M["TensorShapeProto"](dim=dims))
    return _M["ValueInfoProto"](name=name, type=_M["TypeProto"](tensor_type=tensor_type))


def node(op_type: str, inputs: list[str], outputs: list[str], **attrs: int | float | list[int]):
    attributes = []
    for key, value in sorted(attrs.items()):
        if isinstance(value, list):
            attributes.append(_M["AttributeProto"](name=key, ints=value, type=_ATTR_INTS))
        elif isinstance(value, float):
            attributes.append(_M["AttributeProto"](name=key, f=value, type=_ATTR_FLOAT))
        else:
            attributes.append(_M["AttributeProto"](name=key, i=value, type=_ATTR_INT))
    return _M["NodeProto"](
        input=inputs, output=outputs, name=outputs[0], op_type=op_type, attribute=attributes
    )


def model_bytes(
    name: str, nodes: list, inputs: list, outputs: list, initializers: list, opset: int
) -> bytes:
    """A ModelProto of one graph in the default domain, serialized deterministically."""
    graph = _M["GraphProto"](
        name=name, node=nodes, input=inputs, output=outputs, initializer=initializers
    )
    model = _M["ModelProto"](
        ir_version=IR_VERSION,
        producer_name="ml-sandbox",
        graph=graph,
        opset_import=[_M["OperatorSetIdProto"](domain="", version=opset)],
    )
    return model.SerializeToString(deterministic=True)
