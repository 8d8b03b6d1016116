"""The bucket: the S3 client, streamed transfers, signed objects, catalogs, audit events, run state."""
