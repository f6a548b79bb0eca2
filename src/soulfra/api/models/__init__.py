"""The API's response models: pydantic at the edge, one module per area, each route's ``response_model``.

Every JSON body a route returns is one of these, so ``/openapi.json`` documents it; streams and package downloads
declare their media type instead. The bodies are what the routes answered before they were typed: a model names
every field it may carry (``Closed``), or says that a body is open (``Open``) where its fields vary with its kind.
"""

from soulfra.api.models.god import GodReply
from soulfra.api.models.instances import Deleted, ImportReply, InstanceDetail, InstanceList, InstanceSummary
from soulfra.api.models.requests import ActBody, OverrideBody, PossessBody, RulesBody, ValidateBody, WhisperBody
from soulfra.api.models.runtime import (
    AgentBrief,
    AgentPage,
    AgentReply,
    CompactAgentPage,
    Health,
    InputPage,
    InstanceAck,
    InstanceStatus,
    NotReady,
    Overridden,
    Paused,
    Ready,
    Resumed,
    Snapshot,
    SnapshotDetail,
    SnapshotList,
)
from soulfra.api.models.security import (
    AuditPage,
    AuditRow,
    AuditVerification,
    Lease,
    LeaseList,
    TokenBody,
    TokenCreated,
    TokenInfo,
    TokenList,
)
from soulfra.api.models.surface import (
    Anomalies,
    Echoes,
    Rules,
    Seeds,
    Traces,
    UnifiedList,
    UnifiedSnapshot,
    Validation,
    WeatherReport,
)

__all__ = [
    "ActBody",
    "AgentBrief",
    "AgentPage",
    "AgentReply",
    "Anomalies",
    "AuditPage",
    "AuditRow",
    "AuditVerification",
    "CompactAgentPage",
    "Deleted",
    "Echoes",
    "GodReply",
    "Health",
    "ImportReply",
    "InputPage",
    "InstanceAck",
    "InstanceDetail",
    "InstanceList",
    "InstanceStatus",
    "InstanceSummary",
    "Lease",
    "LeaseList",
    "NotReady",
    "Overridden",
    "OverrideBody",
    "Paused",
    "PossessBody",
    "Ready",
    "Resumed",
    "Rules",
    "RulesBody",
    "Seeds",
    "Snapshot",
    "SnapshotDetail",
    "SnapshotList",
    "TokenBody",
    "TokenCreated",
    "TokenInfo",
    "TokenList",
    "Traces",
    "UnifiedList",
    "UnifiedSnapshot",
    "ValidateBody",
    "Validation",
    "WeatherReport",
    "WhisperBody",
]
