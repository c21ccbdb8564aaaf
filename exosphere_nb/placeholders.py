"""The `${{ ... }}` template language of node inputs.

Two forms exist: `${{ <identifier>.outputs.<field> }}` reads an output of an upstream node and
`${{ store.<key> }}` reads the run store. Everything else is verbatim text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from exosphere_nb.errors import PlaceholderError

__all__ = ["Ref", "Template", "parse"]

_OPEN = "${{"
_CLOSE = "}}"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_EXPECTED = "expected '${{ <identifier>.outputs.<field> }}' or '${{ store.<key> }}'"
# Long snippets (say a whole document with a stray `${{`) would drown the message.
_SNIPPET_MAX = 80


@dataclass(frozen=True, slots=True)
class Ref:
    identifier: str | None  # None marks a store ref; `field` is then the store key
    field: str

    @property
    def is_store(self) -> bool:
        return self.identifier is None

    def __str__(self) -> str:
        if self.identifier is None:
            return f"${{{{ store.{self.field} }}}}"
        return f"${{{{ {self.identifier}.outputs.{self.field} }}}}"


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Ref, ...]
    # Derived once here because render() runs per input per state; excluded from eq/hash/repr.
    _refs: tuple[Ref, ...] = field(init=False, repr=False, compare=False)
    _ref_at: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _const: str | None = field(init=False, repr=False, compare=False)
    _single: Ref | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ref_at = tuple(i for i, p in enumerate(self.parts) if isinstance(p, Ref))
        refs = tuple(self.parts[i] for i in ref_at)
        object.__setattr__(self, "_ref_at", ref_at)
        object.__setattr__(self, "_refs", refs)
        object.__setattr__(self, "_const", None if refs else "".join(self.parts))  # type: ignore[arg-type]
        object.__setattr__(self, "_single", refs[0] if len(self.parts) == 1 and refs else None)

    @property
    def refs(self) -> tuple[Ref, ...]:
        return self._refs

    @property
    def output_refs(self) -> tuple[Ref, ...]:
        return tuple(r for r in self._refs if r.identifier is not None)

    @property
    def store_refs(self) -> tuple[Ref, ...]:
        return tuple(r for r in self._refs if r.identifier is None)

    @property
    def is_constant(self) -> bool:
        return self._const is not None

    def render(self, resolve: Callable[[Ref], str]) -> str:
        if self._const is not None:
            return self._const
        if self._single is not None:
            return resolve(self._single)
        buf = list(self.parts)
        for i in self._ref_at:
            buf[i] = resolve(buf[i])  # type: ignore[arg-type]
        return "".join(buf)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return "".join(p if isinstance(p, str) else str(p) for p in self.parts)


def parse(text: str) -> Template:
    # Checked outside the cache: unhashable values (lists, dicts) would otherwise raise TypeError there.
    if not isinstance(text, str):
        raise PlaceholderError(f"input value must be a string, got {type(text).__name__}")
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Template:
    start = text.find(_OPEN)
    if start < 0:
        return Template((text,) if text else ())
    parts: list[str | Ref] = []
    pos = 0
    while start >= 0:
        if start > pos:
            parts.append(text[pos:start])
        end = text.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            raise PlaceholderError(
                f"unterminated placeholder {_snippet(text[start:])} at offset {start}: no closing '}}}}'"
            )
        pos = end + len(_CLOSE)
        parts.append(_ref(text[start + len(_OPEN) : end], text[start:pos], start))
        start = text.find(_OPEN, pos)
    if pos < len(text):
        parts.append(text[pos:])
    return Template(tuple(parts))


def _ref(inner: str, snippet: str, offset: int) -> Ref:
    body = inner.strip()
    if not body:
        raise PlaceholderError(f"empty placeholder {_snippet(snippet)} at offset {offset}: {_EXPECTED}")
    names = body.split(".")
    if len(names) == 2 and names[0] == "store":
        return Ref(None, _name(names[1], "store key", snippet, offset))
    if len(names) == 3 and names[1] == "outputs":
        if names[0] == "store":
            # No node may be called `store`, so this can only be a mistyped store ref.
            raise PlaceholderError(
                f"bad placeholder {_snippet(snippet)} at offset {offset}: 'store' is the run store, "
                "not a node; expected '${{ store.<key> }}'"
            )
        return Ref(_name(names[0], "identifier", snippet, offset), _name(names[2], "field", snippet, offset))
    raise PlaceholderError(f"bad placeholder {_snippet(snippet)} at offset {offset}: {_EXPECTED}")


def _name(name: str, what: str, snippet: str, offset: int) -> str:
    if _NAME.fullmatch(name) is None:
        raise PlaceholderError(
            f"bad placeholder {_snippet(snippet)} at offset {offset}: {what} {name!r} must match "
            f"[A-Za-z_][A-Za-z0-9_-]*"
        )
    return name


def _snippet(snippet: str) -> str:
    if len(snippet) > _SNIPPET_MAX:
        snippet = snippet[: _SNIPPET_MAX - 3] + "..."
    return repr(snippet)
