"""Messages for a name that is not known, with the closest known one ("did you mean 'odoo'?")."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def unknown(kind: str, names: Sequence[str], known: Sequence[str]) -> str:
    """`unknown database 'odo' (did you mean 'odoo'?); configured: odoo, superset`."""
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        parts.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown {kind} {', '.join(parts)}; configured: {', '.join(known) or 'none'}"
