"""The off-site copy on the stand-in S3 server: an operator's .env lines for it, and its bucket (with Object Lock)."""

from __future__ import annotations


def copy_env(s3_endpoint: str, bucket: str, secret: str) -> dict[str, str]:
    """What an operator's .env holds for the off-site copy: the copy's write key (backup-copy only), its Read
    key (restore-verify; the operator's restores), on the stand-in S3 server."""
    copy = f"{bucket[:50]}-copy"
    return {"DRKIT_COPY_BUCKET": copy, "DRKIT_COPY_ENDPOINT": s3_endpoint, "DRKIT_COPY_KEY": "copy-write-key",
            "DRKIT_COPY_SECRET": secret + "-copy", "DRKIT_COPY_LOCK_DAYS": "2",
            "DRKIT_COPY_READ_KEY": "copy-read-key", "DRKIT_COPY_READ_SECRET": secret + "-read"}


def verify_copy_env(env: dict[str, str]) -> dict[str, str]:
    """restore-verify's view of the copy (its Read key): with it, the weekly proof alternates between the two."""
    return {"DRKIT_OFFSITE_BUCKET": env["DRKIT_COPY_BUCKET"], "DRKIT_OFFSITE_ENDPOINT": env["DRKIT_COPY_ENDPOINT"],
            "DRKIT_OFFSITE_KEY": env["DRKIT_COPY_READ_KEY"], "DRKIT_OFFSITE_SECRET": env["DRKIT_COPY_READ_SECRET"]}


def copy_bucket(env: dict[str, str]) -> str:
    """Create the off-site copy's bucket of `env` on the stand-in, with Object Lock (idempotent)."""
    import boto3

    client = boto3.client("s3", endpoint_url=env["DRKIT_COPY_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id=env["DRKIT_COPY_KEY"], aws_secret_access_key=env["DRKIT_COPY_SECRET"])
    try:
        client.create_bucket(Bucket=env["DRKIT_COPY_BUCKET"], ObjectLockEnabledForBucket=True)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return env["DRKIT_COPY_BUCKET"]
