"""Soulfra's exception tree: every error the project raises on purpose is one of these.

    SoulfraError                    root; never raised itself
    ├── ConfigError                 bad run parameters (a negative tick count, an unknown option value)
    ├── WorldFileError              a world file (TOML) that cannot be read or does not describe a valid world
    ├── InputError                  a malformed input or input-log line (bad JSON, unknown type, bad field)
    │   ├── UnknownAgentError       an input names an agent the world does not have
    │   ├── BodyTooLargeError       an HTTP request body over its route's size limit (413)
    │   ├── BodyTimeoutError        an HTTP request body that stopped arriving (408)
    │   ├── UnsupportedMediaError   a request body of a content type its route does not take (415)
    │   └── BadHostError            a request for a host name this server does not answer to (400)
    ├── CodecError                  state bytes that are corrupt or of an unknown format version
    │   └── DecompressionLimitError a blob that would decompress beyond the configured size limit
    ├── OutputError                 an output file (an event log) could not be written
    ├── StorageError                the database refused or failed an operation
    │   ├── StorageUnavailableError the database cannot be reached or opened (bad URL, server down)
    │   ├── NotFoundError           no such instance, snapshot or tick in the database
    │   ├── ConflictError           a write that contradicts what is stored (another hash for a stored tick)
    │   │   ├── LeaseHeldError      another live process is the writer of that instance (or server) already
    │   │   └── LeaseLostError      this process's writer lease was taken over: it may no longer write
    │   └── HistoryIntegrityError   stored history that does not hold together: a replay that does not reproduce
    │                               a stored state hash, a snapshot or dictionary that is missing
    ├── PlatformError               a platform refused a request in its current state
    │   ├── OverrideActiveError     the instance is stopped by an emergency override until it is resumed
    │   ├── InstanceFailedError     the instance stopped by itself when a tick failed; it takes no input until restarted
    │   └── ValidationFailedError   the protocol platform found violations of its rules
    ├── PackageError                a .soulpkg file that is not a valid package (bad ZIP, entry, path or hash)
    │   ├── PackageSignatureError   the package's signature is missing, does not verify, or is by an untrusted key
    │   └── PackageLimitError       the package (or an entry) would unpack beyond the configured size limits
    ├── LineageError                a god command the lineage graph cannot carry out (no common ancestor, a revert
    │                               past the head, a link deeper than the limit)
    ├── MergeError                  two worlds that cannot be merged (different agents, seeds or format)
    ├── ServerUnavailableError      no Soulfra server answers at the URL a CLI command was given
    ├── AuthenticationError         no credentials, or a token that is unknown, expired or revoked (401)
    ├── PermissionDeniedError       an identity whose role does not allow the request (403)
    │   ├── LicenceError            an instance's licence terms forbid it (no forks, no export, too many forks)
    │   └── CsrfError               a change sent with a dashboard session cookie but not its CSRF token (403)
    ├── RateLimitedError            too many requests from one token, or failed sign-ins from one address (429)
    └── BusError                    the message bus failed to carry a message
        ├── BusUnavailableError     the bus (a NATS server) cannot be reached
        ├── BusTimeoutError         a request got no reply within its timeout
        └── NoRespondersError       nothing serves the subject a request was sent to (that platform is not running)

Each class has a stable ``code`` that the CLI and the HTTP API report beside the message. Every class has an HTTP
status (``STATUS`` in ``soulfra.api.app``) and an exit code (``EXIT_CODES`` in ``soulfra.cli``), its own or rightly
inherited from its parent; ``tests/unit/test_error_map.py`` holds the whole map, so a new class needs a decision.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BadHostError",
    "BodyTimeoutError",
    "BodyTooLargeError",
    "BusError",
    "BusTimeoutError",
    "BusUnavailableError",
    "CodecError",
    "ConfigError",
    "ConflictError",
    "CsrfError",
    "DecompressionLimitError",
    "HistoryIntegrityError",
    "InputError",
    "InstanceFailedError",
    "LeaseHeldError",
    "LeaseLostError",
    "LicenceError",
    "LineageError",
    "MergeError",
    "NoRespondersError",
    "NotFoundError",
    "OutputError",
    "OverrideActiveError",
    "PackageError",
    "PackageLimitError",
    "PackageSignatureError",
    "PermissionDeniedError",
    "PlatformError",
    "RateLimitedError",
    "ServerUnavailableError",
    "SoulfraError",
    "StorageError",
    "StorageUnavailableError",
    "UnknownAgentError",
    "UnsupportedMediaError",
    "ValidationFailedError",
    "WorldFileError",
    "error_for_code",
]


class SoulfraError(Exception):
    """Root of every error Soulfra raises on purpose."""

    code = "soulfra_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigError(SoulfraError):
    code = "invalid_config"


class WorldFileError(SoulfraError):
    code = "invalid_world_file"


class InputError(SoulfraError):
    code = "invalid_input"


class UnknownAgentError(InputError):
    code = "unknown_agent"


class BodyTooLargeError(InputError):
    code = "body_too_large"


class BodyTimeoutError(InputError):
    code = "body_timeout"


class CodecError(SoulfraError):
    code = "codec_error"


class OutputError(SoulfraError):
    code = "output_error"


class DecompressionLimitError(CodecError):
    code = "decompression_limit"


class StorageError(SoulfraError):
    code = "storage_error"


class StorageUnavailableError(StorageError):
    code = "storage_unavailable"


class NotFoundError(StorageError):
    code = "not_found"


class ConflictError(StorageError):
    code = "conflict"


class LeaseHeldError(ConflictError):
    code = "lease_held"


class LeaseLostError(ConflictError):
    code = "lease_lost"


class HistoryIntegrityError(StorageError):
    """Stored history is damaged. Named apart from SQLAlchemy's ``IntegrityError`` (a broken constraint)."""

    code = "integrity_error"


class PlatformError(SoulfraError):
    code = "platform_error"


class OverrideActiveError(PlatformError):
    code = "override_active"


class InstanceFailedError(PlatformError):
    code = "instance_failed"


class ValidationFailedError(PlatformError):
    code = "validation_failed"


class PackageError(SoulfraError):
    code = "package_invalid"


class PackageSignatureError(PackageError):
    code = "package_signature"


class PackageLimitError(PackageError):
    code = "package_too_large"


class LineageError(SoulfraError):
    code = "lineage_error"


class MergeError(SoulfraError):
    code = "merge_failed"


class ServerUnavailableError(SoulfraError):
    code = "server_unavailable"


class UnsupportedMediaError(InputError):
    code = "unsupported_media_type"


class BadHostError(InputError):
    code = "bad_host"


class AuthenticationError(SoulfraError):
    code = "unauthenticated"


class PermissionDeniedError(SoulfraError):
    code = "forbidden"


class LicenceError(PermissionDeniedError):
    code = "licence"


class CsrfError(PermissionDeniedError):
    """A mutating request authenticated by a dashboard session cookie without that session's CSRF token: it may
    come from another site's page, which the browser sent the cookie with."""

    code = "csrf"


class RateLimitedError(SoulfraError):
    """Too many requests; ``retry_after`` is how many seconds to wait (the HTTP answer's Retry-After)."""

    code = "rate_limited"

    def __init__(self, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BusError(SoulfraError):
    code = "bus_error"


class BusUnavailableError(BusError):
    code = "bus_unavailable"


class BusTimeoutError(BusError):
    code = "bus_timeout"


class NoRespondersError(BusError):
    code = "no_responders"


def _all_classes(root: type[SoulfraError]) -> list[type[SoulfraError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_all_classes(sub))
    return found


def error_for_code(code: str, detail: str) -> SoulfraError:
    """Rebuild an error that crossed a process boundary as its code; an unknown code gives the root class."""
    for cls in _all_classes(SoulfraError):
        if cls.code == code:
            return cls(detail)
    error = SoulfraError(detail)
    error.code = code
    return error
