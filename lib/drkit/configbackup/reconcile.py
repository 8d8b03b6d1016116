"""Storage reconciliation: `storage.objects` rows against the files a storage source listed (after each files backup).

Supabase keeps a file's bytes in Storage and its row in the database, and backs up neither with the
other: a database restore brings rows whose files may be gone (deleted files are gone for good), and
a files backup holds files no row points at. With `database_env` on a `storage` source (a variable
holding a read-only connection string of the project's database), config-backup compares the two
right after it listed the files:

* rows without a file: the database names a file that Storage does not have (an upload that never
  finished, a file deleted behind the API): after a restore, that object is a broken link;
* files without a row: Storage holds a file no row points at (a row deleted behind the API): it is
  backed up, but no restore of the database will show it;
* size differences between the row's metadata and the file.

The lists go into the encrypted archive (`<source>/reconcile.json`: object names are the project's
data); counts go into the signed manifest, the run's result and the DR report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from drkit.configbackup.archive import SourceError
from drkit.core.secret import Secret

EXAMPLES = 2000  # names kept per list in the archive (counts are always exact)
QUERY = ("SELECT bucket_id, name, (metadata ->> 'size')::bigint FROM storage.objects "
         "WHERE (%(buckets)s::text[] IS NULL OR bucket_id = ANY(%(buckets)s)) AND name LIKE %(prefix)s "
         "ORDER BY 1, 2")


def compare(rows: Iterable[tuple[str, str, int | None]], files: Iterable[tuple[str, str, int]]) -> dict[str, Any]:
    """Rows (bucket, name, size from metadata) against files (bucket, key, size) (pure)."""
    by_row = {(b, n): s for b, n, s in rows}
    by_file = {(b, k): s for b, k, s in files}
    missing = sorted(set(by_row) - set(by_file))
    orphans = sorted(set(by_file) - set(by_row))
    sizes = sorted(k for k in set(by_row) & set(by_file) if by_row[k] is not None and by_row[k] != by_file[k])
    return {"rows": len(by_row), "files": len(by_file), "rows_without_file": len(missing),
            "files_without_row": len(orphans), "size_differs": len(sizes),
            "lists": {"rows_without_file": [f"{b}/{n}" for b, n in missing[:EXAMPLES]],
                      "files_without_row": [f"{b}/{k}" for b, k in orphans[:EXAMPLES]],
                      "size_differs": [f"{b}/{k}" for b, k in sizes[:EXAMPLES]]}}


def summary(result: Mapping[str, Any]) -> str:
    if not result["rows_without_file"] and not result["files_without_row"] and not result["size_differs"]:
        return f"every one of {result['rows']} storage.objects rows has its file, and every file its row"
    parts = [f"{result['rows_without_file']} rows without a file (broken after a restore)"
             if result["rows_without_file"] else "",
             f"{result['files_without_row']} files without a row" if result["files_without_row"] else "",
             f"{result['size_differs']} size differences" if result["size_differs"] else ""]
    return "; ".join(p for p in parts if p)


def read_rows(url: Secret, buckets: list[str] | None, prefix: str, label: str) -> list[tuple[str, str, int | None]]:
    """storage.objects rows, read-only, bounded in time; the connection string is never in a message."""
    import psycopg

    try:
        with psycopg.connect(url.reveal(), connect_timeout=10, autocommit=False,
                             options="-c statement_timeout=60000 -c default_transaction_read_only=on") as conn:
            cur = conn.execute(QUERY, {"buckets": buckets, "prefix": prefix.replace("%", r"\%") + "%"})
            return [(str(b), str(n), None if s is None else int(s)) for b, n, s in cur.fetchall()]
    except psycopg.Error as exc:
        detail = (exc.diag.message_primary if getattr(exc, "diag", None) else None) or type(exc).__name__
        raise SourceError(f"reconciliation: cannot read storage.objects with {label}: {detail}") from None
