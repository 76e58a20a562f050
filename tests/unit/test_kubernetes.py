"""The Kubernetes manifests of deploy/kubernetes: the base and each overlay, rendered as
`kubectl apply -k` would (tests/kustomize_support.py), are valid Kubernetes objects (the API's
JSON schemas, offline, from the kubernetes-validate package), and the pod they describe is one
the gateway starts in: every variable and file it is given is one the gateway reads, the
probes ask real routes, the ports are the configured ones, it runs non-root and read-only, its
grace period covers the drain, and the keys Secret it mounts is read, and re-read when a
rotation updates it, the way the kubelet updates it.

No cluster and no socket: the pod's files are laid out in a temporary directory, the settings
loaded from them by the gateway's own loader, and the routes found in the gateway's own app.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import tempfile
import time
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import tornado.httputil
from conftest import REPO_ROOT
from kustomize_support import (
    Resource,
    kustomize_command,
    render,
    render_in_python,
)

from gateway.app import build_context, make_admin_app, make_app
from gateway.config import Secret, Settings, load_settings
from gateway.config.settings import ENV_CONFIG_PATH, ENV_PREFIX, SECRET_FILE_SUFFIX
from gateway.handlers.ops import HealthHandler, MetricsHandler, ReadyHandler
from gateway.keys import KeyDirectory, write_new_key
from gateway.server import DRAIN_SECONDS
from gateway.store.location import parse_store_url
from gateway.store.memory import MemoryStore

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = sorted(p.parent for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
VARIANTS = [BASE, *OVERLAYS]
# The oldest Kubernetes the manifests are for: the preStop `sleep` action is on from 1.30.
KUBERNETES_VERSION = "1.30"
IMAGE_UID = 10001  # the Dockerfile's USER


def name_of(path: Path) -> str:
    return path.relative_to(KUBERNETES).as_posix()


@pytest.fixture(scope="module", params=VARIANTS, ids=name_of)
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return render(request.param)


def one(resources: list[Resource], kind: str, name: str = "oauth-gateway") -> Resource:
    [found] = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def gateway_container(resources: list[Resource]) -> Resource:
    [container] = one(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


# -- The manifests are Kubernetes objects --------------------------------------------------------


def test_there_are_a_base_and_the_two_overlays() -> None:
    assert {name_of(p) for p in OVERLAYS} == {"overlays/redis-sentinel", "overlays/postgresql"}


def test_every_rendered_object_passes_the_kubernetes_schema(rendered: list[Resource]) -> None:
    kinds = sorted(r["kind"] for r in rendered)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace",
                     "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget", "Service",
                     "ServiceAccount"]
    for resource in rendered:
        # strict: a field the API does not know (a typo) is an error, not ignored.
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("mistake", ["unknown field", "wrong type"])
def test_the_schema_check_refuses_a_broken_deployment(mistake: str) -> None:
    deployment = one(render(BASE), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    if mistake == "unknown field":
        container["livenesProbe"] = container.pop("livenessProbe")
    else:
        deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=name_of)
def test_the_python_renderer_renders_what_kustomize_does(variant: Path) -> None:
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: nothing to compare with")
    assert canonical(render_in_python(variant)) == canonical(render(variant))  # the tool's


def canonical(resources: list[Resource]) -> Any:
    """Order-free (lists of named items sorted, resources by kind and name), with generated
    names' hash suffixes blanked."""
    def normal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, list):
            items = [normal(v) for v in value]
            if items and all(isinstance(i, dict) and "name" in i for i in items):
                items.sort(key=lambda i: i["name"])
            return items
        if isinstance(value, str):
            return re.sub(r"^(oauth-gateway-config)-[a-z0-9]{10}$", r"\1-HASH", value)
        return value
    return sorted((normal(r) for r in resources),
                  key=lambda r: (r["kind"], r["metadata"]["name"]))


def test_an_overlay_changes_the_store_and_nothing_else() -> None:
    base = {(r["kind"], r["metadata"]["name"]): r for r in canonical(render(BASE))}
    for overlay in OVERLAYS:
        changed = {(r["kind"], r["metadata"]["name"]) for r in canonical(render(overlay))
                   if base.get((r["kind"], r["metadata"]["name"])) != r}
        assert changed == {("Deployment", "oauth-gateway"),
                           ("NetworkPolicy", "oauth-gateway-store")}, name_of(overlay)
        # In the Deployment, the store's URL alone.
        deployment, base_deployment = (one(render(v), "Deployment") for v in (overlay, BASE))
        overlay_env, base_env = (environment(render(v)) for v in (overlay, BASE))
        assert {k for k in overlay_env.keys() | base_env.keys()
                if overlay_env.get(k) != base_env.get(k)} == {"GATEWAY_STORE__URL"}
        for d in (deployment, base_deployment):
            d["spec"]["template"]["spec"]["containers"][0].pop("env")
        assert canonical([deployment]) == canonical([base_deployment])


def test_the_generated_config_map_name_follows_its_content(tmp_path: Path) -> None:
    """A changed gateway.toml gives the ConfigMap a new name, so the Deployment rolls."""
    copy = tmp_path / "base"
    copy.mkdir()
    for path in BASE.iterdir():
        (copy / path.name).write_text(path.read_text())
    before = one_config_map(render(copy))
    (copy / "gateway.toml").write_text((copy / "gateway.toml").read_text() + "\n# changed\n")
    after = one_config_map(render(copy))
    assert before != after
    assert volume_sources(render(copy))["config"]["configMap"]["name"] == after


def one_config_map(resources: list[Resource]) -> str:
    [name] = [r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap"]
    return str(name)


# -- What the gateway is given is what it reads --------------------------------------------------


def environment(resources: list[Resource]) -> dict[str, str]:
    env = gateway_container(resources).get("env", [])
    assert all(set(e) == {"name", "value"} for e in env), "plain values only"
    return {e["name"]: e["value"] for e in env}


def gateway_variables(cls: type[Any] = Settings, prefix: str = ENV_PREFIX) -> set[str]:
    """Every environment variable the gateway's loader reads (gateway/config/loading.py), from
    the settings' dataclasses: GATEWAY_<SECTION>__<KEY>, plus <KEY>_FILE for a secret. Arrays
    of tables (`[[clients]]`) cannot come from the environment."""
    names = {ENV_CONFIG_PATH} if cls is Settings else set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = [a for a in typing.get_args(hint) if a is not type(None)]
        if isinstance(hint, types.UnionType) and len(optional) == 1:
            hint = optional[0]  # `GoogleSettings | None`
        name = prefix + f.name.upper()
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None
        if dataclasses.is_dataclass(hint):
            names |= gateway_variables(hint, name + "__")  # type: ignore[arg-type]
        elif not dataclasses.is_dataclass(item):
            names.add(name)
            if Secret in (hint, item):
                names.add(name + SECRET_FILE_SUFFIX.upper())
    names.discard(ENV_PREFIX + "DEV_MODE")  # only `serve --dev` sets it (SECURITY D2)
    return names


def test_the_variable_list_is_the_loaders() -> None:
    names = gateway_variables()
    assert {"GATEWAY_CONFIG", "GATEWAY_STORE__URL", "GATEWAY_STORE__PASSWORD_FILE",
            "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE", "GATEWAY_LISTEN__PORT",
            "GATEWAY_COOKIES__PREVIOUS_SECRETS_FILE", "GATEWAY_ADMIN__API_TOKEN_FILE"} <= names
    assert "GATEWAY_DEV_MODE" not in names and "GATEWAY_LISTEN__PORT_FILE" not in names


def test_every_variable_the_pod_is_given_is_one_the_gateway_reads(
        rendered: list[Resource]) -> None:
    given = set(environment(rendered))
    assert given, "the pod is configured"
    assert not given - gateway_variables(), "variables the gateway never reads"


@dataclasses.dataclass
class Pod:
    """The gateway's pod laid out under `root`: its mounts, its environment, its settings."""

    root: Path
    mounts: dict[str, Resource]  # mountPath -> the volume
    environ: dict[str, str]
    settings: Settings
    store_url: str  # as the manifests give it (the settings may hold the base's, see above)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def volume_sources(resources: list[Resource]) -> dict[str, Resource]:
    spec = one(resources, "Deployment")["spec"]["template"]["spec"]
    return {v["name"]: v for v in spec.get("volumes", [])}


def lay_out_pod(resources: list[Resource], root: Path) -> Pod:
    """Every mount of the gateway's container as the kubelet fills it: ConfigMap items from
    the rendered ConfigMap, Secret items as fresh random secrets, the keys Secret as keys
    made by the gateway's own code. Then the settings, loaded with every absolute path the pod
    names moved under `root`."""
    container = gateway_container(resources)
    volumes = volume_sources(resources)
    config_maps = {r["metadata"]["name"]: r for r in resources if r["kind"] == "ConfigMap"}
    mounts = {}
    for mount in container["volumeMounts"]:
        assert "subPath" not in mount, "a subPath mount is never updated in a running pod"
        volume = volumes[mount["name"]]
        mounts[mount["mountPath"]] = volume
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True)
        if "configMap" in volume:
            data = config_maps[volume["configMap"]["name"]]["data"]
            for item in volume["configMap"]["items"]:
                (directory / item["path"]).write_text(data[item["key"]])
        elif "secret" in volume and volume["secret"].get("items"):
            for item in volume["secret"]["items"]:
                (directory / item["path"]).write_text(secrets.token_urlsafe(48))
        elif "secret" in volume:
            lay_out_secret_volume(directory, dict(list(key_files().items())[:2]))
    moved = {path: str(root / path.lstrip("/")) for path in mounts}

    def move(text: str) -> str:
        for path, there in moved.items():
            text = text.replace(f'"{path}/', f'"{there}/').replace(f'"{path}"', f'"{there}"')
            if text == path or text.startswith(path + "/"):
                text = there + text[len(path):]
        return text

    environ = environment(resources)
    moved_environ = {name: move(value) for name, value in environ.items()}
    config = Path(moved_environ[ENV_CONFIG_PATH])
    config.write_text(move_toml(config.read_text(), move))
    store_url = environ["GATEWAY_STORE__URL"]
    parse_store_url(store_url)  # a ValueError: the gateway would refuse to start with it
    settings = load_settings(None, moved_environ)
    return Pod(root, mounts, environ, settings, store_url)


def move_toml(text: str, move: Any) -> str:
    return "\n".join(move(line) for line in text.splitlines()) + "\n"


_KEY_FILES: dict[str, bytes] = {}


def key_files() -> dict[str, bytes]:
    """Two RS256 keys as `oauth-gateway keys generate` writes them, and a third as `keys
    rotate` would add next (made once per run: RSA keys take time)."""
    if not _KEY_FILES:
        with tempfile.TemporaryDirectory() as scratch:
            for when in (1_700_000_000, 1_700_000_100, 1_700_000_200):
                path = write_new_key(Path(scratch), "RS256", now=when)
                _KEY_FILES[path.name] = path.read_bytes()
    return dict(_KEY_FILES)


def lay_out_secret_volume(directory: Path, files: dict[str, bytes], generation: int = 0) -> None:
    """What the kubelet's atomic writer does with a Secret volume: the files in a hidden,
    timestamped directory, `..data` a symlink to it, and one symlink per key at the top. An
    update writes a new timestamped directory, swaps `..data` with a rename, then adds and
    removes the top-level links."""
    stamp = directory / f"..2026_12_04_00_00_{generation:02d}.000000001"
    stamp.mkdir()
    for name, content in files.items():
        (stamp / name).write_bytes(content)
        (stamp / name).chmod(0o440)
    temporary = directory / "..data_tmp"
    temporary.symlink_to(stamp.name)
    old = (directory / "..data").resolve() if (directory / "..data").is_symlink() else None
    os.replace(temporary, directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    for link in directory.iterdir():
        if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
            link.unlink()
    if old is not None:
        for path in old.iterdir():
            path.unlink()
        old.rmdir()


@pytest.fixture
def pod(rendered: list[Resource], tmp_path: Path) -> Pod:
    return lay_out_pod(rendered, tmp_path)


def test_the_pod_has_a_valid_production_configuration(pod: Pod) -> None:
    settings = pod.settings
    assert settings.issuer.startswith("https://") and not settings.dev_mode
    assert settings.cookies.secret and settings.providers.google is not None
    assert settings.providers.google.client_secret and settings.admin.api_token
    assert settings.store.password, "the store password file is read"
    assert settings.listen.workers == 1, "one process per pod: the autoscaler scales pods"
    assert urlsplit(pod.store_url).scheme not in ("sqlite", "memory", ""), "a shared store"


def test_every_mount_is_read_by_the_gateway_and_every_file_it_reads_is_mounted(
        pod: Pod) -> None:
    """Each path the configuration names (the TOML, `<key>_file` secrets, the keys directory)
    lies in a mount; each mount holds something the configuration names."""
    named = [pod.environ[ENV_CONFIG_PATH], pod.settings.tokens.keys_dir]
    toml = pod.path(pod.environ[ENV_CONFIG_PATH]).read_text()
    named += re.findall(r'^[a-z_]+_file = "([^"]+)"', toml, re.MULTILINE)
    named += [value for name, value in pod.environ.items()
              if name.endswith(SECRET_FILE_SUFFIX.upper())]
    named = [str(Path(n)).removeprefix(str(pod.root)) for n in named]
    for path in named:
        assert any(path == m or path.startswith(m + "/") for m in pod.mounts), \
            f"{path} is in no mount"
        assert pod.path(path).exists(), f"{path}: no such item in its mount"
    for mount in pod.mounts:
        assert any(path == mount or path.startswith(mount + "/") for path in named), \
            f"{mount} is mounted but the gateway reads nothing there"
    # Every item of the secrets volume is a file the configuration names.
    for mount, volume in pod.mounts.items():
        for item in volume.get("secret", {}).get("items", []):
            assert f"{mount}/{item['path']}" in named, f"{item['key']} is read by nobody"


def test_the_keys_secret_is_loaded_and_a_rotation_is_seen_by_the_running_gateway(
        tmp_path: Path) -> None:
    pod = lay_out_pod(render(BASE), tmp_path)  # the overlays change the store alone
    keys_dir = Path(pod.settings.tokens.keys_dir)
    directory = KeyDirectory(keys_dir, pod.settings.tokens.algorithm,
                             pod.settings.tokens.key_activation_delay, require_rs256=True)
    settle(keys_dir, 30)
    keyset = directory.load()
    assert len(keyset.all_keys()) == 2
    # `oauth-gateway keys rotate` on a copy, then the Secret updated with the three files:
    # what the kubelet then does to the mounted directory.
    rotated = key_files()
    lay_out_secret_volume(keys_dir, rotated, generation=1)
    settle(keys_dir, 20)
    after = directory.refresh(keyset)
    assert len(after.all_keys()) == 3
    # `keys prune`, the Secret updated without the oldest key: it is no longer published.
    del rotated[min(rotated)]
    lay_out_secret_volume(keys_dir, rotated, generation=2)
    settle(keys_dir, 10)
    assert len(directory.refresh(after).all_keys()) == 2


def settle(directory: Path, age: int) -> None:
    """As if the kubelet had written the directory `age` seconds ago: the test's updates come
    within one tick of the file system's clock, the kubelet's a minute apart, and the gateway
    re-reads the directory when its mtime changed."""
    then = time.time_ns() - age * 1_000_000_000
    os.utime(directory, ns=(then, then), follow_symlinks=False)


# -- Ports, probes, and the pod's security -------------------------------------------------------


def named_ports(container: Resource) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def find_handler(app: Any, path: str) -> type[Any]:
    request = tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine("GET", path, "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Host": "login.example.com"}))
    handler: type[Any] = app.find_handler(request).handler_class
    return handler


def test_probes_ask_the_health_routes_on_the_listen_port(tmp_path: Path) -> None:
    rendered = render(BASE)  # the overlays change the store alone
    pod = lay_out_pod(rendered, tmp_path)
    container = gateway_container(rendered)
    ports = named_ports(container)
    assert ports["http"] == pod.settings.listen.port
    assert ports["admin"] == pod.settings.admin.port
    keys = KeyDirectory(Path(pod.settings.tokens.keys_dir), pod.settings.tokens.algorithm,
                        pod.settings.tokens.key_activation_delay, require_rs256=True).load()
    ctx = build_context(pod.settings, keys, store=MemoryStore())
    app = make_app(ctx)
    expected = {"livenessProbe": HealthHandler, "readinessProbe": ReadyHandler,
                "startupProbe": HealthHandler}
    for probe, handler in expected.items():
        get = container[probe]["httpGet"]
        port = ports.get(get["port"], get["port"])
        assert port == pod.settings.listen.port, f"{probe} asks port {port}"
        assert find_handler(app, get["path"]) is handler, f"{probe} asks {get['path']}"
    # What the pod annotations tell Prometheus is the admin listener's /metrics.
    annotations = one(rendered, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == pod.settings.admin.port
    assert find_handler(make_admin_app(ctx), annotations["prometheus.io/path"]) is MetricsHandler


def test_the_service_and_the_policies_select_the_pods_on_their_ports(
        rendered: list[Resource]) -> None:
    deployment = one(rendered, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = named_ports(gateway_container(rendered))

    def selects(selector: Resource) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    service = one(rendered, "Service")
    assert selects(service["spec"]["selector"])
    # The public port and the data plane; no admin port.
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http", "data-plane"]
    assert selects(one(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    for policy in (one(rendered, "NetworkPolicy"),
                   one(rendered, "NetworkPolicy", "oauth-gateway-store")):
        assert selects(policy["spec"]["podSelector"]["matchLabels"])
        for rule in policy["spec"].get("ingress", []):
            assert all(p["port"] in ports for p in rule["ports"])
    target = one(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "oauth-gateway")


def test_the_network_policy_lets_out_dns_https_and_the_store_alone(
        pod: Pod, rendered: list[Resource]) -> None:
    egress = [(p["port"], p.get("protocol", "TCP"))
              for policy in (one(rendered, "NetworkPolicy"),
                             one(rendered, "NetworkPolicy", "oauth-gateway-store"))
              for rule in policy["spec"]["egress"] for p in rule["ports"]]
    store = urlsplit(pod.store_url)
    store_port = store.port or {"redis": 6379, "postgresql": 5432}[store.scheme]
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP"), (store_port, "TCP")} <= set(egress)
    allowed = {53, 443, store_port} | ({6379} if store.scheme == "redis+sentinel" else set())
    assert {port for port, _ in egress} == allowed
    ingress = [p["port"] for rule in one(rendered, "NetworkPolicy")["spec"]["ingress"]
               for p in rule["ports"]]
    assert sorted(ingress) == ["admin", "data-plane", "http"]


def test_the_data_plane_listens_on_its_named_port_reachable_as_the_public_one(
        pod: Pod, rendered: list[Resource]) -> None:
    """/verify and /auth on the lean listener (gateway/data_plane.py): on in the pod, on the
    container port `data-plane`, behind the Service, and let in from the same namespaces as
    the public port (the ingress controller's auth_request, the apps)."""
    settings = pod.settings.data_plane
    assert settings.enabled and settings.address == "0.0.0.0"
    assert named_ports(gateway_container(rendered))["data-plane"] == settings.port
    assert settings.port != pod.settings.listen.port
    assert "data-plane" in [p["targetPort"] for p in one(rendered, "Service")["spec"]["ports"]]
    sources = {port["port"]: rule["from"]
               for rule in one(rendered, "NetworkPolicy")["spec"]["ingress"]
               for port in rule["ports"]}
    assert sources["data-plane"] == sources["http"]


def test_the_pod_runs_non_root_on_a_read_only_root_with_no_privileges() -> None:
    rendered = render(BASE)  # the overlays change the store alone
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    pod_context = spec["securityContext"]
    assert pod_context["runAsNonRoot"] is True and pod_context["runAsUser"] == IMAGE_UID
    assert pod_context["fsGroup"] == pod_context["runAsGroup"] == IMAGE_UID
    assert pod_context["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    container = gateway_container(rendered)["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in container and "runAsUser" not in container
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in dockerfile
    for volume in spec["volumes"]:
        assert "hostPath" not in volume and "emptyDir" not in volume  # writes nowhere
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] == 0o440  # the gateway's group alone


def test_the_grace_period_covers_the_pause_and_the_drain() -> None:
    rendered = render(BASE)  # the overlays change the store alone
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    pause = gateway_container(rendered)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause > 0
    # gateway/server.py drain: in-flight requests, then the connections left, then back-channel
    # logouts, each bounded by DRAIN_SECONDS.
    assert spec["terminationGracePeriodSeconds"] >= pause + 3 * DRAIN_SECONDS


def test_replicas_budget_autoscaler_and_resources_agree() -> None:
    rendered = render(BASE)  # the overlays change the store alone
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    autoscaler = one(rendered, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["minReplicas"] == 3 < autoscaler["maxReplicas"]
    budget = one(rendered, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    resources = gateway_container(rendered)["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    # One process uses one core at most (docs/benchmarks.md): no use limiting it below, nor
    # granting more.
    assert resources["limits"]["cpu"] == "1"
    assert [m["resource"]["name"] for m in autoscaler["metrics"]] == ["cpu"]
