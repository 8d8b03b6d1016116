"""What to do next when a restore statement fails for one of the known reasons (pure: error text -> advice).

pg_dump writes every archive for a restore with an empty `search_path` and in dependency order, not
in the order the application wrote its rows. Two kinds of source objects break under that, and the
fix is in the source, not in drkit (Supabase's restore guide and supabase/cli issues have both):
functions that name objects without their schema, and CHECK constraints that are not immutable
(they read other tables or the clock). The advice names the fix; the restore already rolled back.
"""

from __future__ import annotations

import re

_MISSING = re.compile(r'ERROR:\s+(?:function|relation|operator|type) (\S+?)(?:\(.*?\))? does not exist')
_IN_FUNCTION = re.compile(r'(?:PL/pgSQL|SQL) function "?([\w.]+)', re.I)
_CHECK = re.compile(r'violates check constraint "([^"]+)"')

SEARCH_PATH = ("a function that ran during the restore names {what} without its schema, and pg_dump restores with "
               "an empty search_path: qualify the names in {func} (public.x) or give it its own search_path "
               "(ALTER FUNCTION {func} SET search_path = public, pg_temp) in the source, take a new backup "
               "(drkit backup), and restore that")
CHECK = ("CHECK constraint {name} failed while the rows were loading: pg_dump assumes CHECK constraints are "
         "immutable, and this one depends on other rows, tables or the clock, so it fails in dump order. "
         "Replace it with a trigger in the source (or make the function it calls immutable in fact), take a new "
         "backup, and restore that")


def advice(error: str) -> str | None:
    """Advice for a restore error, or None when it is not one of the known kinds."""
    m = _MISSING.search(error)
    if m and (_IN_FUNCTION.search(error) or "search_path" in error):
        f = _IN_FUNCTION.search(error)
        return SEARCH_PATH.format(what=m.group(1), func=f.group(1) if f else "the function")
    if m and "CONTEXT" in error and "COPY" in error:
        return SEARCH_PATH.format(what=m.group(1), func="the function")
    c = _CHECK.search(error)
    if c:
        return CHECK.format(name=c.group(1))
    return None
