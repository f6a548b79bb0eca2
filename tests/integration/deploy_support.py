"""What the deploy tests share: the repository's paths, the tools they run (found beside this interpreter first, where
pip puts hadolint, then on PATH; absent: skipped, or failed under CI=true), and YAML read the way compose and
kubectl read it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# compose's ${VAR}, ${VAR:-default} and ${VAR:?error}
COMPOSE_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def tool(name: str, *, why: str) -> str:
    """The path of the program ``name``; a test that needs it is skipped when it is missing (failed under CI=true)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        unavailable(name, f"not installed ({why})")
    return found


def yaml_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML stream, each a mapping."""
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    assert all(isinstance(doc, dict) for doc in documents), "every YAML document is a mapping"
    return documents


def render(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s/overlays/<overlay>``: every object it renders."""
    kubectl = tool("kubectl", why="kubectl kustomize renders the manifests")
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return yaml_documents(done.stdout)


def env_example() -> dict[str, str]:
    """deploy/.env.example's assignments (the required variables, with placeholder values)."""
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """``value`` with compose's ${VAR}, ${VAR:-default} and ${VAR:?error} resolved from ``variables``; a required
    variable that is missing raises KeyError, as compose refuses to start."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if variables.get(name):
            return variables[name]
        if op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg if op.endswith("-") else ""

    return COMPOSE_VARIABLE.sub(one, value)
