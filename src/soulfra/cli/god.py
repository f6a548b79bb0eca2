"""The CLI's god-mode commands (``soulfra god ...``): each one is a POST to the running server's /api/god routes,
audited there and recorded in the log of every world it touches."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from soulfra.cli.conflicts import conflict_line
from soulfra.cli.server import DEFAULT_URL, JsonOption, TokenOption, UrlOption, _request
from soulfra.cli.specs import MODIFY_HELP, modification, pair
from soulfra.errors import InputError

__all__ = ["emit", "god_app", "json_arg"]

god_app = typer.Typer(help="God-mode commands on a running server; each is audited and logged.", no_args_is_help=True)


def json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} (at character {exc.pos})") from None


def _god(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _request("POST", url, f"/api/god/{path}", body)


def emit(reply: dict[str, Any], as_json: bool, line: str) -> None:
    typer.echo(json.dumps(reply) if as_json else line)


# -- god -----------------------------------------------------------------------------------------------------------


@god_app.command("freeze")
def god_freeze(
    instances: Annotated[list[str] | None, typer.Argument(help="Instances to freeze (default: all)")] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.001, help="Thaw by themselves after this many seconds")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """FREEZE_TIME: stop the ticks of some or all instances."""
    reply = _god(url, "freeze", {"instances": instances or None, "duration": duration})
    frozen = ", ".join(f"{f['instance']}@{f['tick']}" for f in reply["frozen"]) or "nothing"
    emit(reply, as_json, f"frozen: {frozen}" + (f" until {reply['until']}" if reply["until"] else ""))


@god_app.command("thaw")
def god_thaw(
    instances: Annotated[list[str] | None, typer.Argument(help="Instances to thaw (default: every frozen one)")] = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Let frozen instances tick again."""
    reply = _god(url, "thaw", {"instances": instances or None})
    thawed = ", ".join(f"{f['instance']}@{f['tick']}" for f in reply["thawed"]) or "nothing"
    emit(reply, as_json, f"thawed: {thawed}")


ModifyOption = Annotated[list[str] | None, typer.Option("--modify", "-m", metavar="SPEC", help=MODIFY_HELP)]


@god_app.command("clone")
def god_clone(
    source: Annotated[str, typer.Argument(help="The instance to clone")],
    clone_id: Annotated[str | None, typer.Option("--id", help="The clone's id")] = None,
    tick: Annotated[int | None, typer.Option(min=0, help="Clone the state at this stored tick (default: now)")] = None,
    modify: ModifyOption = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """CLONE_INSTANCE: a copy (by reference: no history copied), with modifications from the next tick."""
    mods = [modification(m) for m in modify or []]
    reply = _god(url, "clone", {"source": source, "id": clone_id, "tick": tick, "modifications": mods})
    emit(reply, as_json, f"cloned {source} at tick {reply['tick']} as {reply['id']}")


def fork_spec(text: str) -> dict[str, Any]:
    """One ``--fork``: a JSON list of inputs, the API's ``{"id"?, "modifications"}``, or one input in ``-m``'s short
    spelling (``whisper:*:hi``: a fork with that one modification)."""
    if not text.lstrip().startswith(("[", "{", '"')) and not text.strip().lstrip("-").isdigit():
        return {"modifications": [modification(text, "--fork")]}
    given = json_arg(text, "--fork")
    if isinstance(given, list):
        return {"modifications": given}
    if isinstance(given, dict) and set(given) <= {"id", "modifications"}:
        return given
    raise InputError(
        '--fork takes a JSON list of inputs, such as \'[{"type": "whisper", "target": "*", "text": "hi"}]\', or '
        '{"id": ..., "modifications": [...]}'
    )


@god_app.command("fork")
def god_fork(
    source: Annotated[str, typer.Argument(help="The instance to fork")],
    count: Annotated[int, typer.Option(min=1, max=64, help="How many forks (without --fork)")] = 2,
    fork: Annotated[
        list[str] | None,
        typer.Option(
            "--fork",
            metavar="SPEC",
            help="""One fork (repeatable): its inputs as a JSON list, e.g. --fork '[{"type": "whisper", """
            """"target": "*", "text": "hi"}]', as the API takes it, --fork '{"id": "f1", "modifications": [...]}', """
            """or one input spelled as -m spells it, e.g. --fork 'whisper:*:hi' or --fork vibe:chaos-bloom""",
        ),
    ] = None,
    tick: Annotated[int | None, typer.Option(min=0, help="Fork at this stored tick (default: now)")] = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """REALITY_FORK: N forks, each with its own modifications; each goes on deterministically."""
    specs = [fork_spec(f) for f in fork] if fork else [{} for _ in range(count)]
    reply = _god(url, "fork", {"source": source, "tick": tick, "forks": specs})
    emit(reply, as_json, f"forked {source} at tick {reply['tick']}: " + ", ".join(f["id"] for f in reply["forks"]))


@god_app.command("merge")
def god_merge(
    ours: Annotated[str, typer.Argument(help="Our side")],
    theirs: Annotated[str, typer.Argument(help="Their side")],
    merged_id: Annotated[str | None, typer.Option("--id", help="The merged instance's id")] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", metavar="DOMAIN=POLICY", help="domain=policy, e.g. vibe=theirs (repeatable)"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every conflict, field by field")] = False,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """MERGE_INSTANCES: a three-way merge into a new instance, with a conflict report (a summary by domain;
    --verbose for every field, --json for the exact values)."""
    policies: dict[str, str] = {}
    for item in policy or []:
        domain, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--policy takes domain=policy, not {item!r}")
        policies[domain.strip()] = value.strip()
    reply = _god(url, "merge", {"ours": ours, "theirs": theirs, "id": merged_id, "policies": policies})
    if as_json:
        typer.echo(json.dumps(reply))
        return
    base = reply["base"]
    typer.echo(f"merged {ours} + {theirs} into {reply['id']} at tick {reply['tick']} "
               f"(from {base['instance']} at tick {base['tick']})")  # fmt: skip
    conflicts = reply["conflicts"]
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for conflict in conflicts:
        by_domain.setdefault(conflict["domain"], []).append(conflict)
    summary = ", ".join(
        f"{domain} {len(found)} ({', '.join(sorted({c['policy'] for c in found}))})"
        for domain, found in sorted(by_domain.items())
    )
    typer.echo(f"  {len(conflicts)} conflict{'' if len(conflicts) == 1 else 's'}" + (f": {summary}" if summary else ""))
    if not verbose:
        if conflicts:
            typer.echo("  (--verbose lists each one, --json gives the exact values)")
        return
    for conflict in conflicts:
        typer.echo(conflict_line(conflict))


@god_app.command("possess")
def god_possess(
    instance: Annotated[str, typer.Argument(help="The instance")],
    agent: Annotated[str, typer.Argument(help="The agent")],
    action: Annotated[str, typer.Option(help="possess, act or release")] = "possess",
    act: Annotated[str | None, typer.Option(help='For --action act: {"action": "post", "text": ...}')] = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """AGENT_POSSESSION: take over an agent, act through it, or release it."""
    body: dict[str, Any] = {"instance": instance, "agent": agent, "action": action}
    if act is not None:
        body["act"] = json_arg(act, "--act")
    reply = _god(url, "possess", body)
    emit(reply, as_json, f"{action} {agent} in {instance}: stored, applies at tick {reply['ack']['tick']}")


@god_app.command("revert")
def god_revert(
    instance: Annotated[str, typer.Argument(help="The instance")],
    tick: Annotated[int | None, typer.Option(min=0, help="Back to this tick")] = None,
    snapshot: Annotated[int | None, typer.Option(min=1, help="Back to this snapshot (id)")] = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """TIMELINE_REVERT: back to a tick or snapshot; the abandoned branch is kept and listed."""
    reply = _god(url, "revert", {"instance": instance, "tick": tick, "snapshot": snapshot})
    branch = reply["abandoned_branch"]
    emit(reply, as_json, f"{instance} is back at tick {reply['tick']}; ticks {branch['from_tick']}-"
                          f"{branch['head_tick']} kept as {branch['id']}")  # fmt: skip


@god_app.command("link")
def god_link(
    source: Annotated[str, typer.Argument(help="One instance")],
    target: Annotated[str, typer.Argument(help="The instance to link it with (links go both ways)")],
    unlink: Annotated[bool, typer.Option("--unlink", help="Remove the link instead")] = False,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """CROSS_INSTANCE_COMMUNICATION: link two instances (their agents may then reach each other)."""
    action = "unlink" if unlink else "link"
    reply = _god(url, "communicate", {"action": action, "source": source, "target": target})
    emit(reply, as_json, f"{source} and {target} {'unlinked' if unlink else 'linked'}")


@god_app.command("send")
def god_send(
    source: Annotated[str, typer.Argument(help="The speaking agent's instance")],
    agent: Annotated[str, typer.Argument(help="The speaking agent")],
    target: Annotated[str, typer.Argument(help="The linked instance addressed")],
    text: Annotated[str, typer.Argument(help="What the agent says")],
    to: Annotated[str, typer.Option(help="Whisper to this agent of target (* for all)")] = "*",
    thread: Annotated[int | None, typer.Option(min=1, help="Post in this thread of target instead")] = None,
    tone: Annotated[str, typer.Option(help="gentle, urgent, playful, solemn or dark")] = "gentle",
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """CROSS_INSTANCE_COMMUNICATION: an agent whispers to (or, with --thread, posts in) a linked instance."""
    body: dict[str, Any] = {"action": "post" if thread else "whisper", "source": source, "target": target,
                            "agent": agent, "text": text, "to": to, "thread": thread, "tone": tone}  # fmt: skip
    reply = _god(url, "communicate", body)
    emit(reply, as_json, f"{reply['action']} from {source}/{agent} stored in {target} for tick {reply['ack']['tick']}")


@god_app.command("intervene")
def god_intervene(
    instance: Annotated[str, typer.Argument(help="The instance to intervene in")],
    kind: Annotated[str, typer.Argument(help="personality, ritual or vibe")],
    agent: Annotated[str | None, typer.Option(help="personality: the agent")] = None,
    trait: Annotated[
        list[str] | None, typer.Option(metavar="NAME=VALUE", help="personality: name=value, e.g. warmth=0.9")
    ] = None,
    name: Annotated[str | None, typer.Option(help="ritual: its name")] = None,
    participant: Annotated[
        list[str] | None, typer.Option(metavar="AGENT", help="ritual: an agent taking part (repeatable)")
    ] = None,
    blessed: Annotated[bool, typer.Option(help="ritual: already blessed")] = False,
    condition: Annotated[str | None, typer.Option(help="vibe: calm-bloom, echo-storm, ...")] = None,
    intensity: Annotated[str, typer.Option(help="vibe: 0..1")] = "0.8",
    duration: Annotated[int, typer.Option(min=1, help="vibe: ticks")] = 20,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """PUPPET_MASTER_INTERVENTION: modify a personality, inject a ritual, or alter the vibe weather."""
    traits = dict(pair(t, "--trait") for t in trait or [])
    body: dict[str, Any] = {"instance": instance, "kind": kind, "agent": agent, "traits": traits or None,
                            "name": name, "participants": participant, "blessed": blessed, "condition": condition,
                            "intensity": intensity, "duration": duration}  # fmt: skip
    reply = _god(url, "intervene", body)
    emit(reply, as_json, f"{kind} intervention stored in {instance}, applies at tick {reply['ack']['tick']}")


@god_app.command("rewrite")
def god_rewrite(
    instance: Annotated[str, typer.Argument(help="The instance whose history is rewritten (it keeps its own)")],
    from_tick: Annotated[int, typer.Option("--from-tick", min=0, help="Rewrite history from this tick")],
    drop: Annotated[
        list[int] | None, typer.Option(metavar="SEQ", help="Leave out the input with this seq (repeatable)")
    ] = None,
    add: Annotated[list[str] | None, typer.Option(metavar="JSON", help="Add this input (JSON; repeatable)")] = None,
    branch_id: Annotated[str | None, typer.Option("--id", help="The new branch's id")] = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """PUPPET_MASTER_INTERVENTION: rewrite history from a tick as a new branch, replayed to the present."""
    body = {"instance": instance, "kind": "rewrite", "from_tick": from_tick, "drop": drop or [],
            "add": [json_arg(a, "--add") for a in add or []], "id": branch_id}  # fmt: skip
    reply = _god(url, "intervene", body)
    emit(reply, as_json, f"rewrote {instance} from tick {from_tick} as {reply['branch']} (now at tick "
                          f"{reply['tick']}, {reply['state_hash'][:19]})")  # fmt: skip


@god_app.command("run")
def god_run(
    command: Annotated[str, typer.Argument(help='A command as JSON, e.g. {"type": "FREEZE_TIME"}; - reads stdin')],
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    _json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (as this command always does)")
    ] = False,
) -> None:
    """Send any god-mode command as JSON (POST /api/god); prints the result object as JSON."""
    text = typer.get_text_stream("stdin").read() if command == "-" else command
    reply = _request("POST", url, "/api/god", json_arg(text, "the command"))
    typer.echo(json.dumps(reply))
