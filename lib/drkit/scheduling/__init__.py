"""Scheduling: claims and run records in the bucket, and the Functions API that starts and reports runs."""
