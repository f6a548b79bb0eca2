"""soulfra.security: the protocol's rules (PermissionValidator), API tokens and roles, and the audit trail of every
change (AuditRecorder)."""
