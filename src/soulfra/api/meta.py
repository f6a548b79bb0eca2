"""The puppet master's routes: instances (create, show, delete), god-mode commands (one typed endpoint and a REST
route each), and packages (export as a download, import as an upload). Thin: each route is one call of the puppet
master (``soulfra.meta.service``), in this process or over the bus.
"""

from __future__ import annotations

import inspect
import io
import pathlib
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator

from soulfra.api.access import identity_of
from soulfra.api.common import InstanceId
from soulfra.api.gateway import Gateway
from soulfra.api.models import Deleted, GodReply, ImportReply, InstanceDetail
from soulfra.api.models.god import (
    CloneReply,
    ForkReply,
    FreezeReply,
    InterventionReply,
    LinkReply,
    MergePreviewReply,
    MergeReply,
    MessageReply,
    PossessionReply,
    RevertReply,
    RewriteReply,
    ThawReply,
    UnlinkReply,
)
from soulfra.errors import ConflictError, NotFoundError, PackageLimitError, StorageError
from soulfra.limits import MAX_GENERATED_AGENTS, RATE_RULE, rate_problem
from soulfra.meta.commands import (
    AgentPossession,
    CloneInstance,
    CrossInstanceCommunication,
    FreezeTime,
    GodCommand,
    MergeInstances,
    PuppetMasterIntervention,
    RealityFork,
    ThawTime,
    TimelineRevert,
)
from soulfra.meta.keys import KeyRing
from soulfra.meta.package import Limits, read_package, write_package
from soulfra.meta.service import PuppetMaster
from soulfra.meta.transfer import bundle_for, import_bundles
from soulfra.offload import off_loop
from soulfra.security.audit import current_action, current_identity

__all__ = ["PACKAGE_MEDIA_TYPE", "meta_router"]

PACKAGE_MEDIA_TYPE = "application/vnd.soulfra.package+zip"
_SPOOL_CHUNK = 1 << 20  # bytes of an upload held in memory before they are written to its temporary file
SPOOL_RESERVE = 256 << 20  # bytes an upload must leave free on the disk it is spooled to (the worlds write there)
# A package download's documented answer: the bytes of a signed ZIP file, never a JSON body.
PACKAGE_DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A signed .soulpkg package (a ZIP file), as an attachment",
        "content": {PACKAGE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}
# A package upload's documented body: the bytes of a .soulpkg, as one of the two media types the API takes for it.
PACKAGE_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in (PACKAGE_MEDIA_TYPE, "application/octet-stream")
        },
    }
}


CompactQuery = Annotated[
    bool, Query(description="Leave the states out where the importer can rebuild them (smaller; slower to import)")
]


class CreateInstance(BaseModel):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    seed: int = Field(default=0, ge=0, le=2**64 - 1)
    agents: int = Field(
        default=0, ge=0, le=MAX_GENERATED_AGENTS, description="Generated agents beside the world file's own"
    )
    world: str | None = Field(default=None, max_length=1_000_000, description="A world file's TOML text")
    rate: float | None = Field(
        default=None, allow_inf_nan=False, description=f"Ticks per second, {RATE_RULE} (default: the server's)"
    )

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: float | None) -> float | None:
        if value is not None and (problem := rate_problem(value)) is not None:
            raise ValueError(problem)
        return value


def meta_router(
    master: PuppetMaster, gateway: Gateway, keyring: KeyRing, limits: Limits, *, spool: pathlib.Path | None = None
) -> APIRouter:
    """The puppet master's routes (``master``: in this process, or another one's over the bus); an uploaded
    package is spooled to a temporary file in ``spool`` (None: the system's temporary directory) and read from
    there."""
    router = APIRouter()

    # -- instances ------------------------------------------------------------------------------------------------

    @router.post(
        "/api/instances",
        tags=["instances"],
        status_code=201,
        response_model=InstanceDetail,
        response_model_exclude_unset=True,
    )
    async def create_instance(body: CreateInstance) -> dict[str, Any]:
        """A new instance with its own seed and world, ticking from tick 0."""
        _note({"id": body.id, "seed": body.seed, "agents": body.agents, "rate": body.rate,
               "world_chars": None if body.world is None else len(body.world)})  # fmt: skip
        return await master.create_instance(
            seed=body.seed, world=body.world, agents=body.agents, instance_id=body.id,
            rate="default" if body.rate is None else body.rate or None,  # 0: unthrottled
        )  # fmt: skip

    @router.get(
        "/api/instances/{instance_id}",
        tags=["instances"],
        response_model=InstanceDetail,
        response_model_exclude_unset=True,
    )
    async def show_instance(instance_id: InstanceId) -> dict[str, Any]:
        """One instance: record, state, lineage, forks, abandoned branches, links."""
        return await master.describe(instance_id)

    @router.delete("/api/instances/{instance_id}", tags=["instances"], response_model=Deleted)
    async def delete_instance(instance_id: InstanceId) -> dict[str, Any]:
        """Stop an instance and remove it with its history (refused while others descend from it, and for the
        server's default instance)."""
        if instance_id == gateway.default_instance:
            raise ConflictError(f"{instance_id} is this server's default instance; it cannot be deleted while served")
        result = await master.delete_instance(instance_id)
        gateway.forget(instance_id)
        return result

    # -- god mode -------------------------------------------------------------------------------------------------

    @router.post("/api/god", tags=["god-mode"], response_model=GodReply)
    async def god(command: Annotated[GodCommand, Body()]) -> dict[str, Any]:
        """Any god-mode command, told apart by ``type``; returns the command's result object."""
        return await master.execute(command)

    @router.post("/api/god/merge/preview", tags=["god-mode"], response_model=MergePreviewReply)
    async def preview_merge(command: Annotated[MergeInstances, Body()]) -> dict[str, Any]:
        """MERGE_INSTANCES as a dry run: the conflict report the merge would give now (the same code), with nothing
        written. ``id`` and ``start`` are checked as the merge checks them."""
        return await master.preview_merge(command)

    routes: list[tuple[str, type[BaseModel], Any, str]] = [
        ("freeze", FreezeTime, FreezeReply, "FREEZE_TIME: stop time in some or all instances, maybe for a while"),
        ("thaw", ThawTime, ThawReply, "Let frozen instances tick again"),
        ("clone", CloneInstance, CloneReply, "CLONE_INSTANCE: a copy at the current tick, with modifications"),
        ("fork", RealityFork, ForkReply, "REALITY_FORK: N forks, each with its own modifications"),
        ("merge", MergeInstances, MergeReply, "MERGE_INSTANCES: three-way merge from the common ancestor, reported"),
        ("possess", AgentPossession, PossessionReply, "AGENT_POSSESSION: possess, act through, or release an agent"),
        ("revert", TimelineRevert, RevertReply, "TIMELINE_REVERT: back to a tick or snapshot; the old branch is kept"),
        (
            "communicate", CrossInstanceCommunication, LinkReply | UnlinkReply | MessageReply,
            "CROSS_INSTANCE_COMMUNICATION: link, whisper or post across",
        ),
        (
            "intervene", PuppetMasterIntervention, InterventionReply | RewriteReply,
            "PUPPET_MASTER_INTERVENTION: personality, ritual, vibe, rewrite",
        ),
    ]  # fmt: skip
    for name, model, reply, summary in routes:
        router.add_api_route(
            f"/api/god/{name}",
            _god_route(master, model),
            methods=["POST"],
            tags=["god-mode"],
            summary=summary,
            response_model=reply,
        )

    # -- packages -------------------------------------------------------------------------------------------------

    def package_response(instance_ids: list[str], compact: bool) -> Response:
        bundles = [bundle_for(master.store, i, rules=master.rules) for i in instance_ids]
        buffer = io.BytesIO()
        write_package(buffer, bundles, keyring.signer(), compact=compact)
        name = instance_ids[0] if len(instance_ids) == 1 else "instances"
        return Response(
            buffer.getvalue(),
            media_type=PACKAGE_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.soulpkg"'},
        )

    @router.get(
        "/api/instances/{instance_id}/export", tags=["packages"], response_class=Response, responses=PACKAGE_DOWNLOAD
    )
    async def export_instance(instance_id: InstanceId, compact: CompactQuery = False) -> Response:
        """The instance as a signed ``.soulpkg`` package (a ZIP file)."""
        await off_loop(master.store.instances.get, instance_id)
        await master.flush([instance_id])  # what the package reads is then durable up to the live tick
        return await off_loop(package_response, [instance_id], compact)

    @router.get("/api/export", tags=["packages"], response_class=Response, responses=PACKAGE_DOWNLOAD)
    async def export_many(
        request: Request,
        instance: Annotated[list[str] | None, Query(description="Instances to export; none: all of them")] = None,
        compact: CompactQuery = False,
    ) -> Response:
        """Several instances (or all) as one collection package of instance packages."""
        identity = identity_of(request)
        ids = instance or [r["id"] for r in await master.list_instances() if identity.sees(r["id"])]
        for instance_id in ids:
            if not identity.sees(instance_id):
                raise NotFoundError(f"no instance {instance_id!r}")  # as for one that does not exist
            await off_loop(master.store.instances.get, instance_id)
        await master.flush(ids)
        return await off_loop(package_response, ids, compact)

    @router.post(
        "/api/import", tags=["packages"], status_code=201, response_model=ImportReply, openapi_extra=PACKAGE_UPLOAD
    )
    async def import_package(
        request: Request,
        verify_replay: Annotated[bool, Query(description="Replay each history and check its head hash")] = False,
        start: Annotated[bool, Query(description="Start the imported instances ticking")] = True,
        as_id: Annotated[
            str | None, Query(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="Import one instance under this id")
        ] = None,
    ) -> dict[str, Any]:
        """Upload a ``.soulpkg`` (the request body): verified, validated, stored, and started."""
        caller = current_identity()
        if caller is not None:
            caller.may_create("import packages")
        upload = await _spooled(request, limits.max_total_bytes, spool)
        try:
            package = await off_loop(read_package, upload, keyring, limits=limits)
        finally:
            await off_loop(upload.close)
        imported = await off_loop(
            import_bundles,
            master.store,
            package.bundles,
            as_id=as_id,
            verify_replay=verify_replay,
            rules=master.rules,
        )
        _note({"key_id": package.key_id, "imported": [row["id"] for row in imported]})
        if start:
            await master.start({row["id"] for row in imported})
        return {"key_id": package.key_id, "imported": imported}

    return router


async def _spooled(request: Request, cap: int, directory: pathlib.Path | None) -> BinaryIO:
    """The request's body in an anonymous temporary file, rewound; never more than ``_SPOOL_CHUNK`` bytes of it in
    memory. A package as uploaded (compressed) over ``cap`` bytes is refused as it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PackageLimitError(f"the upload is {declared} bytes, over the limit of {cap}")
    if declared is not None and declared.isdigit():
        _leave_room(directory, int(declared))
    try:
        upload = await off_loop(_temporary, directory)
    except OSError as exc:
        raise StorageError(f"cannot spool the upload: {exc.strerror or exc}") from None
    try:
        size, pending = 0, bytearray()
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise PackageLimitError(f"the upload is over the limit of {cap} bytes")
            pending += chunk
            if len(pending) >= _SPOOL_CHUNK:
                _leave_room(directory, len(pending))
                await off_loop(upload.write, pending)
                pending.clear()
        await off_loop(_rewound, upload, pending)
    except OSError as exc:
        await off_loop(upload.close)
        raise StorageError(f"cannot spool the upload: {exc.strerror or exc}") from None
    except BaseException:
        await off_loop(upload.close)  # an anonymous file: closing it is all the cleaning up there is
        raise
    return upload


def _note(detail: dict[str, Any]) -> None:
    """Add a route's particulars to the request's audit row."""
    action = current_action()
    if action is not None:
        action.refine(detail=detail)


def _leave_room(directory: pathlib.Path | None, more: int) -> None:
    """Refuse an upload that would leave less than ``SPOOL_RESERVE`` bytes free beside the worlds' database: a full
    disk would fail every world's next commit."""
    free = shutil.disk_usage(directory or tempfile.gettempdir()).free
    if free - more < SPOOL_RESERVE:
        raise StorageError(
            f"the upload would leave less than {SPOOL_RESERVE >> 20} MiB free on the server's disk "
            f"({free >> 20} MiB free); free some space and try again"
        )


def _temporary(directory: pathlib.Path | None) -> BinaryIO:
    return tempfile.TemporaryFile(dir=directory)  # unlinked at once (where it can be), mode 0600


def _rewound(upload: BinaryIO, tail: bytes | bytearray) -> None:
    upload.write(tail)
    upload.flush()
    upload.seek(0)


def _god_route(master: PuppetMaster, model: type[BaseModel]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A route taking one command of ``model``'s type (its ``type`` field may be left out)."""

    async def route(command: Any) -> dict[str, Any]:
        return await master.execute(command)

    parameter = inspect.Parameter(
        "command", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[model, Body()]
    )
    route.__signature__ = inspect.Signature([parameter], return_annotation=dict[str, Any])  # type: ignore[attr-defined]
    route.__doc__ = model.__doc__
    return route
