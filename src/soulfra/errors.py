"""Soulfra's exception tree: every error the project raises on purpose is one of these.

    SoulfraError                    root; never raised itself
    ├── ConfigError                 bad run parameters (a negative tick count, an unknown option value)
    ├── WorldFileError              a world file (TOML) that cannot be read or does not describe a valid world
    ├── InputError                  a malformed input or input-log line (bad JSON, unknown type, bad field)
    │   └── UnknownAgentError       an input names an agent the world does not have
    ├── CodecError                  state bytes that are corrupt or of an unknown format version
    │   └── DecompressionLimitError a blob that would decompress beyond the configured size limit
    ├── OutputError                 an output file (an event log) could not be written
    └── StorageError                the database refused or failed an operation
        ├── StorageUnavailableError the database cannot be reached or opened (bad URL, server down)
        ├── NotFoundError           no such instance, snapshot or tick in the database
        ├── ConflictError           a write that contradicts what is stored (another hash for a stored tick)
        └── IntegrityError          replayed history does not reproduce a stored state hash

Each class has a stable ``code`` that the CLI and, later, the HTTP API report beside the message.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConfigError",
    "ConflictError",
    "DecompressionLimitError",
    "InputError",
    "IntegrityError",
    "NotFoundError",
    "OutputError",
    "SoulfraError",
    "StorageError",
    "StorageUnavailableError",
    "UnknownAgentError",
    "WorldFileError",
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


class IntegrityError(StorageError):
    code = "integrity_error"
