"""`drkit init` and `drkit keygen`: a new deployment's .env and keys, private files written 0600."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

from drkit.cli.common import write_private
from drkit.core.errors import ConfigError
from drkit.crypto import encryption


def signing_keys(roles: list[str]) -> tuple[dict[str, str], str]:
    """New signing keys: the .env lines (DRKIT_SIGNING_KEY_<ROLE>) and the DRKIT_TRUSTED_KEYS entries."""
    from drkit.crypto import signing
    from drkit.platform import envvars

    lines: dict[str, str] = {}
    trusted = []
    for role in roles:
        secret, public = signing.generate()
        lines[envvars.per_function_name("DRKIT_SIGNING_KEY", role)] = secret
        trusted.append(f"{role}={public}")
    return lines, " ".join(trusted)


def _roles(asked: str) -> list[str]:
    from drkit.core import suggest
    from drkit.platform.identity import ROLES

    if asked == "all":
        return list(ROLES)
    wanted = [r.strip() for r in asked.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise ConfigError(suggest.unknown("role", unknown, [*ROLES, "all"]))
    return wanted


def cmd_keygen(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.crypto import signing

    now = dt.datetime.now(dt.UTC).isoformat()
    if getattr(args, "role", None) and not args.signing:
        raise ConfigError("--for names whose signing key to make: use it with --signing")
    if args.signing and getattr(args, "role", None):
        roles = _roles(args.role)
        out = Path(args.out or f"drkit-signing-{'keys' if len(roles) > 1 else roles[0]}.env")
        lines, trusted = signing_keys(roles)
        write_private(out, f"# drkit signing keys, created {now}: add these lines to the .env\n"
                           + "".join(f"{k}={v}\n" for k, v in lines.items())
                           + f"# and these entries to DRKIT_TRUSTED_KEYS (keep the old ones during a rotation):\n"
                             f"# {trusted}\n")
        print(f"signing key{'s' if len(roles) > 1 else ''} for {', '.join(roles)} written to {out} (mode 0600): add "
              "its lines to the .env (each function gets only its own at deploy), then add to DRKIT_TRUSTED_KEYS:")
        print(trusted)
        return 0
    out = Path(args.out or ("drkit-signing.key" if args.signing else "drkit-identity.txt"))
    if args.signing:
        secret, public = signing.generate()
        write_private(out, f"# drkit signing key, created {now}\n# drkit trusted key: {public}\n{secret}\n")
        print(f"signing key written to {out} (mode 0600). For one function or the operator, --for FN prints the .env")
        print("line and the role=RW… trust entry instead; a key without a role is trusted for db-backup, config-backup")
        print(f"and operator only. Standard tools: minisign -V -P {public}")
        print(public)
        return 0
    identity, recipient = encryption.generate_identity()
    write_private(out, f"# created: {now}\n# public key: {recipient}\n{identity}\n")
    print(f"identity written to {out} (mode 0600). Keep it OFF the deployment: store it in your password manager")
    print("and an offline copy. Only restore needs it. Put the public key in DRKIT_AGE_RECIPIENTS:")
    print(recipient)
    return 0


def cmd_init(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """A new deployment's `.env` (0600) from .env.example, with fresh keys; the private keys' copies outside
    the checkout (0600 files in a 0700 folder)."""
    import re

    target = Path(args.env_file or ".env")
    if target.exists():
        raise ConfigError(f"{target} exists; refusing to overwrite it (drkit init is for a new deployment)")
    example = Path(__file__).resolve().parents[3] / ".env.example"
    keys_dir = Path(args.keys_dir).expanduser() if args.keys_dir else Path.home() / ".config" / "drkit"
    repo = example.parent.resolve()
    if keys_dir.resolve() == repo or repo in keys_dir.resolve().parents:
        raise ConfigError(f"{keys_dir} is inside the checkout: private keys belong outside it (--keys-dir)")
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    from drkit.platform.identity import ROLES

    now = dt.datetime.now(dt.UTC).isoformat()
    identity, recipient = encryption.generate_identity()
    keys, trusted = signing_keys(list(ROLES))
    identity_file, signing_file = keys_dir / "drkit-identity.txt", keys_dir / "drkit-signing.keys"
    pins = "".join(f"# drkit trusted key: {entry}\n" for entry in trusted.split()
                   if entry.startswith(("db-backup=", "config-backup=", "operator=")))
    write_private(identity_file, f"# created: {now}\n# public key: {recipient}\n{pins}{identity}\n")
    write_private(signing_file, f"# drkit signing keys, created {now}\n# DRKIT_TRUSTED_KEYS={trusted}\n"
                                + "".join(f"{k}={v}\n" for k, v in keys.items()))
    values = {"DRKIT_AGE_RECIPIENTS": recipient, "DRKIT_AGE_IDENTITY": identity, **keys, "DRKIT_TRUSTED_KEYS": trusted}
    text = example.read_text()
    for name, value in values.items():
        text, n = re.subn(rf"(?m)^#? ?{name}=.*$", f"{name}={value}", text, count=1)
        if n == 0:
            text += f"\n{name}={value}\n"
    write_private(target, text)
    print(f"wrote {target} (mode 0600) with a new age key pair and one signing key per function and for you; "
          "copies of the private keys:")
    print(f"  {identity_file}  (restores: keep an offline copy, e.g. in your password manager)")
    print(f"  {signing_file}")
    print("next: edit the bucket, Spaces keys, databases and tokens in it, then")
    print("  ./scripts/drkit config check --connect && ./scripts/deploy")
    return 0
