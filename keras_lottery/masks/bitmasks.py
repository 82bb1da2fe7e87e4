"""Masks stored as one bit per weight: the record's history of every round's mask.

A search keeps the mask of every round in its :class:`~keras_lottery.records.record.LotteryRecord`
(``record.rounds[r].masks``).  Held as numpy booleans these cost a byte per
weight per round; :class:`PackedMasks` holds them bit-packed (1/32 of a float32
model per round) and unpacks one weight's mask when it is read, so the record
grows by a bit per weight per round, in memory and in a run directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class PackedMasks(Mapping[str, np.ndarray]):
    """A read-only ``{weight path: bool mask}`` mapping stored as packed bits.

    Reading ``masks[path]`` returns a fresh numpy bool array of the mask's
    shape; :attr:`packed` gives the stored ``(bits, shape)`` pairs.
    """

    def __init__(self, packed: Mapping[str, tuple[np.ndarray, tuple[int, ...]]]):
        self.packed = dict(packed)

    @classmethod
    def pack(cls, masks: Mapping[str, object]) -> PackedMasks:
        """Pack ``{path: mask}`` (numpy arrays, tensors or variables; nonzero is kept)."""
        if isinstance(masks, PackedMasks):
            return masks
        packed = {}
        for name, mask in masks.items():
            array = np.asarray(mask)
            bits = array.ravel() if array.dtype == bool else array.ravel() != 0
            packed[name] = (np.packbits(bits), tuple(array.shape))
        return cls(packed)

    def __getitem__(self, name: str) -> np.ndarray:
        bits, shape = self.packed[name]
        size = int(np.prod(shape, dtype=np.int64))
        return np.unpackbits(bits, count=size).astype(bool).reshape(shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.packed)

    def __len__(self) -> int:
        return len(self.packed)

    @property
    def nbytes(self) -> int:
        """Bytes held (the packed bits)."""
        return sum(bits.nbytes for bits, _ in self.packed.values())

    def __repr__(self) -> str:
        return f"PackedMasks({len(self)} masks, {self.nbytes} bytes)"

    def __deepcopy__(self, memo) -> PackedMasks:
        return self  # immutable: copies (dataclasses.asdict) share it

    def __eq__(self, other) -> bool:
        if not isinstance(other, Mapping) or set(self) != set(other):
            return False
        return all(np.array_equal(self[k], np.asarray(other[k]) != 0) for k in self)

    __hash__ = None  # type: ignore[assignment]
