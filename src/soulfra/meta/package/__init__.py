"""The ``.soulpkg`` codec: an instance (or a collection of packages) as one signed, deterministic ZIP, and back.

``writer`` makes packages, ``reader`` verifies and opens them, ``manifest`` holds the format's rules and its typed
manifest, ``common`` the ``Limits`` and JSON helpers both sides share. Pure library code: no database, network or
CLI; every refusal is a PackageError (or its PackageSignatureError, PackageLimitError).
"""

from __future__ import annotations

from soulfra.meta.package.common import Limits
from soulfra.meta.package.manifest import FORMAT, FORMAT_VERSION, InstanceBundle
from soulfra.meta.package.reader import MAX_DEPTH, Package, package_info, read_package
from soulfra.meta.package.writer import write_collection, write_package

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "InstanceBundle",
    "Limits",
    "Package",
    "package_info",
    "read_package",
    "write_collection",
    "write_package",
]
