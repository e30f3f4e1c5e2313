"""Spans' parent links as a forest that every walk can trust: cycles broken, depth bounded.

Spans arrive from agents over the bus; nothing guarantees their ``parent_id`` links form a tree. A span that names
itself as its parent, or a longer loop (A -> B -> A), would make a naive walk (up to the root, or down through
the children) run forever and grow without bound. ``SpanForest`` is built once from the spans a view shows: a span
whose parent is not among them is a root, and every span on a cycle becomes a root too (its parent link is
dropped and counted, so the view can say so). Walks over the forest visit each span at most once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mlmodelscope.core.tracing.spans import Span

# Deeper nesting than this is drawn at this depth (MLModelScope's own stacks are 4-5 levels deep).
MAX_DEPTH = 32


@dataclass(frozen=True)
class SpanForest:
    """``parents`` maps each span id to its parent id within the forest (0: a root)."""

    parents: dict[int, int]
    cycle_span_ids: frozenset[int]
    children: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, spans: Iterable[Span]) -> SpanForest:
        linked = {span.span_id: span.parent_id for span in spans}
        parents = {span_id: (parent if parent in linked else 0) for span_id, parent in linked.items()}
        on_cycles = _cycle_members(parents)
        for span_id in on_cycles:
            parents[span_id] = 0
        children: dict[int, list[int]] = {}
        for span_id, parent in parents.items():
            if parent:
                children.setdefault(parent, []).append(span_id)
        return cls(parents=parents, cycle_span_ids=frozenset(on_cycles), children=children)

    def depths(self) -> dict[int, int]:
        """Nesting depth of every span (roots 0), at most ``MAX_DEPTH``."""
        depths: dict[int, int] = {}
        for span_id in self.parents:
            path: list[int] = []
            current = span_id
            while current not in depths and current != 0:
                path.append(current)
                current = self.parents[current]
            base = -1 if current == 0 else depths[current]
            for offset, node in enumerate(reversed(path), start=1):
                depths[node] = min(base + offset, MAX_DEPTH)
        return depths

    def descendants(self, roots: Sequence[int]) -> Iterator[int]:
        """``roots`` (those in the forest) and everything under them, each span once."""
        seen: set[int] = set()
        stack = [root for root in roots if root in self.parents]
        while stack:
            span_id = stack.pop()
            if span_id in seen:
                continue
            seen.add(span_id)
            yield span_id
            stack.extend(child for child in self.children.get(span_id, ()) if child not in seen)

    def cycle_note(self) -> str | None:
        """A sentence for the reader when cycles were broken, else None."""
        if not self.cycle_span_ids:
            return None
        count = len(self.cycle_span_ids)
        example = min(self.cycle_span_ids)
        return (
            f"{count} span{'s' if count != 1 else ''} (e.g. span {example}) had parent links forming a cycle "
            "(a span that is its own ancestor); they are shown as roots"
        )


def _cycle_members(parents: dict[int, int]) -> set[int]:
    """The span ids that lie on a cycle of ``parents`` (each id has exactly one parent, 0 for none)."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    members: set[int] = set()
    for start in parents:
        if start in state:
            continue
        path: list[int] = []
        current = start
        while current != 0 and current not in state:
            state[current] = 1
            path.append(current)
            current = parents[current]
        if current != 0 and state[current] == 1:
            members.update(path[path.index(current) :])
        for node in path:
            state[node] = 2
    return members
