"""deploy/k8s, rendered by ``kubectl kustomize`` for each overlay and checked offline: every object validates against
the Kubernetes API schemas (kubernetes-validate, strict: unknown fields are errors); the ServiceMonitors, whose CRD
those schemas do not cover, are checked by shape here. Then what the deployment promises: hardened containers with
probes and resources, one meta (Recreate), autoscaled API gateways with a PDB, Services and ServiceMonitors that find
every process, NetworkPolicies that deny by default, and Secrets referred to by the documented names only."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from .deploy_support import DEPLOY, render

OVERLAYS = ("dev", "production")
# The oldest Kubernetes the manifests are held to, and the newest whose schemas kubernetes-validate ships.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
PROCESSES = ("meta", "runtime", "surface", "protocol", "mirror")
Objects = list[dict[str, Any]]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, Objects]:
    return request.param, render(request.param)


def of_kind(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, deployment in of_kind(objects, "Deployment").items():
        yield name, deployment["spec"]["template"]["spec"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def check_service_monitor(monitor: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """A ServiceMonitor (monitoring.coreos.com/v1) as the Prometheus Operator reads it: a label selector that finds
    Services, and endpoints naming one of their ports, with a path and an interval."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    selector = spec["selector"]["matchLabels"]
    found = [s for s in services.values() if selects(selector, s["metadata"].get("labels", {}))]
    assert found, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "authorization"}
        assert re.fullmatch(r"\d+s", endpoint["interval"])
        assert endpoint["path"] == "/metrics"
        for service in found:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}, service["metadata"]["name"]
        if "authorization" in endpoint:
            auth = endpoint["authorization"]
            assert auth["type"] == "Bearer" and set(auth["credentials"]) == {"name", "key"}


def test_every_object_validates_against_the_kubernetes_schemas(rendered: tuple[str, Objects]) -> None:
    _, objects = rendered
    services = of_kind(objects, "Service")
    unknown = []
    for obj in objects:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                unknown.append(obj)
                break
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']} on Kubernetes {version}: {exc}")
    # Only the Prometheus Operator's CRD is outside the schemas; it is checked by shape instead.
    assert {o["kind"] for o in unknown} == {"ServiceMonitor"}
    for monitor in unknown:
        check_service_monitor(monitor, services)


def test_validation_rejects_a_broken_object() -> None:
    """The check above can fail: a mistyped field or an unknown one is refused."""
    deployment = of_kind(render("dev"), "Deployment")["soulfra-api"]
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["replicas"] = "two"
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True  # misspelt
    for broken in (mistyped, unknown):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_every_container_is_hardened_and_sized(rendered: tuple[str, Objects]) -> None:
    _, objects = rendered
    for name, pod in pod_specs(objects):
        assert pod["automountServiceAccountToken"] is False, name
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            tmp = mounts["/tmp"]  # noqa: S108 -- the container's /tmp, mounted from an emptyDir
            assert "emptyDir" in volumes[tmp], f"{where}: a writable /tmp"
            assert container["image"].split(":")[-1] not in ("", "latest"), where


def test_every_process_has_probes_on_its_health_routes(rendered: tuple[str, Objects]) -> None:
    _, objects = rendered
    for name, pod in pod_specs(objects):
        for container in pod["containers"]:
            ports = {p["name"] for p in container["ports"]}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)):
                get = container[probe]["httpGet"]
                assert get["port"] in ports, f"{name}: {probe} on a declared port"
                assert path is None or get["path"] == path, f"{name}: {probe}"


def test_meta_and_the_runtime_are_single_writers(rendered: tuple[str, Objects]) -> None:
    _, objects = rendered
    deployments = of_kind(objects, "Deployment")
    for name in ("soulfra-meta", "soulfra-harbor-runtime"):
        assert deployments[name]["spec"]["replicas"] == 1, name
        assert deployments[name]["spec"]["strategy"] == {"type": "Recreate"}, name
    meta = deployments["soulfra-meta"]["spec"]["template"]["spec"]
    args = meta["containers"][0]["args"]
    assert args[:2] == ["serve", "meta"] and args[args.index("--leave") + 1] == "harbor"
    (migrate,) = meta["initContainers"]
    assert migrate["args"] == ["db", "upgrade", "--db", "$(SOULFRA_DB)"]  # expanded by the kubelet from its env
    assert "SOULFRA_DB" in {e["name"] for e in migrate["env"]}
    for platform in ("runtime", "surface", "protocol", "mirror"):
        container = deployments[f"soulfra-harbor-{platform}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:4] == ["serve", platform, "--instance", "harbor"]
        assert nats_user(container) == f"soulfra-{platform}"
    assert nats_user(meta["containers"][0]) == "soulfra-meta"
    api = deployments["soulfra-api"]["spec"]["template"]["spec"]["containers"][0]
    assert nats_user(api) == "soulfra-control"


def test_every_signer_has_the_installation_key(rendered: tuple[str, Objects]) -> None:
    """meta and the API sign exports and the audit chain's head, and a migration audits itself: each mounts the one
    installation key, so that every replica signs with it; the platforms sign nothing and get no key."""
    _, objects = rendered
    for name, pod in pod_specs(objects):
        keys = {
            v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "soulfra-installation-key"
        }
        for container in pod.get("initContainers", []) + pod["containers"]:
            signer = container["args"][:2] in (["serve", "meta"], ["serve", "api"], ["db", "upgrade"])
            mounted = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/soulfra/home/keys"}
            assert bool(mounted & keys) is signer, f"{name}/{container['name']}"


def nats_user(container: dict[str, Any]) -> str:
    return str({e["name"]: e.get("value") for e in container["env"]}["SOULFRA_NATS_USER"])


def test_the_api_is_autoscaled_and_kept_available(rendered: tuple[str, Objects]) -> None:
    overlay, objects = rendered
    api = of_kind(objects, "Deployment")["soulfra-api"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    hpa = of_kind(objects, "HorizontalPodAutoscaler")["soulfra-api"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "soulfra-api"}
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    assert api["spec"]["replicas"] >= hpa["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    pdb = of_kind(objects, "PodDisruptionBudget")["soulfra-api"]["spec"]
    assert selects(pdb["selector"]["matchLabels"], labels)
    assert 1 <= pdb["minAvailable"] < hpa["minReplicas"]  # a drain can always proceed
    if overlay == "production":
        assert hpa["minReplicas"] >= 3


def test_services_and_service_monitors_find_every_process(rendered: tuple[str, Objects]) -> None:
    _, objects = rendered
    services = of_kind(objects, "Service")
    monitors = of_kind(objects, "ServiceMonitor")
    for name, deployment in of_kind(objects, "Deployment").items():
        template = deployment["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels), name
        container_ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        (service,) = [s for s in services.values() if selects(s["spec"]["selector"], labels)]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, f"{service['metadata']['name']}: {port['targetPort']}"
        scraped = [
            m for m in monitors.values() if selects(m["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        ]
        assert len(scraped) == 1, f"{name} is scraped by exactly one ServiceMonitor"
        assert {e["port"] for e in scraped[0]["spec"]["endpoints"]} <= set(container_ports)


def test_network_policies_deny_by_default_and_open_only_what_is_needed(rendered: tuple[str, Objects]) -> None:
    _, objects = rendered
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["soulfra-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    api_in = policies["soulfra-api-ingress"]["spec"]["ingress"]
    assert api_in == [{"ports": [{"protocol": "TCP", "port": 8000}]}]  # from anywhere, to 8000 only
    processes = policies["soulfra-processes-ingress"]["spec"]
    assert processes["podSelector"]["matchExpressions"][0]["values"] == list(PROCESSES)
    (rule,) = processes["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9464}]
    assert {"podSelector": {}} in rule["from"]  # this namespace's pods
    egress = policies["soulfra-egress"]["spec"]
    ports = {(p["protocol"], p["port"]) for e in egress["egress"] for p in e["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 4222)}
    for name, deployment in of_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(egress["podSelector"]["matchLabels"], labels), f"{name} may reach the database and NATS"


def documented_secrets() -> set[str]:
    """The Secret names in deploy/k8s/README.md's table."""
    text = (DEPLOY / "k8s" / "README.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([a-z0-9-]+)`", text, re.MULTILINE))


def referenced_secrets(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "secretKeyRef" or (key == "credentials" and isinstance(value, dict)):
                yield value["name"]
            elif key == "secret" and isinstance(value, dict):
                yield value["secretName"]
            elif key == "tls" and isinstance(value, list):
                yield from (entry["secretName"] for entry in value)
            else:
                yield from referenced_secrets(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from referenced_secrets(item)


def test_secrets_are_referred_to_by_documented_names_and_never_shipped(rendered: tuple[str, Objects]) -> None:
    overlay, objects = rendered
    assert of_kind(objects, "Secret") == {}
    used = set(referenced_secrets(objects))
    documented = documented_secrets()
    assert used <= documented, f"undocumented Secrets: {used - documented}"
    expected = {"soulfra-database", "soulfra-nats", "soulfra-installation-key", "soulfra-prometheus-token"}
    if overlay == "production":
        expected |= {"soulfra-api-tls", "soulfra-nats-tls"}
    assert used == expected


def test_the_overlays_pick_their_image_and_nats(rendered: tuple[str, Objects]) -> None:
    overlay, objects = rendered
    images = {c["image"] for _, pod in pod_specs(objects) for c in pod.get("initContainers", []) + pod["containers"]}
    config = next(iter(of_kind(objects, "ConfigMap").values()))["data"]
    if overlay == "dev":
        assert images == {"soulfra:local"}
        assert config["SOULFRA_NATS_URL"].startswith("nats://")
        return
    assert images == {"registry.example.com/soulfra:0.1.0"}
    assert config["SOULFRA_NATS_URL"].startswith("tls://")
    ca_directory = config["SOULFRA_NATS_CA"].rsplit("/", 1)[0]
    for name, pod in pod_specs(objects):
        for container in pod["containers"]:
            assert ca_directory in {m["mountPath"] for m in container["volumeMounts"]}, f"{name}: the NATS CA"
    (ingress,) = of_kind(objects, "Ingress").values()
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"] for rule in ingress["spec"]["rules"]]
    assert config["PUBLIC_HOST"] == ingress["spec"]["rules"][0]["host"]


def test_every_variable_reference_is_defined_before_use(rendered: tuple[str, Objects]) -> None:
    """The kubelet expands $(NAME) in env values and args only from variables defined before it (the ConfigMaps of
    envFrom, then env in order); an undefined one stays as the literal text, silently."""
    _, objects = rendered
    config_maps = of_kind(objects, "ConfigMap")
    for name, pod in pod_specs(objects):
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            defined = {
                key
                for source in container.get("envFrom", [])
                for key in config_maps[source["configMapRef"]["name"]]["data"]
            }
            for variable in container.get("env", []):
                for used in re.findall(r"\$\((\w+)\)", variable.get("value", "")):
                    assert used in defined, f"{where}: {variable['name']} uses $({used}) before it is defined"
                defined.add(variable["name"])
            for used in re.findall(r"\$\((\w+)\)", " ".join(container.get("args", []))):
                assert used in defined, f"{where}: its args use $({used}), which is not defined"
