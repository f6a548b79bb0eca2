"""What the deploy tests share: the repository's paths, the tools they run (found beside this interpreter first, where
pip puts hadolint, then on PATH; absent: skipped, or failed under CI=true), and YAML read the way compose and
kubectl read it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


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
