"""A small name -> builder registry shared by models, datasets and tasks (timm-style)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from medbench.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One registered builder and the metadata it was registered with."""

    name: str
    builder: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Maps names to builders; duplicate names raise, unknown names suggest close ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable:
        """Decorator: ``@MODELS.register(min_input_size=32)`` registers under the function name."""

        def decorator(builder: Callable) -> Callable:
            key = name or builder.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} '{key}' is already registered")
            self._entries[key] = Entry(key, builder, dict(meta))
            return builder

        return decorator

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'{hint} (known: {', '.join(sorted(self._entries))})"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_registration_order(self) -> list[str]:
        """Names in the order they were registered (medbench's own before plugins')."""
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[k] for k in self.names())
