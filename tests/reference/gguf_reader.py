"""A GGUF (v2/v3) reader written from the format's published description, independent of the
engine: metadata as Python values, tensors as (type id, shape, raw bytes) views of a memory map."""

import mmap
import struct

import numpy as np

# Metadata value types.
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9


class GgufTensor:
    def __init__(self, name, ne, type_id, offset):
        self.name = name
        self.ne = ne  # innermost first, as GGUF stores it
        self.type_id = type_id
        self.offset = offset  # from the start of the data section
        self.data = None  # memoryview of its bytes, set by GgufFile


class GgufFile:
    def __init__(self, path):
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._pos = 0
        magic = self._read(4)
        if magic != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = self._unpack("<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version}")
        n_tensors = self._unpack("<Q")
        n_kv = self._unpack("<Q")
        self.metadata = {}
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._unpack("<I"))
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._unpack("<I")
            ne = [self._unpack("<Q") for _ in range(n_dims)]
            type_id = self._unpack("<I")
            offset = self._unpack("<Q")
            self.tensors[name] = GgufTensor(name, ne, type_id, offset)
        alignment = int(self.metadata.get("general.alignment", 32))
        data_start = (self._pos + alignment - 1) // alignment * alignment
        view = memoryview(self._map)
        for t in self.tensors.values():
            t.data = view[data_start + t.offset:]

    def _read(self, n):
        b = self._map[self._pos:self._pos + n]
        if len(b) != n:
            raise ValueError("truncated GGUF")
        self._pos += n
        return b

    def _unpack(self, fmt):
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _string(self):
        return self._read(self._unpack("<Q")).decode("utf-8", errors="replace")

    def _value(self, type_id):
        if type_id in _SCALARS:
            return self._unpack(_SCALARS[type_id])
        if type_id == _STRING:
            return self._string()
        if type_id == _ARRAY:
            element_type = self._unpack("<I")
            n = self._unpack("<Q")
            return [self._value(element_type) for _ in range(n)]
        raise ValueError(f"unknown metadata value type {type_id}")

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def has_tensor(self, name):
        return name in self.tensors
