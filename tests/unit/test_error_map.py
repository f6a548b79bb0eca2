"""Each class of the error tree has its decided HTTP status and exit code; the tree drawn in errors.py is the real one.

``EXPECTED`` is the one map: a class added to the tree without a line here fails ``test_every_error_class_is_mapped``
(as httpx tests that every transport exception is mapped).
"""

from __future__ import annotations

import re

import pytest

import soulfra.errors
from soulfra.api.app import status_for
from soulfra.cli import commands as cli
from soulfra.errors import (
    AuthenticationError,
    BadHostError,
    BodyTimeoutError,
    BodyTooLargeError,
    BusError,
    BusTimeoutError,
    BusUnavailableError,
    CodecError,
    ConfigError,
    ConflictError,
    CsrfError,
    DecompressionLimitError,
    HistoryIntegrityError,
    InputError,
    InstanceFailedError,
    LeaseHeldError,
    LeaseLostError,
    LicenceError,
    LineageError,
    MergeError,
    NoRespondersError,
    NotFoundError,
    OutputError,
    OverrideActiveError,
    PackageError,
    PackageLimitError,
    PackageSignatureError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    ServerUnavailableError,
    SoulfraError,
    StorageError,
    StorageUnavailableError,
    UnknownAgentError,
    UnsupportedMediaError,
    ValidationFailedError,
    WorldFileError,
    error_for_code,
)

# class: (HTTP status, CLI exit code)
EXPECTED: dict[type[SoulfraError], tuple[int, int]] = {
    SoulfraError: (500, 1),
    ConfigError: (500, 2),
    WorldFileError: (422, 65),
    InputError: (422, 65),
    UnknownAgentError: (404, 65),
    BodyTooLargeError: (413, 65),
    BodyTimeoutError: (408, 75),
    CodecError: (500, 65),
    DecompressionLimitError: (500, 65),
    OutputError: (500, 74),
    StorageError: (503, 74),
    StorageUnavailableError: (503, 69),
    NotFoundError: (404, 66),
    ConflictError: (409, 65),
    LeaseHeldError: (409, 75),
    LeaseLostError: (409, 75),
    HistoryIntegrityError: (500, 65),
    PlatformError: (409, 75),
    OverrideActiveError: (409, 75),
    InstanceFailedError: (409, 75),
    ValidationFailedError: (422, 65),
    PackageError: (422, 65),
    PackageSignatureError: (422, 65),
    PackageLimitError: (413, 65),
    LineageError: (409, 65),
    MergeError: (409, 65),
    ServerUnavailableError: (502, 69),
    BusError: (503, 69),
    BusUnavailableError: (503, 69),
    BusTimeoutError: (504, 75),
    NoRespondersError: (503, 69),
    UnsupportedMediaError: (415, 65),
    BadHostError: (400, 65),
    AuthenticationError: (401, 77),
    PermissionDeniedError: (403, 77),
    LicenceError: (403, 77),
    CsrfError: (403, 77),
    RateLimitedError: (429, 75),
}


def _tree(root: type[SoulfraError]) -> list[type[SoulfraError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_tree(sub))
    return found


CLASSES = _tree(SoulfraError)


def _exit_code(error: SoulfraError, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> int:
    """The exit code ``soulfra`` ends with when a command raises ``error``, through the real ``main``."""

    def command(*args: object, **kwargs: object) -> int:
        raise error

    monkeypatch.setattr(cli, "app", command)  # the module's own name, which main() calls
    with pytest.raises(SystemExit) as stopped:
        cli.main([])
    assert capsys.readouterr().err == f"soulfra: error: {error.detail}\n"  # one line, no traceback
    assert isinstance(stopped.value.code, int)
    return stopped.value.code


def test_every_error_class_is_mapped() -> None:
    assert {cls.__name__ for cls in CLASSES} == {cls.__name__ for cls in EXPECTED}
    assert len(CLASSES) == len(EXPECTED)  # no class reached twice, no two classes of one name


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_each_error_class_has_its_status_and_exit_code(
    cls: type[SoulfraError], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = cls("what went wrong")
    assert (status_for(error), _exit_code(error, monkeypatch, capsys)) == EXPECTED[cls]


def test_every_class_is_exported_and_rebuilt_from_its_own_code() -> None:
    assert {cls.__name__ for cls in CLASSES} <= set(soulfra.errors.__all__)
    assert len({cls.code for cls in CLASSES}) == len(CLASSES)
    for cls in CLASSES:
        assert type(error_for_code(cls.code, "detail")) is cls


def test_history_integrity_keeps_its_code_and_no_longer_shares_sqlalchemys_name() -> None:
    assert HistoryIntegrityError.code == "integrity_error"
    assert not hasattr(soulfra.errors, "IntegrityError")


def _drawing() -> list[str]:
    """The lines of the tree in errors.py's docstring, from the root to the first blank line."""
    lines = (soulfra.errors.__doc__ or "").splitlines()
    start = lines.index("    SoulfraError                    root; never raised itself")
    end = lines.index("", start)
    return lines[start:end]


def test_the_tree_in_the_docstring_draws_each_class_under_its_real_parent() -> None:
    drawn: dict[str, str | None] = {}
    path: list[str] = []  # the classes from the root down to the line above, one per depth
    for line in _drawing():
        found = re.match(r"^    ((?:│   |    )*)(├── |└── )?([A-Z]\w*Error)\b", line)
        if found is None:
            continue  # a description's second line
        prefix, branch, name = found.groups()
        depth = 0 if branch is None else len(prefix) // 4 + 1
        assert depth <= len(path), f"{name} is drawn deeper than the line above it"
        del path[depth:]
        drawn[name] = path[-1] if path else None
        path.append(name)
    assert drawn == {cls.__name__: None if cls is SoulfraError else cls.__mro__[1].__name__ for cls in CLASSES}


def test_the_lines_of_the_docstring_tree_join_up() -> None:
    """A branch hangs from the line above it (a │ or ├ in its column, or its parent's name); a │ or ├ goes on down
    to the next branch. So after a └ no sibling may follow, which is how the drawing was once wrong."""
    lines = _drawing()
    for row, line in enumerate(lines):
        for col, char in enumerate(line):  # the descriptions hold no box-drawing characters
            above = lines[row - 1][col : col + 1] if row > 0 else ""
            below = lines[row + 1][col : col + 1] if row + 1 < len(lines) else ""
            if char in "├└":
                assert above in ("│", "├") or above.isalpha(), f"{line.strip()!r} hangs from nothing"
            if char in "│├":
                assert below in ("│", "├", "└"), f"the line under {line.strip()!r} stops before its last branch"
