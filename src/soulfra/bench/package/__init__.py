"""``soulfra bench package``: one module per measurement (soulpkg, fork, instances) and the command that runs and
renders them (command); what users and ``soulfra bench`` import is re-exported here."""

from soulfra.bench.package.command import PARTS, package_command, render, run_package_bench

__all__ = ["PARTS", "package_command", "render", "run_package_bench"]
