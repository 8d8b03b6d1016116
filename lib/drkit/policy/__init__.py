"""Pure policy: retention, the bucket's key layout, SQL checks, DNS records, drift (no I/O, no clock)."""
