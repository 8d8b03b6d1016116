"""`drkit keygen`: the age identity and the signing key of a new deployment, written 0600."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from drkit.cli.common import write_private
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
