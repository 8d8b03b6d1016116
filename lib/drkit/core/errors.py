"""One small exception tree: the library raises these, and only the edge maps them.

The edge (runtime adapter, CLI) maps them to a result status, HTTP code or exit code.

Every message says what is wrong and, where it can, what to do next. Messages
never contain secrets: callers pass redacted values only.
"""

from __future__ import annotations


class DrkitError(Exception):
    """Base of every error drkit raises on purpose."""

    status = "failed"


class ConfigError(DrkitError):
    """Configuration or call parameters are invalid. Raised before any work starts.

    Carries every problem found, not only the first one.
    """

    status = "invalid_config"

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class StoreError(DrkitError):
    """Spaces/S3 request failed (after the client's own retries)."""


class PgError(DrkitError):
    """A PostgreSQL tool or connection failed."""

    def __init__(self, message: str, *, tool: str = "", exit_code: int | None = None, stderr_tail: str = ""):
        self.tool = tool
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        super().__init__(message)


class DoApiError(DrkitError):
    """A DigitalOcean API call failed (after the retries that are safe for it)."""

    def __init__(self, message: str, *, http_status: int | None = None):
        self.http_status = http_status
        super().__init__(message)


class SupabaseApiError(DrkitError):
    """A Supabase Management API call failed (after the retries that are safe for it)."""

    def __init__(self, message: str, *, http_status: int | None = None):
        self.http_status = http_status
        super().__init__(message)


class CryptoError(DrkitError):
    """Encryption/decryption failed (bad key, tampered data). `in_data`: age rejected the chunks
    (tampered or cut ciphertext), not the header (no identity matches)."""

    def __init__(self, message: str, *, in_data: bool = False):
        super().__init__(message)
        self.in_data = in_data


class IntegrityError(DrkitError):
    """Stored data does not match its manifest (size or SHA-256)."""


class DeadlineExceeded(DrkitError):
    """The function's deadline would be or was passed; work was stopped cleanly."""

    status = "timed_out"
