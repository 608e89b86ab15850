"""The documents of every namespace and the writes applied to them, shared by the backends.

:class:`Documents` is plain, synchronous code: the memory backend calls it on the event loop,
the SQLite backend from its writer thread. Each write returns an :class:`Applied` record
(old and new tree, version, stored bytes) that the backend persists and then publishes to
watchers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import bad_request
from ._paths import Path, join
from ._tree import Secret, Tree, delete_at, encode_tree, render, seal_leaves, set_at
from .keys import Cipher

__all__ = ["Applied", "Documents", "render_at"]

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()

Loader = Callable[[str], tuple[Tree, int]]


@dataclass(frozen=True, slots=True)
class Applied:
    """One write, done: the namespace's tree before and after, and its new version."""

    namespace: str
    at: Path
    old: Tree
    new: Tree
    version: int
    deleted: bool
    stored: bytes


def _aad(namespace: str, at: Path) -> bytes:
    return f"{namespace}\x00{join(at)}".encode()


class Documents:
    """Namespace -> (tree, version). ``load`` fetches a namespace not seen yet (the SQLite
    backend reads it from disk); without it unknown namespaces start empty at version 0."""

    def __init__(self, cipher: Cipher, load: Loader | None = None) -> None:
        self._cipher = cipher
        self._load = load
        self._docs: dict[str, tuple[Tree, int]] = {}

    def current(self, namespace: str) -> tuple[Tree, int]:
        """The tree and version of ``namespace``."""
        doc = self._docs.get(namespace)
        if doc is None:
            doc = self._load(namespace) if self._load is not None else ({}, 0)
            self._docs[namespace] = doc
        return doc

    def restore(self, namespace: str, doc: tuple[Tree, int]) -> None:
        """Put back a namespace as it was (a failed transaction)."""
        self._docs[namespace] = doc

    def set(self, namespace: str, at: Path, value: Any, secret: bool) -> Applied:
        """Merge or replace ``value`` (already normalized) at ``at``."""
        if not at and not isinstance(value, dict):
            raise bad_request("config", "the whole document can only be set to an object")
        if secret:
            value = seal_leaves(value, at, self._seal(namespace))
        old, version = self.current(namespace)
        new = set_at(old, at, value)
        return self._commit(namespace, at, old, new, version, deleted=False)

    def delete(self, namespace: str, at: Path) -> Applied | None:
        """Remove the node at ``at``; ``None`` when there was none."""
        old, version = self.current(namespace)
        new = delete_at(old, at)
        if new is None:
            return None
        return self._commit(namespace, at, old, new, version, deleted=True)

    def _commit(
        self, namespace: str, at: Path, old: Tree, new: Tree, version: int, deleted: bool
    ) -> Applied:
        stored = encode_tree(new)  # raises too_large before anything changes
        self._docs[namespace] = (new, version + 1)
        return Applied(namespace, at, old, new, version + 1, deleted, stored)

    def _seal(self, namespace: str) -> Callable[[Any, Path], Secret]:
        cipher = self._cipher

        def seal(leaf: Any, at: Path) -> Secret:
            return Secret(cipher.seal(_json_encoder.encode(leaf), _aad(namespace, at)))

        return seal


def render_at(tree: Tree, namespace: str, at: Path, cipher: Cipher | None) -> Any:
    """A plain copy of the node at ``at`` (``None`` if absent), secrets revealed with
    ``cipher`` when given, else masked."""
    node: Any = tree
    for key in at:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if cipher is None:
        return render(node, at, None)

    def reveal(secret: Secret, where: Path) -> Any:
        return _json_decoder.decode(cipher.open(secret.blob, _aad(namespace, where)))

    return render(node, at, reveal)
