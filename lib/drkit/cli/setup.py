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


def cmd_keygen(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.crypto import signing

    now = dt.datetime.now(dt.UTC).isoformat()
    out = Path(args.out or ("drkit-signing.key" if args.signing else "drkit-identity.txt"))
    if args.signing:
        secret, public = signing.generate()
        write_private(out, f"# drkit signing key, created {now}\n# drkit trusted key: {public}\n{secret}\n")
        print(f"signing key written to {out} (mode 0600). Give it to the functions that write backups only:")
        print("DRKIT_SIGNING_KEY (db-backup, config-backup). Trust its public key everywhere else:")
        print("DRKIT_TRUSTED_KEYS (restore-verify, dns-failover, health-probe, your .env), or a line")
        print(f"'# drkit trusted key: {public}' in your identity file. Standard tools: minisign -V -P {public}")
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

    from drkit.crypto import signing

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
    now = dt.datetime.now(dt.UTC).isoformat()
    identity, recipient = encryption.generate_identity()
    secret, public = signing.generate()
    identity_file, signing_file = keys_dir / "drkit-identity.txt", keys_dir / "drkit-signing.key"
    write_private(identity_file, f"# created: {now}\n# public key: {recipient}\n# drkit trusted key: {public}\n"
                                 f"{identity}\n")
    write_private(signing_file, f"# drkit signing key, created {now}\n# drkit trusted key: {public}\n{secret}\n")
    values = {"DRKIT_AGE_RECIPIENTS": recipient, "DRKIT_AGE_IDENTITY": identity, "DRKIT_SIGNING_KEY": secret,
              "DRKIT_TRUSTED_KEYS": public}
    text = example.read_text()
    for name, value in values.items():
        text, n = re.subn(rf"(?m)^#? ?{name}=.*$", f"{name}={value}", text, count=1)
        if n == 0:
            text += f"\n{name}={value}\n"
    write_private(target, text)
    print(f"wrote {target} (mode 0600) with a new age key pair and signing key; copies of the private keys:")
    print(f"  {identity_file}  (restores: keep an offline copy, e.g. in your password manager)")
    print(f"  {signing_file}")
    print("next: edit the bucket, Spaces keys, databases and tokens in it, then")
    print("  ./scripts/drkit config check --connect && ./scripts/deploy")
    return 0
