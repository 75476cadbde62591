"""What a model file declares: its input and output tensors and its metadata.

ONNX files are read here directly (they are protocol buffers; only a handful
of fields are needed), so every backend sees the same signature without the
``onnx`` package and before any runtime loads the model. The weights are
skipped over, never parsed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ONNX TensorProto.DataType numbers of the element types a detector's input
# or output can have.
_ONNX_TYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    6: "int32",
    7: "int64",
    10: "float16",
    11: "float64",
}

_VARINT = 0
_FIXED64 = 1
_LENGTH = 2
_FIXED32 = 5


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor: its name, shape (None for a dynamic dimension) and type."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        """The numpy type of the tensor's elements."""
        return np.dtype(self.dtype)


@dataclass(frozen=True)
class ModelSignature:
    """The tensors a model takes and gives, and its key/value metadata."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)


class _Reader:
    """Walks the fields of one protocol-buffer message in a byte buffer."""

    def __init__(self, data: memoryview, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.position = start
        self.end = len(data) if end is None else end

    def _varint(self) -> int:
        result = 0
        shift = 0
        while True:
            if self.position >= self.end:
                raise ValueError("truncated varint")
            byte = self.data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def fields(self) -> Iterator[tuple[int, int | _Reader]]:
        """Yields ``(field number, value)``: an int for scalars, a reader for length-delimited."""
        while self.position < self.end:
            key = self._varint()
            number, wire_type = key >> 3, key & 7
            if wire_type == _VARINT:
                yield number, self._varint()
            elif wire_type == _LENGTH:
                length = self._varint()
                start = self.position
                self.position += length
                if self.position > self.end:
                    raise ValueError("truncated length-delimited field")
                yield number, _Reader(self.data, start, self.position)
            elif wire_type == _FIXED64:
                self.position += 8
            elif wire_type == _FIXED32:
                self.position += 4
            else:
                raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if self.position != self.end:
            raise ValueError("field runs past the end of its message")

    def text(self) -> str:
        return bytes(self.data[self.position : self.end]).decode("utf-8", errors="replace")


def _tensor_info(value_info: _Reader) -> TensorInfo:
    """Reads an ONNX ValueInfoProto (name 1, type 2)."""
    name = ""
    shape: list[int | None] = []
    dtype = "unknown"
    for number, value in value_info.fields():
        if number == 1 and isinstance(value, _Reader):
            name = value.text()
        elif number == 2 and isinstance(value, _Reader):
            for type_number, tensor_type in value.fields():
                # TypeProto.tensor_type = 1: elem_type = 1, shape = 2.
                if type_number != 1 or not isinstance(tensor_type, _Reader):
                    continue
                for tensor_number, tensor_value in tensor_type.fields():
                    if tensor_number == 1 and isinstance(tensor_value, int):
                        dtype = _ONNX_TYPES.get(tensor_value, f"onnx-type-{tensor_value}")
                    elif tensor_number == 2 and isinstance(tensor_value, _Reader):
                        shape = [_dimension(dim) for _, dim in tensor_value.fields()]
    return TensorInfo(name, tuple(shape), dtype)


def _dimension(dimension: int | _Reader) -> int | None:
    """Reads TensorShapeProto.Dimension: dim_value = 1 (a size) or dim_param = 2 (a name)."""
    if not isinstance(dimension, _Reader):
        return None
    for number, value in dimension.fields():
        if number == 1 and isinstance(value, int) and value > 0:
            return value
    return None


def _initializer_name(tensor: _Reader) -> str:
    """The name (field 8) of an ONNX TensorProto; its data is skipped."""
    for number, value in tensor.fields():
        if number == 8 and isinstance(value, _Reader):
            return value.text()
    return ""


def read_onnx_signature(path: Path) -> ModelSignature:
    """Reads the graph inputs, outputs and metadata of an ``.onnx`` file.

    Raises :class:`ValueError` when the file is not an ONNX model.
    """
    data = memoryview(path.read_bytes())
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    initializers: set[str] = set()
    metadata: dict[str, str] = {}
    graphs = 0
    try:
        for number, value in _Reader(data).fields():
            if number == 7 and isinstance(value, _Reader):  # ModelProto.graph
                graphs += 1
                for graph_number, graph_value in value.fields():
                    if not isinstance(graph_value, _Reader):
                        continue
                    if graph_number == 11:
                        inputs.append(_tensor_info(graph_value))
                    elif graph_number == 12:
                        outputs.append(_tensor_info(graph_value))
                    elif graph_number == 5:
                        initializers.add(_initializer_name(graph_value))
            elif number == 14 and isinstance(value, _Reader):  # ModelProto.metadata_props
                entry = {n: v.text() for n, v in value.fields() if isinstance(v, _Reader)}
                metadata[entry.get(1, "")] = entry.get(2, "")
    except ValueError as error:
        raise ValueError(f"{path} is not an ONNX model: {error}") from error
    if graphs != 1 or not outputs:
        raise ValueError(f"{path} is not an ONNX model: it has no graph with outputs")
    # Models from before ONNX IR version 4 list their weights among the inputs too.
    real_inputs = tuple(info for info in inputs if info.name not in initializers)
    return ModelSignature(real_inputs, tuple(outputs), metadata)
