"""The bytes of a checkpoint: the tree encoding, the index, and what a file must pass to be read.

:mod:`hpcore.checkpoint` handles files and folders; this module the format inside a file. A
tree is split into arrays (members ``a<N>.npy``, stored uncompressed) and a JSON skeleton; the
index (member ``__meta__``) holds the skeleton and each member's dtype, shape and SHA-256, and
member ``__digest__`` the SHA-256 of the index's bytes. Reading checks the zip directory, every
``.npy`` header and the index against :class:`Limits` before it reads an array, so a crafted
file is refused before it can make the reader allocate more than the file holds or recurse
deeper than ``max_depth``; :class:`TreeDecoder` then refuses any node that :func:`encode_tree`
does not write. A failed check raises :class:`Refused`, which :mod:`hpcore.checkpoint` turns
into a ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tokenize
import zipfile
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy

from hpcore.checkpoint_limits import Limits, json_depth

__all__ = [
    "FORMAT",
    "INDEX",
    "ROOT",
    "Limits",
    "Refused",
    "TreeDecoder",
    "encode_tree",
    "index_bytes",
    "json_depth",
    "load",
    "register_codec",
]

FORMAT = "hpcore-checkpoint/2"
INDEX = "__meta__"  # uint8 member: the JSON index {"format", "members", "tree"}
ROOT = "__digest__"  # uint8 member: the hex SHA-256 of the index's bytes
_ARRAY = re.compile(r"^a\d+$")
_HEX = re.compile(r"^[0-9a-f]{64}$")

# Extra leaf types (framework tensors): name -> (is_instance, to_numpy, from_numpy).
# ``to_numpy(x)`` returns ``(array, tag)``; ``from_numpy(array, tag)`` rebuilds the leaf (the
# tag carries what NumPy cannot, e.g. bfloat16).
CODECS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], tuple[np.ndarray, str]],
                        Callable[[np.ndarray, str], Any]]] = {}


def register_codec(name: str, is_instance: Callable[[Any], bool],
                   to_numpy: Callable[[Any], tuple[np.ndarray, str]],
                   from_numpy: Callable[[np.ndarray, str], Any]) -> None:
    """Teach the encoder a leaf type (adapters register their framework's tensors)."""
    CODECS[name] = (is_instance, to_numpy, from_numpy)


class Refused(Exception):
    """One check failed; ``str()`` is what follows the file's name (``is corrupted: ...``).

    Internal: :mod:`hpcore.checkpoint` re-raises it as ``CheckpointError`` with the path.
    """


def encode_tree(tree: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Split ``tree`` into a JSON-ready skeleton and its arrays (keyed ``a0``, ``a1``, ...).

    Raises:
        TypeError: a leaf that cannot be stored without pickle, named by its place.
    """
    arrays: dict[str, np.ndarray] = {}

    def add(array: Any, where: str) -> str:
        array = np.asarray(array, order="C")  # keeps 0-d arrays 0-d
        if array.dtype.hasobject:
            msg = f"cannot checkpoint {where}: an array of Python objects ({array.dtype}) needs pickle"
            raise TypeError(msg)
        arrays[key := f"a{len(arrays)}"] = array
        return key

    def enc(x: Any, where: str) -> Any:
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            return int(x)
        if isinstance(x, (float, np.floating)):
            v = float(x)
            return v if np.isfinite(v) else {"__float__": repr(v)}
        if isinstance(x, np.ndarray):
            return {"__array__": add(x, where)}
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                return {"__items__": [[enc(k, where), enc(v, f"{where}[{k!r}]")]
                                      for k, v in x.items()]}
            return {"__dict__": {k: enc(v, f"{where}.{k}") for k, v in x.items()}}
        if isinstance(x, (list, tuple)):
            tag = "__tuple__" if isinstance(x, tuple) else "__list__"
            return {tag: [enc(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        for name, (is_inst, to_np, _) in CODECS.items():
            if is_inst(x):
                array, tag = to_np(x)
                return {"__codec__": name, "key": add(array, where), "tag": tag}
        msg = (f"cannot checkpoint {where} of type {type(x).__name__}: only arrays, numbers, "
               f"strings, None, lists, tuples and dicts (and registered tensor types)")
        raise TypeError(msg)

    return enc(tree, "state"), arrays


def index_bytes(skeleton: Any, arrays: Mapping[str, np.ndarray]) -> bytes:
    """The index of a file holding ``arrays``: compact JSON, the bytes its digest covers."""
    members = {k: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _digest(a)}
               for k, a in arrays.items()}
    index = {"format": FORMAT, "members": members, "tree": skeleton}
    return json.dumps(index, separators=(",", ":"), allow_nan=False).encode()


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
    return h.hexdigest()


def load(zf: zipfile.ZipFile, file_size: int, limits: Limits) -> Any:
    """The tree in an open checkpoint, after every check; ``file_size``: the file's bytes."""
    headers = {}
    for info in _check_directory(zf, file_size, limits):
        with zf.open(info) as member:
            headers[info.filename.removesuffix(".npy")] = _read_header(member, info)
    for key in (INDEX, ROOT):
        shape, dtype = headers.pop(key)
        if dtype != np.uint8 or len(shape) != 1 or (key == ROOT and shape != (64,)):
            msg = f"is corrupted: its {key} member is {dtype} {shape}, expected {'64 ' * (key == ROOT)}bytes"
            raise Refused(msg)
        if key == INDEX and shape[0] > limits.max_index_bytes:
            msg = (f"is refused: its index takes {shape[0]} bytes, more than max_index_bytes="
                   f"{limits.max_index_bytes}; pass a larger max_index_bytes to read it")
            raise Refused(msg)
    raw = _member(zf, INDEX).tobytes()
    if hashlib.sha256(raw).hexdigest().encode() != _member(zf, ROOT).tobytes():
        msg = "is corrupted: its index fails its SHA-256 check (the index was altered)"
        raise Refused(msg)
    if json_depth(raw, limits.max_depth) > limits.max_depth:
        msg = f"is refused: its index nests deeper than max_depth={limits.max_depth}; pass a larger one"
        raise Refused(msg)
    try:
        index = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except ValueError as exc:
        msg = f"is corrupted: its index is not valid JSON ({exc})"
        raise Refused(msg) from None
    _check_index(index, headers)
    arrays = {}
    for key, entry in index["members"].items():
        arrays[key] = a = _member(zf, key)
        if _digest(a) != entry["sha256"]:
            msg = f"is corrupted: the member {key!r} fails its SHA-256 check"
            raise Refused(msg)
    decoder = TreeDecoder(arrays)
    tree = decoder.node(index["tree"], "state")
    for key in sorted(set(arrays) - decoder.used, key=lambda k: int(k[1:])):
        msg = f"is corrupted: its index lists the array {key!r}, which no tree node uses"
        raise Refused(msg)
    return tree


def _member(zf: zipfile.ZipFile, key: str) -> np.ndarray:
    with zf.open(f"{key}.npy") as member:
        return npy.read_array(member, allow_pickle=False)


def _no_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _check_directory(zf: zipfile.ZipFile, file_size: int, limits: Limits) -> list[zipfile.ZipInfo]:
    """The members named in the zip directory, checked for count, names, storage and sizes."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        msg = (f"is refused: it holds {len(infos)} members, more than max_members={limits.max_members}; "
               f"pass a larger max_members to read it")
        raise Refused(msg)
    names = [info.filename for info in infos]
    if f"{INDEX}.npy" not in names:
        msg = f"is not an hpcore checkpoint (no {INDEX} member)"
        raise Refused(msg)
    if f"{ROOT}.npy" not in names:
        msg = (f"is not an hpcore checkpoint of this version (no {ROOT} member: written by hpcore 0.1, "
               f"whose index no digest covers, or altered); load it with hpcore 0.1 and save it again")
        raise Refused(msg)
    seen: set[str] = set()
    for info, name in zip(infos, names, strict=True):
        stem = name.removesuffix(".npy")
        if name in seen:
            msg = f"is corrupted: the member {name!r} appears twice"
            raise Refused(msg)
        seen.add(name)
        if not name.endswith(".npy") or not (_ARRAY.match(stem) or stem in (INDEX, ROOT)):
            msg = f"is corrupted: unexpected member {name!r} (only a<N>.npy, {INDEX}.npy and {ROOT}.npy)"
            raise Refused(msg)
        if info.flag_bits & 0x1:
            msg = f"is corrupted: the member {name!r} is encrypted"
            raise Refused(msg)
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            msg = (f"is corrupted: the member {name!r} is compressed (method {info.compress_type}); "
                   f"checkpoint members are stored uncompressed")
            raise Refused(msg)
        if info.header_offset + info.file_size > file_size:
            msg = (f"is corrupted: the member {name!r} declares {info.file_size} bytes at offset "
                   f"{info.header_offset}, past the end of the {file_size}-byte file")
            raise Refused(msg)
    total = sum(info.file_size for info in infos)
    if total > limits.max_bytes:
        msg = (f"is refused: its members hold {total} bytes, more than max_bytes={limits.max_bytes}; "
               f"pass a larger max_bytes to read it")
        raise Refused(msg)
    return infos


def _read_header(fp: IO[bytes], info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a member's ``.npy`` header, checked against the member's size."""
    name = info.filename
    try:
        version = npy.read_magic(fp)
        if version not in ((1, 0), (2, 0)):
            msg = f"is corrupted: the member {name!r} has .npy version {version}, expected (1, 0) or (2, 0)"
            raise Refused(msg)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(fp)
    except (ValueError, SyntaxError, tokenize.TokenError) as exc:  # what NumPy's parser raises
        msg = f"is corrupted: the member {name!r} has no readable .npy header ({type(exc).__name__}: {exc})"
        raise Refused(msg) from None
    if dtype.hasobject:
        msg = f"is refused: the member {name!r} holds Python objects ({dtype}), which would need pickle"
        raise Refused(msg)
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        msg = f"is corrupted: the member {name!r} declares the shape {shape}"
        raise Refused(msg)
    declared = math.prod(shape) * dtype.itemsize + fp.tell()
    if declared != info.file_size:
        msg = (f"is corrupted: the member {name!r} declares the shape {shape} of {dtype} ({declared} bytes "
               f"with its header) "
               f"but holds {info.file_size} bytes")
        raise Refused(msg)
    return tuple(shape), dtype


def _check_index(index: Any, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """The parsed index: an object with the format, one entry per array member, and a tree."""
    if not isinstance(index, dict):
        msg = f"is corrupted: its index is a JSON {_json_kind(index)}, expected an object"
        raise Refused(msg)
    if index.get("format") != FORMAT:
        msg = f"has the format {index.get('format')!r}, expected {FORMAT!r}"
        raise Refused(msg)
    if sorted(index) != ["format", "members", "tree"]:
        msg = f"is corrupted: its index has the keys {sorted(index)!r}, expected format, members, tree"
        raise Refused(msg)
    members = index["members"]
    if not isinstance(members, dict):
        msg = f"is corrupted: its index lists the members as a JSON {_json_kind(members)}, expected an object"
        raise Refused(msg)
    for key in sorted(set(members) - set(headers)):
        msg = f"is corrupted: its index names the member {key!r}, which the file does not hold"
        raise Refused(msg)
    for key in sorted(set(headers) - set(members)):
        msg = f"is corrupted: it holds the member {key!r}, which its index does not name"
        raise Refused(msg)
    for key, entry in members.items():
        shape, dtype = headers[key]
        if not isinstance(entry, dict) or sorted(entry) != ["dtype", "sha256", "shape"]:
            msg = f"is corrupted: its index entry of {key!r} is not {{'dtype', 'shape', 'sha256'}}"
            raise Refused(msg)
        if not isinstance(entry["sha256"], str) or not _HEX.match(entry["sha256"]):
            msg = f"is corrupted: its index entry of {key!r} has no SHA-256 hex digest"
            raise Refused(msg)
        if entry["dtype"] != dtype.str or entry["shape"] != list(shape):
            msg = (f"is corrupted: the member {key!r} is {dtype.str} {list(shape)} but its index says "
                   f"{entry['dtype']!r} {entry['shape']!r}")
            raise Refused(msg)


def _json_kind(x: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(x), "number")


class TreeDecoder:
    """Rebuilds a tree from its skeleton, refusing any node that ``encode_tree`` does not write.

    Args:
        arrays: the members, by key; each may be referred to once (``used`` records them).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.used: set[str] = set()

    def node(self, x: Any, where: str) -> Any:
        """The value of skeleton node ``x``, found at ``where`` (``state.engine.step``)."""
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        keys = frozenset(x) if isinstance(x, dict) else None
        if keys == {"__dict__"} and isinstance(x["__dict__"], dict):
            return {k: self.node(v, f"{where}.{k}") for k, v in x["__dict__"].items()}
        if keys == {"__items__"} and isinstance(x["__items__"], list):
            return self._items(x["__items__"], where)
        if keys in ({"__list__"}, {"__tuple__"}):
            (tag,) = keys
            if isinstance(x[tag], list):
                out = [self.node(v, f"{where}[{i}]") for i, v in enumerate(x[tag])]
                return out if tag == "__list__" else tuple(out)
        if keys == {"__array__"}:
            return self._array(x["__array__"], where)
        if keys == {"__float__"} and isinstance(x["__float__"], str):
            try:
                return float(x["__float__"])
            except ValueError:
                pass
        if keys == {"__codec__", "key", "tag"} and isinstance(x["tag"], str):
            return self._codec(x["__codec__"], self._array(x["key"], where), x["tag"], where)
        shown = f"keys {sorted(map(str, x))}" if isinstance(x, dict) else f"a {type(x).__name__}"
        msg = f"is corrupted: the tree node at {where} ({shown}) is not one that encode_tree writes"
        raise Refused(msg)

    def _items(self, pairs: list[Any], where: str) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2):
                msg = f"is corrupted: the dict at {where} holds an item that is not a [key, value] pair"
                raise Refused(msg)
            key = self.node(pair[0], f"{where} (a key)")
            try:
                hash(key)
            except TypeError:
                msg = f"is corrupted: the dict at {where} has an unhashable key ({type(key).__name__})"
                raise Refused(msg) from None
            out[key] = self.node(pair[1], f"{where}[{key!r}]")
        return out

    def _array(self, key: Any, where: str) -> np.ndarray:
        if not isinstance(key, str) or key not in self.arrays:
            msg = f"is corrupted: the tree node at {where} refers to the array {key!r}, which is not there"
            raise Refused(msg)
        if key in self.used:
            msg = f"is corrupted: the tree node at {where} refers to the array {key!r} a second time"
            raise Refused(msg)
        self.used.add(key)
        return self.arrays[key]

    def _codec(self, name: Any, array: np.ndarray, tag: str, where: str) -> Any:
        if not isinstance(name, str) or name not in CODECS:
            msg = f"holds {name!r} tensors; import the adapter that reads them first"
            raise Refused(msg)
        try:
            return CODECS[name][2](array, tag)
        except Exception as exc:  # a codec is other code: whatever it raises refuses the leaf
            msg = (f"is corrupted: the {name!r} codec cannot rebuild {where} from {array.dtype} "
                   f"{array.shape} with the tag {tag!r} ({type(exc).__name__}: {exc})")
            raise Refused(msg) from exc
