"""The deployment material in deploy/: it must keep matching the bot it deploys.

Every file is read the way its tool reads it (YAML for compose and Kubernetes, JSON for the App
manifest, the project's own Dockerfile parser, systemd's key=value sections), and checked
against the code: settings named in deploy files are ones `bot.config.Settings` reads, secrets
arrive only through `*_FILE` variables that really load them, grace periods outlast the
service's own shutdown grace, and the image's base pin is one the base-image runbook re-pins
(proved against a real OCI registry on 127.0.0.1 acting as Docker Hub's mirror).  No Docker, no
Kubernetes, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import ast
import http.server
import io
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.cli import main
from bot.config import _SECRET_SETTINGS, Settings, load_settings
from bot.manifests.dockerfile import DEFAULT_DOCKERFILES, Dockerfile, select_dockerfiles
from bot.models import RunRequest, Trigger
from bot.runbook import runbooks_dir
from bot.service.app import ServiceOptions
from bot.service.distributed.fleet import FleetQueue, conninfo
from tests.support.git_fixture import commit_directory
from tests.support.oci_registry import Registry, start_registry
from tests.support.postgres import Postgres
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SHUTDOWN_GRACE = ServiceOptions().shutdown_grace
_VARIABLE = re.compile(r"\bROTATION_BOT_[A-Z0-9_]*[A-Z0-9]")
_DURATION = re.compile(r"^(?:(\d+)m)?(?:(\d+)s?)?$")


# --- helpers --------------------------------------------------------------------------------


def deploy_files() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*") if path.is_file())


def known_variables() -> set[str]:
    """`ROTATION_BOT_<FIELD>` and `..._FILE` for every setting, plus the runbook directory."""
    names = {f"ROTATION_BOT_{name.upper()}" for name in Settings.__dataclass_fields__}
    return names | {f"{name}_FILE" for name in names} | {"ROTATION_BOT_RUNBOOKS_DIR"}


def secret_variables() -> set[str]:
    return {f"ROTATION_BOT_{name.upper()}" for name in _SECRET_SETTINGS}


def seconds(value: str | int) -> float:
    """`90`, `90s`, `1m30s` → seconds."""
    match = _DURATION.match(str(value))
    assert match and any(match.groups()), f"not a duration: {value!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def dockerfile_text() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def final_stage(text: str) -> list[dict[str, Any]]:
    """The instructions of the last stage, as dockerfile-parse reads them."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    instructions: list[dict[str, Any]] = parser.structure
    last_from = max(i for i, item in enumerate(instructions) if item["instruction"] == "FROM")
    return instructions[last_from:]


def image_environment() -> dict[str, str]:
    environment: dict[str, str] = {}
    for item in final_stage(dockerfile_text()):
        if item["instruction"] == "ENV":
            for word in shlex.split(item["value"]):
                name, _, value = word.partition("=")
                environment[name] = value
    return environment


def image_user() -> str:
    users = [i["value"] for i in final_stage(dockerfile_text()) if i["instruction"] == "USER"]
    assert users, "the runtime stage has no USER"
    return str(users[-1])


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return data


def compose_service() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["rotation-bot"]
    return service


def kubernetes_documents() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes, by kind (the kustomization included)."""
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert document["kind"] not in documents, f"two {document['kind']} objects"
            documents[document["kind"]] = {**document, "_file": path.name}
    return documents


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = kubernetes_documents()["Deployment"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    result: dict[str, Any] = only
    return result


def unit() -> dict[str, list[tuple[str, str]]]:
    """The systemd unit: section → (key, value) in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in (DEPLOY / "systemd" / "rotation-bot.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, separator, value = line.partition("=")
        assert separator, f"not key=value: {raw!r}"
        current.append((key, value))
    return sections


def service_values(key: str) -> list[str]:
    return [value for name, value in unit()["Service"] if name == key]


def service_value(key: str) -> str:
    values = service_values(key)
    assert len(values) == 1, f"{key}= appears {len(values)} times in the unit"
    return values[0]


def unit_environment() -> dict[str, str]:
    return dict(value.split("=", 1) for value in service_values("Environment"))


# --- settings and secrets across every deploy file ----------------------------------------


def test_deploy_files_name_only_settings_the_bot_reads() -> None:
    known = known_variables()
    # the one setting outside Settings (another runbook directory); nothing in deploy/ needs it
    assert runbooks_dir({"ROTATION_BOT_RUNBOOKS_DIR": "/x/runbooks"}) == Path("/x/runbooks")
    used: dict[str, set[str]] = {}
    for path in deploy_files():
        for name in _VARIABLE.findall(path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    unknown = {name: sorted(files) for name, files in used.items() if name not in known}
    assert not unknown, f"settings bot.config.Settings does not read: {unknown}"
    # the material really configures the service (a broken regex would pass vacuously)
    assert {
        "ROTATION_BOT_GITHUB_APP_KEY_FILE",
        "ROTATION_BOT_WEBHOOK_SECRET_FILE",
        "ROTATION_BOT_STATE_DIR",
        "ROTATION_BOT_LISTEN",
    } <= set(used)


def test_no_deploy_file_carries_a_credential() -> None:
    credential = re.compile(
        r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|npm_[A-Za-z0-9]{30,}"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|_authToken=[A-Za-z0-9._~+/-]{16,}"
    )
    leaks = {
        str(path.relative_to(ROOT)): found
        for path in deploy_files()
        if (found := credential.findall(path.read_text(encoding="utf-8")))
    }
    assert not leaks


def test_secret_settings_are_never_set_directly() -> None:
    """Compose, Kubernetes, systemd and the image set secrets only through `*_FILE`."""
    secrets = secret_variables()
    assert "ROTATION_BOT_GITHUB_APP_KEY" in secrets and "ROTATION_BOT_WEBHOOK_SECRET" in secrets
    set_directly = {
        "Dockerfile ENV/ARG": set(image_environment())
        | set(re.findall(r"^ARG\s+(\w+)", dockerfile_text(), re.MULTILINE)),
        "compose environment": set(compose_service()["environment"]),
        "Deployment env": {item["name"] for item in container()["env"]},
        "ConfigMap": set(kubernetes_documents()["ConfigMap"]["data"]),
        "systemd Environment=": set(unit_environment()),
    }
    for where, names in set_directly.items():
        assert not names & secrets, f"{where} sets a secret directly: {sorted(names & secrets)}"


# --- the image -------------------------------------------------------------------------------


def test_every_base_image_is_pinned_by_digest_with_its_readable_tag() -> None:
    text = dockerfile_text()
    parsed = Dockerfile.parse(text, "deploy/Dockerfile")
    stages: set[str] = set()
    base_lines = []
    for image, stage in re.findall(
        r"^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", text, re.MULTILINE | re.IGNORECASE
    ):
        if image.lower() not in stages:
            base_lines.append(image)
        if stage:
            stages.add(stage.lower())
    assert len(base_lines) >= 2, "the image is built in stages from pinned bases"
    assert parsed.skipped == (), "a FROM the base-image runbook could not read"
    # every FROM that is not a stage reference is a base image the runbook sees and re-pins
    assert len(parsed.images) == len(base_lines), base_lines
    for image in parsed.images:
        assert image.reference.digest, f"{image.subject}: {image.reference} has no digest"
        assert image.reference.tag, f"{image.subject}: {image.reference} has no readable tag"


def test_the_image_runs_the_service_unprivileged_and_without_secrets() -> None:
    stage = final_stage(dockerfile_text())
    by_kind: dict[str, list[str]] = {}
    for item in stage:
        by_kind.setdefault(item["instruction"], []).append(item["value"])
    assert json.loads(by_kind["ENTRYPOINT"][-1]) == ["rotation-bot"]
    assert json.loads(by_kind["CMD"][-1]) == ["serve"]
    uid, _, gid = image_user().partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit(), "a fixed, numeric, non-root UID"
    environment = image_environment()
    assert environment["ROTATION_BOT_LISTEN"] == "0.0.0.0:8080"
    state = environment["ROTATION_BOT_STATE_DIR"]
    assert json.loads(by_kind["VOLUME"][-1]) == [state]
    assert "ROTATION_BOT_RUNBOOKS_DIR" not in environment, "the wheel carries the runbooks"
    assert "\nCOPY runbooks/ runbooks/\n" in (DEPLOY / "Dockerfile").read_text(), (
        "the build stage needs runbooks/: bot/data/runbooks links to it"
    )
    probe = json.loads(by_kind["HEALTHCHECK"][-1].partition(" CMD ")[2])
    assert probe[0] == "python" and "/healthz" in probe[-1], "probed with Python, no curl"
    assert "curl" not in " ".join(by_kind["RUN"])
    assert "pip install --no-cache-dir '.[postgres]'" in dockerfile_text()
    assert re.search(r"apt-get install [^;&]*\bgit\b", " ".join(by_kind["RUN"]))


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "the context is an allowlist"
    copied = {
        word.rstrip("/")
        for line in re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile_text(), re.MULTILINE)
        for word in line.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "bot", "runbooks"}
    for source in copied:
        assert any(rule.strip("/") == f"!{source}" for rule in ignore), source


def test_the_healthcheck_command_probes_healthz_and_ignores_proxies(tmp_path: Path) -> None:
    (healthcheck,) = [
        i["value"] for i in final_stage(dockerfile_text()) if i["instruction"] == "HEALTHCHECK"
    ]
    argv = json.loads(healthcheck.partition(" CMD ")[2])
    probe = [sys.executable, *argv[1:]]
    seen: list[str] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    environment = {
        "PATH": os.environ["PATH"],
        "ROTATION_BOT_LISTEN": f"0.0.0.0:{port}",
        "HTTP_PROXY": dead_proxy,
        "http_proxy": dead_proxy,
    }
    try:
        healthy = subprocess.run(
            probe, check=False, env=environment, capture_output=True, timeout=30
        )
        assert healthy.returncode == 0, healthy.stderr
        assert seen == ["/healthz"]
    finally:
        server.shutdown()
        server.server_close()
    down = subprocess.run(probe, check=False, env=environment, capture_output=True, timeout=30)
    assert down.returncode != 0


def test_the_image_installs_every_distribution_the_bot_imports() -> None:
    """`pip install '.[postgres]'` in the image installs pyproject's dependencies and that extra
    only: each third-party module bot/ imports must come from a distribution declared there (not
    a transitive one)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (install,) = re.findall(r"pip install [^\n]*'\.\[(\w+)\]'", dockerfile_text())
    requirements = [*project["dependencies"], *project["optional-dependencies"][install]]
    declared = {canonicalize_name(Requirement(item).name) for item in requirements}
    providers = packages_distributions()
    imported: dict[str, set[str]] = {}
    for path in sorted((ROOT / "bot").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "bot" and top not in sys.stdlib_module_names:
                    imported.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    undeclared = {
        module: sorted(files)
        for module, files in imported.items()
        if not {canonicalize_name(dist) for dist in providers.get(module, [module])} & declared
    }
    assert not undeclared, f"add to pyproject.toml [project] dependencies: {undeclared}"


# --- compose -----------------------------------------------------------------------------------


def test_compose_runs_the_container_locked_down() -> None:
    service = compose_service()
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert any(entry.split(":")[0] == "/tmp" for entry in service["tmpfs"])
    assert service["user"] == image_user()
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert any(str(port).rsplit(":", 1)[-1] == "8080" for port in service["ports"])
    assert seconds(service["stop_grace_period"]) > SHUTDOWN_GRACE
    state = image_environment()["ROTATION_BOT_STATE_DIR"]
    (volume,) = service["volumes"]
    name, _, target = volume.partition(":")
    assert target == state and name in compose()["volumes"], "state on a named volume"


def test_compose_hands_secrets_over_as_files() -> None:
    service = compose_service()
    declared = compose()["secrets"]
    assert set(service["secrets"]) == set(declared)
    file_variables = {k: v for k, v in service["environment"].items() if k.endswith("_FILE")}
    assert {k.removesuffix("_FILE") for k in file_variables} == {
        "ROTATION_BOT_GITHUB_APP_KEY",
        "ROTATION_BOT_WEBHOOK_SECRET",
    }
    for path in file_variables.values():
        assert path.startswith("/run/secrets/") and path.removeprefix("/run/secrets/") in declared
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/")
    ignored = (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignored, "deploy/secrets/ keeps secret files out of git"


# --- Kubernetes ------------------------------------------------------------------------------


def test_kubernetes_deployment_is_one_locked_down_replica() -> None:
    documents = kubernetes_documents()
    deployment = documents["Deployment"]["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"]["type"] == "Recreate", "never two schedulers at once"
    pod = pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == (
        image_user()
    )
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False, "service links inject ROTATION_BOT_* variables"
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE
    context = container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp under a read-only root"
    state = volumes[mounts[image_environment()["ROTATION_BOT_STATE_DIR"]]]
    claim = documents["PersistentVolumeClaim"]
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_kubernetes_probes_metrics_and_resources() -> None:
    documents = kubernetes_documents()
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert ports == {"http": 8080}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container()[probe]["httpGet"]
        assert check["path"] == "/healthz" and ports[check["port"]] == 8080, probe
    annotations = documents["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == 8080
    resources = container()["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"]
    assert resources["limits"]["cpu"].endswith("m")
    assert int(resources["limits"]["cpu"][:-1]) < 2000, "leave room on a 2-core node"
    service = documents["Service"]["spec"]
    assert service["selector"].items() <= (
        documents["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(8080, "http")]


def test_kubernetes_secrets_reach_the_bot_as_files_it_loads(tmp_path: Path) -> None:
    """The Deployment's env and ConfigMap, with the Secret's keys as files, load as Settings."""
    documents = kubernetes_documents()
    example = documents["Secret"]
    assert all(value.startswith("REPLACE_WITH_") for value in example["stringData"].values())
    kustomization = documents["Kustomization"]
    assert example["_file"] not in kustomization["resources"], "never apply the example"
    listed = set(kustomization["resources"])
    present = {path.name for path in KUBERNETES.glob("*.yaml")}
    assert listed <= present and listed == present - {example["_file"], "kustomization.yaml"}

    pod = pod_spec()
    mounts = {mount["name"]: mount["mountPath"] for mount in container()["volumeMounts"]}
    (secret_volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volume["secret"]["secretName"] == example["metadata"]["name"]
    mounted_at = mounts[secret_volume["name"]]
    files = tmp_path / "secrets"
    files.mkdir()
    for key in example["stringData"]:
        (files / key).write_text(f"value of {key}\n")
    environment = dict(documents["ConfigMap"]["data"])
    for item in container()["env"]:
        environment[item["name"]] = item["value"].replace(mounted_at, str(files))
    environment["ROTATION_BOT_STATE_DIR"] = str(tmp_path / "state")
    settings = load_settings(environment)
    assert settings.github_app_key == "value of github-app-key"
    assert settings.webhook_secret == "value of webhook-secret"
    assert settings.listen == "0.0.0.0:8080"
    assert settings.repositories == ()
    assert settings.github_app_id == documents["ConfigMap"]["data"]["ROTATION_BOT_GITHUB_APP_ID"]


# --- systemd -----------------------------------------------------------------------------------


def test_systemd_unit_is_hardened() -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "rotation-bot",
        "UMask": "0077",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    actual = {key: service_value(key) for key in expected}
    assert actual == expected
    assert "@system-service" in service_values("SystemCallFilter")
    # Node's JIT needs writable+executable memory: this "hardening" would break every npm run.
    assert not service_values("MemoryDenyWriteExecute")
    assert service_value("User") != "root"


def test_systemd_unit_runs_serve_and_stops_gracefully() -> None:
    assert service_value("ExecStart") == "/opt/rotation-bot/.venv/bin/rotation-bot serve"
    assert service_value("KillSignal") == "SIGTERM"
    assert service_value("KillMode") == "mixed", "SIGTERM to the bot, not to its npm and git"
    assert seconds(service_value("TimeoutStopSec")) > SHUTDOWN_GRACE
    environment = unit_environment()
    assert environment["ROTATION_BOT_STATE_DIR"] == "%S/" + service_value("StateDirectory")
    assert environment["PATH"].startswith("/opt/rotation-bot/.venv/bin:")
    assert "ROTATION_BOT_RUNBOOKS_DIR" not in environment, "the installed package has its runbooks"


def test_systemd_credentials_feed_the_file_variables() -> None:
    credentials = dict(value.split(":", 1) for value in service_values("LoadCredential"))
    assert all(path.startswith("/etc/rotation-bot/") for path in credentials.values())
    file_variables = {k: v for k, v in unit_environment().items() if k.endswith("_FILE")}
    assert {k.removesuffix("_FILE") for k in file_variables} == {
        "ROTATION_BOT_GITHUB_APP_KEY",
        "ROTATION_BOT_WEBHOOK_SECRET",
    }
    assert sorted(file_variables.values()) == sorted(f"%d/{name}" for name in credentials)


# --- the GitHub App manifest -------------------------------------------------------------------


def readme_permissions(text: str) -> dict[str, str]:
    """`contents: write, pull requests: write, ... and metadata: read` → manifest keys."""
    sentence = re.search(
        r"needs ((?:[a-z ]+: (?:read|write)(?:, | and )?)+)", " ".join(text.split())
    )
    assert sentence, "the README's sentence naming the App's permissions"
    return {
        name.strip().replace(" ", "_"): level
        for name, level in re.findall(
            r"([a-z ]+): (read|write)", sentence.group(1).replace(" and ", ", ")
        )
    }


def test_app_manifest_asks_for_what_the_readme_says() -> None:
    manifest = json.loads((DEPLOY / "github-app.json").read_text())
    said = readme_permissions((ROOT / "README.md").read_text(encoding="utf-8"))
    assert said == {
        "contents": "write",
        "pull_requests": "write",
        "issues": "write",
        "metadata": "read",
    }
    assert manifest["default_permissions"] == said
    assert manifest["default_events"] == ["issue_comment", "pull_request"]
    assert manifest["public"] is False
    assert manifest["hook_attributes"]["url"].endswith("/webhook")
    assert {"name", "url", "redirect_url"} <= set(manifest)
    deploy_readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert readme_permissions(deploy_readme) == said


# --- the bot keeps its own image fresh -------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = start_registry(tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()


def test_the_base_image_runbook_re_pins_the_image(tmp_path: Path, registry: Registry) -> None:
    """Docker Hub's python image, served by a local mirror, moves: the bot re-pins deploy/."""
    text = dockerfile_text()
    (pinned,) = {image.reference for image in Dockerfile.parse(text, "deploy/Dockerfile").images}
    assert pinned.domain == "docker.io"
    new = registry.push_index(
        pinned.path, pinned.tag or "latest", "moved", created="2024-01-01T00:00:00Z"
    )
    path = tmp_path / "app"
    (path / "deploy").mkdir(parents=True)
    for name in ("Dockerfile", "Dockerfile.dockerignore"):
        (path / "deploy" / name).write_bytes((DEPLOY / name).read_bytes())
    assert select_dockerfiles(
        ["deploy/Dockerfile", "deploy/Dockerfile.dockerignore"], DEFAULT_DOCKERFILES
    ) == ["deploy/Dockerfile", "deploy/Dockerfile.dockerignore"]
    repo = commit_directory(path, "deploy")
    environment = {
        "HOME": str(tmp_path / "home"),
        "ROTATION_BOT_STATE_DIR": str(tmp_path / "state"),
        "ROTATION_BOT_REGISTRY_MIRRORS": f"docker.io={registry.host}",
    }
    result = CliRunner().invoke(
        main,
        ["run", "--repo", str(path), "--runbook", "base-image", "--json"],
        env=environment,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["outcome"] == "proposed", summary
    branch = summary["proposal"]["branch"]
    rotated = (repo.commit(branch).tree / "deploy/Dockerfile").data_stream.read().decode()
    assert rotated == text.replace(str(pinned.digest), new)
    assert text.count(str(pinned.digest)) == 1, "one ARG pins both stages"


# --- the distributed mode: compose.distributed.yaml and kubernetes/distributed/ -----------------

DISTRIBUTED = KUBERNETES / "distributed"
BOT_SERVICES = ("migrate", "web", "scheduler", "worker")


def distributed_compose() -> dict[str, Any]:
    text = (DEPLOY / "compose.distributed.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def distributed_documents() -> dict[str, dict[str, Any]]:
    """Every object in deploy/kubernetes/distributed, by `Kind/name`."""
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(DISTRIBUTED.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            name = document.get("metadata", {}).get("name", "")
            documents[f"{document['kind']}/{name}"] = {**document, "_file": path.name}
    return documents


def serve_roles() -> set[str]:
    serve = main.commands["serve"]
    (role,) = [option for option in serve.params if option.name == "role"]
    return set(role.type.choices)  # type: ignore[attr-defined]


def test_distributed_compose_runs_postgres_two_web_two_schedulers_three_workers() -> None:
    services = distributed_compose()["services"]
    assert set(services) == {"postgres", *BOT_SERVICES}
    replicas = {name: services[name].get("deploy", {}).get("replicas", 1) for name in services}
    assert replicas == {"postgres": 1, "migrate": 1, "web": 2, "scheduler": 2, "worker": 3}
    for role in ("web", "scheduler", "worker"):
        command = services[role]["command"]
        assert command[:2] == ["serve", "--role"] and command[2] == role in serve_roles()
        assert services[role]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
    assert services["migrate"]["command"] == ["migrate"] and "migrate" in main.commands
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]


def test_distributed_compose_keeps_every_bot_container_locked_down() -> None:
    data = distributed_compose()
    declared = data["secrets"]
    secrets = secret_variables()
    for name in BOT_SERVICES:
        service = data["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["user"] == image_user(), name
        assert seconds(service["stop_grace_period"]) > SHUTDOWN_GRACE, name
        environment = service["environment"]
        assert not set(environment) & secrets, f"{name} sets a secret directly"
        files = {k: v for k, v in environment.items() if k.endswith("_FILE")}
        assert "ROTATION_BOT_DATABASE_URL_FILE" in files, name
        for path in files.values():
            secret = path.removeprefix("/run/secrets/")
            assert path.startswith("/run/secrets/") and secret in service["secrets"], name
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/")
    postgres = data["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    # only the web role listens; the others have no HTTP, so the image's /healthz probe is off
    assert "ports" not in data["services"]["worker"]
    for name in ("migrate", "scheduler", "worker"):
        assert data["services"][name]["healthcheck"] == {"disable": True}, name


def test_distributed_kubernetes_objects_are_listed_and_locked_down() -> None:
    documents = distributed_documents()
    kustomization = documents["Kustomization/"]
    example = documents["Secret/rotation-bot-fleet"]
    listed = set(kustomization["resources"])
    present = {path.name for path in DISTRIBUTED.glob("*.yaml")}
    assert listed == present - {example["_file"], "kustomization.yaml"}, "all but the example"
    assert all(value.startswith("REPLACE_WITH_") for value in example["stringData"].values())
    workloads = {
        key: document
        for key, document in documents.items()
        if key.split("/")[0] in ("Deployment", "Job")
    }
    assert set(workloads) == {
        "Deployment/rotation-bot-web",
        "Deployment/rotation-bot-worker",
        "Deployment/rotation-bot-scheduler",
        "Job/rotation-bot-migrate",
    }
    for key, document in workloads.items():
        pod = document["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, key
        assert pod["enableServiceLinks"] is False, key
        assert pod["securityContext"]["runAsNonRoot"] is True, key
        uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
        assert f"{uid}:{gid}" == image_user(), key
        (box,) = pod["containers"]
        context = box["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, key
        assert context["allowPrivilegeEscalation"] is False, key
        assert context["capabilities"]["drop"] == ["ALL"], key
        assert {mount["mountPath"] for mount in box["volumeMounts"]} >= {"/tmp"}, key
        names = {item["name"] for item in box["env"]}
        assert not names & secret_variables(), f"{key} sets a secret directly"
        assert "ROTATION_BOT_DATABASE_URL_FILE" in names, key
        if document["kind"] == "Deployment":
            assert pod["terminationGracePeriodSeconds"] >= 30, key
            role = box["args"]
            assert role[:2] == ["serve", "--role"] and role[2] in serve_roles(), key
            assert key.endswith(role[2]), key
        else:
            assert box["args"] == ["migrate"]
    worker = workloads["Deployment/rotation-bot-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE, "a rotation reaches a step"
    assert workloads["Deployment/rotation-bot-web"]["spec"]["replicas"] >= 2
    assert workloads["Deployment/rotation-bot-scheduler"]["spec"]["replicas"] == 2
    (web,) = workloads["Deployment/rotation-bot-web"]["spec"]["template"]["spec"]["containers"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = documents["Service/rotation-bot-web"]["spec"]
    labels = workloads["Deployment/rotation-bot-web"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()


def test_distributed_kubernetes_settings_load_and_select_the_distributed_mode(
    tmp_path: Path,
) -> None:
    documents = distributed_documents()
    example = documents["Secret/rotation-bot-fleet"]
    files = tmp_path / "secrets"
    files.mkdir()
    values = {**example["stringData"], "database-url": "postgresql+psycopg://bot:pw@db:5432/bot"}
    for key, value in values.items():
        (files / key).write_text(f"{value}\n")
    for key in ("Deployment/rotation-bot-web", "Deployment/rotation-bot-worker"):
        pod = documents[key]["spec"]["template"]["spec"]
        (box,) = pod["containers"]
        (secret_volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert secret_volume["secret"]["secretName"] == example["metadata"]["name"]
        mounted = {m["name"]: m["mountPath"] for m in box["volumeMounts"]}[secret_volume["name"]]
        environment = dict(documents["ConfigMap/rotation-bot-fleet-settings"]["data"])
        for item in box["env"]:
            environment[item["name"]] = item["value"].replace(mounted, str(files))
        environment["ROTATION_BOT_STATE_DIR"] = str(tmp_path / "state")
        settings = load_settings(environment)
        assert settings.distributed, key
        assert settings.webhook_secret == "REPLACE_WITH_THE_WEBHOOK_SECRET"
        assert settings.worker_heartbeat == 10.0 and settings.packument_ttl == 300.0
        assert settings.worker_concurrency == 2


def test_the_worker_scaler_query_counts_the_queue_the_workers_take(
    postgres: Postgres, tmp_path: Path
) -> None:
    """KEDA's query, run against a database `rotation-bot migrate` prepared, counts exactly the
    rotations waiting or running."""
    url = postgres.create_database("keda_query")
    environ = {"ROTATION_BOT_STATE_DIR": str(tmp_path), "PATH": os.environ["PATH"]}
    result = CliRunner().invoke(main, ["--database-url", url, "migrate"], obj=environ)
    assert result.exit_code == 0, result.output
    scaler = distributed_documents()["ScaledObject/rotation-bot-worker"]["spec"]
    assert scaler["scaleTargetRef"]["name"] == "rotation-bot-worker"
    (trigger,) = scaler["triggers"]
    authentication = distributed_documents()["TriggerAuthentication/rotation-bot-postgres"]
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
    (reference,) = authentication["spec"]["secretTargetRef"]
    assert reference["key"] in distributed_documents()["Secret/rotation-bot-fleet"]["stringData"]
    queue = FleetQueue(url)
    try:
        for name in ("a", "b", "c"):
            request = RunRequest(f"octo/{name}", Trigger(kind="schedule", actor="schedule"))
            assert queue.submit(request, if_busy="wait") == "queued"
    finally:
        queue.close()
    with psycopg.connect(conninfo(url)) as connection:
        (count,) = connection.execute(trigger["metadata"]["query"]).fetchone()  # type: ignore[misc]
    assert count == 3
