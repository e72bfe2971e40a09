"""Which table columns fit a terminal width. Ids are never cut (a cut id cannot be copied into
`wattlab show`); other columns are dropped whole, least useful first and energy figures last,
rather than squeezed into ellipses that read the same."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def fit_columns(
    widths: Mapping[str, int],
    drop_order: Sequence[str],
    available: int,
    per_column: int = 3,
    frame: int = 1,
) -> list[str]:
    """The columns of `widths` (kept in its order) that fit in `available` cells.

    Columns named in `drop_order` are dropped, first named first, until the rest fit; the others
    are always kept. `per_column`: cells a column takes beside its content (padding, a border);
    `frame`: cells the table takes once (rich's default box: 3 and 1)."""
    keep = list(widths)

    def total() -> int:
        return frame + sum(widths[c] + per_column for c in keep)

    for name in drop_order:
        if total() <= available:
            break
        if name in keep:
            keep.remove(name)
    return keep
