"""Cryptography: age encryption of backups, and minisign-format signatures on what drkit writes."""
