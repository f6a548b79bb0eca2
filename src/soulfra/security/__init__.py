"""soulfra.security: the protocol's rules (PermissionValidator) and the audit trail of every change (AuditLogger)."""
