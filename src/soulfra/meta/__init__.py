"""soulfra.meta: the puppet master above many instances: lineage, god-mode commands, merge and outer-layer packages."""
