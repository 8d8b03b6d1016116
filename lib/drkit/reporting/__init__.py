"""Reporting: the operator's DR report from the bucket's evidence (backups, verifications, audit events), with charts."""
