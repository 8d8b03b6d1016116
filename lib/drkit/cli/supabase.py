"""`drkit supabase recreate`: a Supabase project rebuilt from its config backup, planned, then applied step by step.

Without `--apply` it prints every step and changes nothing. With `--apply` (and DRKIT_SUPABASE_TOKEN)
it runs the API steps in order: the project (its database password generated into `--db-pass-file`,
0600, never printed), Auth and API settings, network restrictions, the Edge Functions from their saved
bundles (each checked against its SHA-256 first). Each finished step is recorded in a signed record
(`state/supabase/recreate/<name>.json`) and an audit event, so a rerun continues where the last one
stopped; a project of that name that an interrupted run created is found and reused, never created
twice. What only a person can do (secret values, which were never stored) and the commands that bring
the data back are listed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from drkit.cli import common
from drkit.configbackup import catalog, extract
from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError, DrkitError, SupabaseApiError
from drkit.core.fields import Fields
from drkit.core.secret import Secret
from drkit.policy import layout
from drkit.storage import audit, records
from drkit.storage.records import Record
from drkit.storage.transfer import VerifyingReader, explain_crypto_failure
from drkit.supabase import plan
from drkit.supabase.api import DEFAULT_URL, SupabaseApi

READY_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class RecreateState(Record):
    """How far `drkit supabase recreate --apply` got for one new project."""

    TYPE: ClassVar[str] = "supabase-recreate"
    WRITERS: ClassVar[tuple[str, ...]] = ("operator",)

    name: str
    region: str
    ref: str
    backup_id: str
    done: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "region": self.region, "ref": self.ref, "backup_id": self.backup_id,
                "done": list(self.done)}

    @classmethod
    def from_fields(cls, f: Fields) -> RecreateState:
        return cls(f.text("name", max_len=100), f.text("region", max_len=40), f.text("ref", max_len=40),
                   f.text("backup_id", max_len=40), tuple(f.texts("done", max_items=500)))


def _load(folder: Path) -> plan.Saved:
    def read(name: str, default: Any) -> Any:
        path = folder / name
        return json.loads(path.read_text()) if path.exists() else default

    return plan.Saved(read("project.json", {}), read("organization.json", {}), read("auth-config.json", {}),
                      list(read("auth-secrets.json", [])), read("api-settings.json", {}),
                      read("network-restrictions.json", {}), list(read("storage-buckets.json", [])),
                      [str(s["name"]) for s in read("secret-names.json", [])], list(read("functions.json", [])),
                      read("provider-backups.json", {}))


def _source(manifest: Mapping[str, Any], wanted: str | None) -> str:
    found = [s["name"] for s in manifest.get("sources", []) if s.get("type") == "supabase" and s.get("status") == "ok"]
    if wanted:
        if wanted not in found:
            raise ConfigError(f"config backup {manifest['id']} has no successful supabase source {wanted!r} "
                              f"(it has: {', '.join(found) or 'none'})")
        return wanted
    if len(found) != 1:
        raise ConfigError(f"config backup {manifest['id']} has {len(found)} successful supabase sources "
                          f"({', '.join(found) or 'none'}): name one with --source" if found else
                          f"config backup {manifest['id']} has no successful supabase source: add one to "
                          "DRKIT_CONFIG_SOURCES ({\"type\": \"supabase\", \"project_ref\": …}) and run config-backup")
    return str(found[0])


def cmd_recreate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = common.open_store(env, args)
    identities = common.load_identities(args, env)
    entry = catalog.find(store, args.backup)
    manifest = catalog.read_manifest(store, entry)
    source = _source(manifest, args.source)
    con = common.console()
    with tempfile.TemporaryDirectory(prefix="drkit-recreate-") as tmp:
        raw = store.open_read(entry.data_key)
        reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
        try:
            extract.extract(reader, manifest["files"], identities, Path(tmp), only=(source,),
                            explain=lambda: explain_crypto_failure(reader, "nothing was changed"))
        finally:
            raw.close()
        folder = Path(tmp) / source
        saved = _load(folder)
        name = args.name or f"{saved.project.get('name') or source}-{args.region}"
        steps = plan.build(saved, region=args.region, name=name, database=args.db, files_source=args.files_source,
                           backup_id=entry.id)
        now = dt.datetime.now(dt.UTC)
        ledger = common.open_store(env)[1]  # progress is kept in the primary bucket (the copy is never written)
        state = _progress(ledger, name, now, con)
        table = Table("#", "step", "how", "state", title=f"rebuild of Supabase project {saved.project.get('ref')} "
                                                          f"as {name} in {args.region}")
        for i, step in enumerate(steps, 1):
            done = state is not None and step.key in state.done
            table.add_row(str(i), step.title, "by hand" if step.manual else f"{step.method} {step.path}",
                          "done" if done else ("-" if step.manual else "to do"))
        con.print(table)
        if not args.apply:
            con.print("plan only: nothing was changed. --apply --db-pass-file PATH runs the API steps (token: "
                      "DRKIT_SUPABASE_TOKEN); a rerun continues where the last one stopped")
            return 0
        state = _apply(ledger, env, args, steps, folder, name, entry.id, state, con)
    con.print(f"[green]project {state.name} ({state.ref}) in {state.region}: every API step done[/green]. By hand, "
              "in this order:")
    for step in steps:
        if step.manual:
            con.print("  - " + step.title.replace("NEW_REF", state.ref).replace("DB_PASS_FILE", args.db_pass_file))
    return 0


def _apply(store: Any, env: Mapping[str, str], args: argparse.Namespace, steps: list[plan.Step], folder: Path,
           name: str, backup_id: str, state: RecreateState | None, con: Any) -> RecreateState:
    if not args.db_pass_file:
        raise ConfigError("--apply needs --db-pass-file PATH: the new database's password is written there (0600), "
                          "never shown")
    token = str(env.get("DRKIT_SUPABASE_TOKEN", "")).strip()
    if not token:
        raise ConfigError("DRKIT_SUPABASE_TOKEN is not set: a Supabase personal access token of a member of the "
                          "organization (Account > Access Tokens)")
    api = SupabaseApi(Secret(token), url=args.api_url, deadline=Deadline(None))
    password = _password(Path(args.db_pass_file))
    for step in steps:
        if step.manual or (state is not None and step.key in state.done):
            continue
        try:
            if step.key == "project":
                state = _project(api, step, name, args.region, backup_id, password, state)
            else:
                assert state is not None
                _run(api, step, state.ref, folder)
        except SupabaseApiError as exc:
            where = f"the project {state.ref} exists" if state else "no project was created"
            raise SupabaseApiError(f"step {step.key!r} failed: {exc}. {where}; run the same command again to "
                                   "continue from this step", http_status=exc.http_status) from None
        state = replace(state, done=(*state.done, step.key))
        con.print(f"  done: {step.title}")
        try:
            records.write(store, layout.recreate_key(name), state, dt.datetime.now(dt.UTC))
            audit.record(store, "cli", "supabase.recreate.step", {"name": name, "ref": state.ref, "step": step.key,
                                                                   "backup_id": backup_id})
        except DrkitError as exc:  # a rerun still finds the project by name; the other steps are safe to repeat
            con.print(f"[yellow]  not recorded in the bucket ({exc}): a rerun repeats this step[/yellow]")
    assert state is not None
    return state


def _progress(store: Any, name: str, now: dt.datetime, con: Any) -> RecreateState | None:
    """What an earlier --apply recorded (None when nothing, or when the primary bucket cannot say)."""
    try:
        got = records.read(store, layout.recreate_key(name), RecreateState, now)
    except DrkitError as exc:
        con.print(f"[yellow]earlier progress not read ({exc}): --apply finds the project by its name[/yellow]")
        return None
    return got.value if got else None


def _password(path: Path) -> Secret:
    """The new database's password: the one in `path` (a rerun), or a new one written there (0600) first."""
    if path.exists():
        value = path.read_text().strip()
        if len(value) < 16:
            raise ConfigError(f"{path} holds no usable database password (16 characters or more)")
        return Secret(value)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return Secret(value)


def _project(api: SupabaseApi, step: plan.Step, name: str, region: str, backup_id: str, password: Secret,
             state: RecreateState | None) -> RecreateState:
    """The new project: the recorded one, one of that name an interrupted run created, or a new one."""
    ref = state.ref if state else next((str(p["ref"]) for p in api.projects() if p.get("name") == name), "")
    if not ref:
        ref = str(api.create_project({**step.body, "db_pass": password.reveal()})["ref"])
    deadline = time.monotonic() + READY_TIMEOUT_S
    wait = 1.0
    while (status := str(api.project(ref).get("status"))) != plan.PROJECT_READY:
        if time.monotonic() > deadline:
            raise SupabaseApiError(f"project {ref} is still {status} after {READY_TIMEOUT_S / 60:.0f} min")
        time.sleep(wait)
        wait = min(wait * 2, 15.0)
    return RecreateState(name, region, ref, backup_id)


def _run(api: SupabaseApi, step: plan.Step, ref: str, folder: Path) -> None:
    path = step.path.replace("{ref}", ref)
    if step.bundle:
        bundle = (folder / step.bundle).read_bytes()
        meta = json.loads((folder / "functions.json").read_text())
        want = next((f.get("bundle_sha256") for f in meta if f.get("bundle") == step.bundle), None)
        if hashlib.sha256(bundle).hexdigest() != want:
            raise SupabaseApiError(f"the saved bundle {step.bundle} does not match its SHA-256: not deployed")
        ctype = "application/vnd.denoland.eszip"
        api.deploy_function(ref, dict(step.params), bundle, ctype)
    elif step.method == "PATCH":
        api.patch(path, step.body, step.title)
    else:
        api.post(path, step.body, step.title)


def register(root: Any) -> None:
    g = root.add_parser("supabase", help="a Supabase project outside its database: rebuild it from its config "
                                         "backup").add_subparsers(dest="command", required=True)
    c = g.add_parser("recreate", help="the steps that rebuild a Supabase project (settings, Edge Functions) in a "
                                      "region; --apply runs them, resumably")
    c.add_argument("--backup", default="latest", help="the config backup to rebuild from (an id, or latest: the "
                                                      "default); --from copy reads it from the off-site copy")
    c.add_argument("--source", help="the supabase source's name in that backup (when it has more than one)")
    c.add_argument("--region", required=True, help="where the new project goes, e.g. eu-central-1")
    c.add_argument("--name", help="the new project's name (default: <old name>-<region>)")
    c.add_argument("--db", help="the DRKIT_DATABASES name of the project's database, for the restore command")
    c.add_argument("--files-source", help="the storage source whose files go back, for the files command")
    c.add_argument("--apply", action="store_true", help="run the API steps (DRKIT_SUPABASE_TOKEN); default: plan only")
    c.add_argument("--db-pass-file", help="with --apply: the new database's password is written here (0600) or "
                                          "read from here on a rerun")
    c.add_argument("--api-url", default=DEFAULT_URL, help="the Management API (default: %(default)s)")
    c.add_argument("--identity", help="age identity file (default: DRKIT_AGE_IDENTITY)")
    common.add_repo_args(c)
    c.set_defaults(fn=cmd_recreate)
