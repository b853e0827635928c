"""The minikube target: an isvc on the sandbox cluster `ansible-playbook sandbox.yml` stands up.

`up` does what a Lift Wing deployment does, locally:

1. builds the component images inside the minikube node (the node's Docker daemon through
   `minikube docker-env`, so no registry is needed and the node keeps the layer cache) and tags
   them `dev.local/<image>:<content hash>` (Knative skips tag resolution for dev.local);
2. uploads the model to the sandbox's S3 store at its production path (through a port-forward to
   the store, with the credentials the playbook wrote to a 0600 file);
3. applies `manifests/isvcs/<isvc>.yaml` (rendered with those tags) server-side;
4. waits for the InferenceService's Ready condition with a deadline;
5. sends every sample in service.yaml through the Istio ingress with the production Host header,
   prints the responses and checks them.

Any failure prints the isvc conditions, the revision and pod events and the container logs
(storage-initializer included) and raises `RuntimeError_`. Re-applying an unchanged service leaves
its generation (and revision) as it was; a changed image or env rolls a new revision.

Everything that builds a command line or reads a cluster document is a pure function, tested
against recorded documents; only `_run` talks to the cluster.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox import manifests
from sandbox.catalog import Service
from sandbox.checks import evaluate
from sandbox.paths import REPO_ROOT, run_dir
from sandbox.runtime.base import ComponentStatus, RuntimeError_, UpOptions

log = logging.getLogger(__name__)

# How long `context_answers()` waits for the API server before the CLI picks another target.
PROBE_TIMEOUT_S = 5.0
POLL_S = 3.0
ISVC_LABEL = "serving.kserve.io/inferenceservice"
# KServe's defaulting webhook renames the single custom container to this.
KSERVE_CONTAINER = "kserve-container"
FIELD_MANAGER = "ml-sandbox"
# The model store credentials the playbook writes (mode 0600), under the sandbox home: the
# s3_credentials role's `s3_credentials_file` (a test keeps the two equal).
CREDENTIALS_RELPATH = "state/s3-credentials.json"


# --- where the cluster is: the facts the playbook leaves behind ---------------------------------


# The playbook's shared settings: the one place the profile, ingress and model store are named.
PLAYBOOK_VARS = REPO_ROOT / "playbooks" / "group_vars" / "all" / "sandbox.yml"
# `sandbox_home` in PLAYBOOK_VARS (a Jinja expression there, on the host running the playbook).
SANDBOX_HOME = Path.home() / ".local" / "share" / "ml-sandbox"


@dataclass(frozen=True)
class ClusterFacts:
    """What the playbook set up: its group_vars defaults, each overridable from the env."""

    profile: str  # minikube profile, also the kubectl context name
    driver: str  # docker (the default) or none
    bin_dir: Path  # the pinned kubectl/minikube the playbook installs
    # The Knative ingress gateway's NodePort: the docker driver publishes it on the host at
    # ingress_host_address:ingress_host_port; with the none driver the host is the node.
    ingress_host: str
    ingress_port: int
    s3_namespace: str
    s3_service: str
    s3_port: int
    s3_bucket: str
    s3_region: str
    s3_credentials_file: Path  # 0600, written by the playbook

    @property
    def context(self) -> str:
        return self.profile

    def tool(self, name: str) -> str:
        """A pinned tool from the sandbox bin dir, else from PATH, else its bare name."""
        pinned = self.bin_dir / name
        if pinned.is_file():
            return str(pinned)
        return shutil.which(name) or name


def load_facts(
    vars_file: Path = PLAYBOOK_VARS, env: Mapping[str, str] | None = None
) -> ClusterFacts:
    """The cluster facts from the playbook's vars file; SANDBOX_* env variables override them."""
    env = os.environ if env is None else env
    try:
        v = yaml.safe_load(vars_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RuntimeError_(f"cannot read the playbook settings {vars_file}: {e}") from None
    home = Path(env.get("SANDBOX_HOME", str(SANDBOX_HOME)))

    def pick(key: str, var: str) -> str:
        if key in env:
            return env[key]
        if var not in v:
            raise RuntimeError_(f"{vars_file}: {var} is not set")
        return str(v[var])

    def number(key: str, var: str) -> int:
        value = pick(key, var)
        try:
            return int(value)
        except ValueError:
            raise RuntimeError_(f"{key} / {var} must be a port number, got {value!r}") from None

    driver = pick("SANDBOX_MINIKUBE_DRIVER", "minikube_driver")
    if driver == "docker":
        ingress_port = number("SANDBOX_INGRESS_PORT", "ingress_host_port")
    else:
        ingress_port = number("SANDBOX_INGRESS_PORT", "ingress_node_port")
    return ClusterFacts(
        profile=pick("SANDBOX_MINIKUBE_PROFILE", "minikube_profile"),
        driver=driver,
        bin_dir=Path(env.get("SANDBOX_BIN_DIR", str(home / "bin"))),
        ingress_host=pick("SANDBOX_INGRESS_HOST", "ingress_host_address"),
        ingress_port=ingress_port,
        s3_namespace=pick("SANDBOX_S3_NAMESPACE", "model_store_namespace"),
        s3_service=pick("SANDBOX_S3_SERVICE", "model_store_service"),
        s3_port=number("SANDBOX_S3_PORT", "model_store_s3_port"),
        s3_bucket=pick("SANDBOX_S3_BUCKET", "model_store_bucket"),
        s3_region=pick("SANDBOX_S3_REGION", "model_store_region"),
        s3_credentials_file=Path(
            env.get("SANDBOX_S3_CREDENTIALS_FILE", str(home / CREDENTIALS_RELPATH))
        ),
    )


# --- command lines ------------------------------------------------------------------------------


def kubectl_argv(facts: ClusterFacts, *args: str) -> list[str]:
    return [facts.tool("kubectl"), "--context", facts.context, *args]


def minikube_argv(facts: ClusterFacts, *args: str) -> list[str]:
    return [facts.tool("minikube"), "-p", facts.profile, *args]


def apply_argv(facts: ClusterFacts, path: Path) -> list[str]:
    """Server-side apply: the InferenceService CRD is too big for client-side apply's annotation,
    and the sandbox owns these objects, so it takes over fields someone edited by hand."""
    return kubectl_argv(
        facts,
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--force-conflicts",
        "-f",
        str(path),
    )


def get_isvc_argv(facts: ClusterFacts, service: Service) -> list[str]:
    return kubectl_argv(
        facts, "get", "inferenceservice", service.name, "-n", service.namespace, "-o", "json"
    )


def list_isvcs_argv(facts: ClusterFacts) -> list[str]:
    selector = ",".join(f"{k}={v}" for k, v in manifests.MANAGED_BY.items())
    return kubectl_argv(facts, "get", "inferenceservice", "-A", "-l", selector, "-o", "json")


def delete_isvc_argv(facts: ClusterFacts, name: str, namespace: str) -> list[str]:
    return kubectl_argv(
        facts,
        "delete",
        "inferenceservice",
        name,
        "-n",
        namespace,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=180s",
    )


def pods_argv(facts: ClusterFacts, service: Service) -> list[str]:
    return kubectl_argv(
        facts,
        "get",
        "pods",
        "-n",
        service.namespace,
        "-l",
        f"{ISVC_LABEL}={service.name}",
        "-o",
        "json",
    )


def logs_argv(
    facts: ClusterFacts,
    namespace: str,
    pod: str,
    container: str,
    *,
    previous: bool = False,
    tail: int = 200,
) -> list[str]:
    argv = kubectl_argv(facts, "logs", "-n", namespace, pod, "-c", container, f"--tail={tail}")
    return [*argv, "--previous"] if previous else argv


def follow_logs_argv(
    facts: ClusterFacts, service: Service, component: str | None, follow: bool
) -> list[str]:
    selector = f"{ISVC_LABEL}={service.name}"
    if component:
        selector += f",component={component}"
    argv = kubectl_argv(
        facts,
        "logs",
        "-n",
        service.namespace,
        "-l",
        selector,
        "--all-containers",
        "--prefix",
        "--tail=200",
        "--max-log-requests=20",
    )
    return [*argv, "--follow"] if follow else argv


def port_forward_argv(facts: ClusterFacts, local_port: int) -> list[str]:
    return kubectl_argv(
        facts,
        "port-forward",
        "-n",
        facts.s3_namespace,
        f"service/{facts.s3_service}",
        f"{local_port}:{facts.s3_port}",
        "--address=127.0.0.1",
    )


def docker_build_env(docker_env_output: str) -> dict[str, str]:
    """`minikube docker-env --shell bash` output (`export KEY="value"` lines) as a dict."""
    env: dict[str, str] = {}
    for raw in docker_env_output.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            env[key] = value.strip().strip('"').strip("'")
    return env


def stable_ref(ref: str) -> str:
    """`dev.local/ml-sandbox/x:<hash>` -> `dev.local/ml-sandbox/x:sandbox` (the committed tag)."""
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return f"{ref}:{manifests.STABLE_TAG}"
    return f"{repository}:{manifests.STABLE_TAG}"


# --- reading cluster documents ------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""

    def line(self) -> str:
        text = f"{self.type:<28} {self.status:<8} {self.reason}"
        return f"{text}  {self.message}".rstrip() if self.message else text.rstrip()


def conditions(isvc: Mapping[str, Any]) -> list[Condition]:
    return [
        Condition(
            type=c.get("type", "?"),
            status=c.get("status", "Unknown"),
            reason=c.get("reason", ""),
            message=c.get("message", ""),
        )
        for c in (isvc.get("status") or {}).get("conditions") or []
    ]


def is_ready(isvc: Mapping[str, Any]) -> bool:
    """Ready=True for the spec we applied (the status has caught up with the generation)."""
    status = isvc.get("status") or {}
    generation = (isvc.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in conditions(isvc))


def generation(isvc: Mapping[str, Any] | None) -> int | None:
    if not isvc:
        return None
    return (isvc.get("metadata") or {}).get("generation")


def latest_revisions(isvc: Mapping[str, Any]) -> dict[str, str]:
    """Component -> latest created Knative revision, from the isvc status."""
    comps = (isvc.get("status") or {}).get("components") or {}
    return {
        name: c["latestCreatedRevision"]
        for name, c in comps.items()
        if isinstance(c, dict) and c.get("latestCreatedRevision")
    }


def component_statuses(isvc_list: Mapping[str, Any]) -> list[ComponentStatus]:
    """`ml-sandbox status` rows from `kubectl get isvc -A -o json`."""
    rows = []
    for item in isvc_list.get("items") or []:
        meta = item.get("metadata") or {}
        conds = {c.type: c for c in conditions(item)}
        comps = (item.get("status") or {}).get("components") or {}
        for name in ("predictor", "transformer"):
            if name not in (item.get("spec") or {}):
                continue
            cond = conds.get(f"{name.capitalize()}Ready")
            state = "ready" if cond and cond.status == "True" else "not ready"
            comp = comps.get(name) or {}
            rows.append(
                ComponentStatus(
                    target="minikube",
                    isvc=meta.get("name", "?"),
                    component=name,
                    state=state,
                    address=comp.get("url") or f"{meta.get('namespace', '?')}/{meta.get('name')}",
                    detail=(cond.message or cond.reason) if cond and cond.status != "True" else "",
                )
            )
    return rows


@dataclass(frozen=True)
class LogTarget:
    pod: str
    container: str
    previous: bool  # the container restarted: its last run's log says why


def log_targets(pods: Mapping[str, Any]) -> list[LogTarget]:
    """Every init and app container of the isvc's pods (storage-initializer first)."""
    targets = []
    for pod in pods.get("items") or []:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        restarts = {
            s.get("name"): int(s.get("restartCount") or 0)
            for s in (status.get("initContainerStatuses") or [])
            + (status.get("containerStatuses") or [])
        }
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cname = c.get("name", "?")
            targets.append(LogTarget(name, cname, previous=restarts.get(cname, 0) > 0))
    return targets


def relevant_events(events: Mapping[str, Any], isvc: str) -> list[str]:
    """Events of the isvc and of the objects KServe and Knative make for it, oldest first."""
    rows = []
    for e in events.get("items") or []:
        obj = e.get("involvedObject") or {}
        name = obj.get("name", "")
        if name != isvc and not name.startswith(f"{isvc}-"):
            continue
        when = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or ""
        rows.append(
            (
                when,
                f"{when}  {e.get('type', ''):<8} {obj.get('kind', '')}/{name}: "
                f"{e.get('reason', '')}: {e.get('message', '').strip()}",
            )
        )
    return [text for _, text in sorted(rows)]


# --- images, model, samples ---------------------------------------------------------------------


def object_key(service: Service, bucket: str) -> str:
    """The model's key in the bucket: its production path from service.yaml."""
    prefix = f"s3://{bucket}/"
    if not service.model.storage_uri.startswith(prefix):
        raise RuntimeError_(f"{service.name}: model.storage_uri is not in bucket {bucket}")
    return service.model.storage_uri.removeprefix(prefix) + service.model.file


def read_credentials(path: Path) -> dict[str, str]:
    """The playbook's 0600 credentials file (JSON: access_key, secret_key)."""
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except OSError as e:
        raise RuntimeError_(
            f"cannot read the model store credentials {path}: {e.strerror}; "
            "run `ansible-playbook sandbox.yml` (it writes them)"
        ) from None
    if mode & 0o077:
        raise RuntimeError_(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        creds = json.loads(text)
    except ValueError:
        raise RuntimeError_(f"{path}: not JSON") from None
    if not isinstance(creds, dict):
        raise RuntimeError_(f"{path}: expected a JSON object")
    missing = [k for k in ("access_key", "secret_key") if not creds.get(k)]
    if missing:
        raise RuntimeError_(f"{path}: missing {', '.join(missing)}")
    return {k: str(creds[k]) for k in ("access_key", "secret_key")}


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file, in one read."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def same_object(head: Mapping[str, Any], sha256: str, md5: str) -> bool:
    """Whether a HeadObject answer describes these bytes: our sha256 metadata (set on upload), or
    a single-part ETag (the MD5) for an object the playbook seeded."""
    if (head.get("Metadata") or {}).get("sha256") == sha256:
        return True
    return str(head.get("ETag", "")).strip('"') == md5


def send_sample(
    host_port: tuple[str, int], service: Service, sample_body: bytes, timeout_s: float = 30.0
) -> tuple[int, bytes]:
    """POST a body to the isvc through the Istio ingress, with the production Host header."""
    conn = http.client.HTTPConnection(*host_port, timeout=timeout_s)
    try:
        conn.request(
            "POST",
            service.predict_path,
            body=sample_body,
            headers={"Host": service.host, "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --- the target ---------------------------------------------------------------------------------


def ingress_url() -> str:
    """The Istio ingress as the host reaches it (the playbook publishes its NodePort)."""
    facts = load_facts()
    return f"http://{facts.ingress_host}:{facts.ingress_port}"


def context_answers(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the `ml-sandbox` kubectl context has an API server answering, within the timeout.

    The CLI's `--target auto` uses it to pick minikube; it never raises.
    """
    try:
        facts = load_facts()
    except RuntimeError_:
        return False
    argv = kubectl_argv(facts, f"--request-timeout={int(max(timeout_s, 1))}s", "version", "-o=json")
    try:
        out = subprocess.run(argv, capture_output=True, timeout=timeout_s + 2, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0:
        return False
    try:
        return "serverVersion" in json.loads(out.stdout)
    except ValueError:
        return False


@dataclass
class MinikubeTarget:
    name: str = "minikube"
    facts: ClusterFacts = field(default_factory=load_facts)
    out: Any = field(default_factory=lambda: sys.stdout)
    _node_env: dict[str, str] | None = field(default=None, init=False, repr=False)

    # -- plumbing --

    def _run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 600,
    ) -> subprocess.CompletedProcess:
        log.debug("$ %s", " ".join(argv))
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                env={**os.environ, **(env or {})},
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise RuntimeError_(
                f"{argv[0]} not found; run `ansible-playbook sandbox.yml` to install the "
                f"sandbox tools into {self.facts.bin_dir}"
            ) from None
        except subprocess.TimeoutExpired:
            raise RuntimeError_(f"timed out after {timeout}s: {' '.join(argv)}") from None
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            raise RuntimeError_(f"`{' '.join(argv[:4])} ...` failed: {detail}")
        return proc

    def _json(self, argv: Sequence[str], *, missing_ok: bool = False) -> dict[str, Any] | None:
        proc = self._run(argv, check=False)
        if proc.returncode != 0:
            if missing_ok and "NotFound" in proc.stderr:
                return None
            raise RuntimeError_(f"`{' '.join(argv[:5])} ...` failed: {proc.stderr.strip()}")
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise RuntimeError_(f"`{' '.join(argv[:5])} ...` did not print JSON") from None

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _require_cluster(self) -> None:
        if not context_answers():
            raise RuntimeError_(
                f"the minikube sandbox (kubectl context {self.facts.context!r}) does not answer; "
                "start it with `ansible-playbook sandbox.yml`"
            )

    # -- images --

    def _docker_env(self) -> dict[str, str]:
        """The node's Docker daemon, or none (the `none` driver builds on the host's daemon)."""
        if self._node_env is None and self.facts.driver == "none":
            self._node_env = {}
        if self._node_env is None:
            argv = minikube_argv(self.facts, "docker-env", "--shell", "bash")
            proc = self._run(argv, check=False)
            if proc.returncode == 0:
                self._node_env = docker_build_env(proc.stdout)
            elif "none" in proc.stderr + proc.stdout:
                self._node_env = {}
            else:
                raise RuntimeError_(f"minikube docker-env failed: {proc.stderr.strip()}")
            self._ensure_base_image(self._node_env)
        return self._node_env

    def _ensure_base_image(self, node_env: dict[str, str]) -> None:
        """The node builds FROM the base image too: load the host's copy into it once."""
        from sandbox import images

        base = images.base_image()
        if not node_env or images.image_exists(base, node_env) or not images.image_exists(base):
            return  # same daemon, already there, or missing on the host (images says how to fix)
        self._say(f"loading the base image {base} into the minikube node")
        self._run(minikube_argv(self.facts, "image", "load", base), timeout=900)

    def build_images(self, service: Service) -> dict[str, str]:
        """Build every component image into the node; component -> `dev.local/<image>:<hash>`.
        An image whose content-hash tag the node already has is not rebuilt."""
        from sandbox import images

        env = self._docker_env()
        refs = images.build_images(service, registry=manifests.IMAGE_REGISTRY, env=env)
        for ref in refs.values():
            self._tag_stable(ref, env)
        return refs

    def _tag_stable(self, ref: str, env: dict[str, str]) -> None:
        """Also tag the build `:sandbox`, so the committed manifests apply by hand too."""
        from sandbox import images

        images.docker("tag", ref, stable_ref(ref), env=env)

    # -- model --

    @contextmanager
    def _s3_forward(self) -> Iterator[str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            port_forward_argv(self.facts, port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    detail = proc.stderr.read().strip() if proc.stderr else ""
                    raise RuntimeError_(f"port-forward to the model store failed: {detail}")
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.3)
            else:
                raise RuntimeError_("port-forward to the model store did not open within 30s")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def upload_model(self, service: Service, model_file: Path) -> None:
        """Put the model at its production path; skipped when the store has the same bytes."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        creds = read_credentials(self.facts.s3_credentials_file)
        key = object_key(service, self.facts.s3_bucket)
        digest, md5 = file_digests(model_file)
        with self._s3_forward() as endpoint:
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=creds["access_key"],
                aws_secret_access_key=creds["secret_key"],
                region_name=self.facts.s3_region,
                config=Config(s3={"addressing_style": "path"}),
            )
            try:
                try:
                    head = s3.head_object(Bucket=self.facts.s3_bucket, Key=key)
                    if same_object(head, digest, md5):
                        self._say(f"model s3://{self.facts.s3_bucket}/{key} is up to date")
                        return
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                        raise
                self._say(f"uploading {model_file} to s3://{self.facts.s3_bucket}/{key}")
                s3.upload_file(
                    str(model_file),
                    self.facts.s3_bucket,
                    key,
                    ExtraArgs={"Metadata": {"sha256": digest}},
                )
            except (BotoCoreError, ClientError) as e:
                raise RuntimeError_(f"model upload to the sandbox store failed: {e}") from None

    # -- the InferenceService --

    def _isvc(self, service: Service) -> dict[str, Any] | None:
        return self._json(get_isvc_argv(self.facts, service), missing_ok=True)

    def apply(self, service: Service, doc: Mapping[str, Any]) -> bool:
        """Apply server-side; True when the spec changed (a new revision rolls out)."""
        before = generation(self._isvc(service))
        state = run_dir() / "minikube"
        state.mkdir(parents=True, exist_ok=True)
        path = state / f"{service.name}.yaml"
        path.write_text(manifests.dump([dict(doc)], f"services/{service.name}/service.yaml"))
        self._run(apply_argv(self.facts, path))
        after = generation(self._isvc(service))
        changed = before != after
        if before is None:
            self._say(f"created InferenceService {service.namespace}/{service.name}")
        elif changed:
            self._say(f"updated {service.name}: generation {before} -> {after}, new revision")
        else:
            self._say(f"{service.name} unchanged (generation {after})")
        return changed

    def wait_ready(self, service: Service, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self._isvc(service)
            if last and is_ready(last):
                return last
            time.sleep(POLL_S)
        raise RuntimeError_(
            f"{service.name} not Ready within {timeout_s:.0f}s (a first deploy pulls the sidecar "
            "and storage-initializer images: raise --timeout)"
            + "".join(f"\n  {c.line()}" for c in conditions(last or {}))
        )

    def ingress(self) -> tuple[str, int]:
        return self.facts.ingress_host, self.facts.ingress_port

    def send_samples(self, service: Service, timeout_s: float = 60.0) -> list[str]:
        """Every sample through the ingress; returns the failures (empty when all pass)."""
        address = self.ingress()
        failures = []
        for sample in service.samples:
            deadline = time.monotonic() + timeout_s
            while True:  # a scale-from-zero or a route being programmed answers 503 briefly
                try:
                    status, body = send_sample(address, service, sample.body())
                except OSError as e:
                    status, body = 0, str(e).encode()
                if status not in (0, 502, 503) or time.monotonic() > deadline:
                    break
                time.sleep(POLL_S)
            problems = evaluate(sample, status, body)
            verdict = "ok" if not problems else "FAILED"
            self._say(f"  {sample.name}: HTTP {status} {verdict}")
            self._say("    " + body.decode(errors="replace")[:500])
            failures += [f"{sample.name}: {p}" for p in problems]
        return failures

    def diagnostics(self, service: Service) -> str:
        """Conditions, events, and container logs; for the user when a deploy fails."""
        parts = [f"=== {service.name}: InferenceService conditions"]
        isvc = self._json(get_isvc_argv(self.facts, service), missing_ok=True) or {}
        parts += [c.line() for c in conditions(isvc)] or ["(no status)"]
        parts.append(f"latest revisions: {latest_revisions(isvc) or '(none)'}")
        events = self._json(
            kubectl_argv(self.facts, "get", "events", "-n", service.namespace, "-o", "json")
        )
        parts.append(f"=== {service.name}: events (isvc, revisions, pods)")
        parts += relevant_events(events or {}, service.name) or ["(none)"]
        pods = self._json(pods_argv(self.facts, service)) or {}
        for t in log_targets(pods):
            proc = self._run(
                logs_argv(self.facts, service.namespace, t.pod, t.container, previous=t.previous),
                check=False,
            )
            which = " (previous run)" if t.previous else ""
            parts.append(f"=== logs {t.pod}/{t.container}{which}")
            parts.append((proc.stdout or proc.stderr).rstrip() or "(empty)")
        return "\n".join(parts)

    # -- the replay --

    def deploy_replay(self, timeout_s: float) -> None:
        from sandbox import images

        env = self._docker_env()
        image = images.build_replay_image(registry=manifests.IMAGE_REGISTRY, env=env)
        self._tag_stable(image, env)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(manifests.dump(manifests.render_replay(image), "sandbox/manifests.py"))
        try:
            self._run(apply_argv(self.facts, Path(f.name)))
        finally:
            Path(f.name).unlink()
        self._run(
            kubectl_argv(
                self.facts,
                "rollout",
                "status",
                f"deployment/{manifests.REPLAY_NAME}",
                "-n",
                manifests.REPLAY_NAMESPACE,
                f"--timeout={int(timeout_s)}s",
            ),
            timeout=timeout_s + 10,
        )

    # -- Target protocol --

    def up(self, services: list[Service], opts: UpOptions) -> None:
        from sandbox import models

        if opts.model_source != "sandbox":
            raise RuntimeError_(
                "--model-source applies to the local and docker targets; on minikube the "
                "storage-initializer fetches the sandbox model from the S3 store"
            )
        self._require_cluster()
        env: dict[str, str] = {}
        if opts.mediawiki == "replay":
            self.deploy_replay(opts.timeout_s)
            env["WIKI_URL"] = manifests.REPLAY_URL
        elif opts.mediawiki != "live":
            env["WIKI_URL"] = opts.mediawiki
        failed = []
        for service in services:
            refs = self.build_images(service)
            self.upload_model(service, models.build(service))
            doc = manifests.render_isvc(
                service, image_refs=refs, env_overrides=env, extra_env=opts.env
            )
            self.apply(service, doc)
            try:
                # KServe's VirtualService matches the production Host form as well as its
                # domainTemplate URL (status.url), so the samples use service.host.
                self.wait_ready(service, opts.timeout_s)
                self._say(f"{service.name} Ready; samples through the ingress:")
                problems = self.send_samples(service)
            except RuntimeError_ as e:
                problems = [str(e)]
            if problems:
                self._say("\n".join(problems))
                self._say(self.diagnostics(service))
                failed.append(service.name)
        if failed:
            raise RuntimeError_(f"deploy failed on minikube: {', '.join(failed)}")

    def down(self, names: list[str] | None = None) -> None:
        from sandbox import catalog

        if not context_answers():
            self._say(
                f"minikube: context {self.facts.context!r} does not answer; nothing to remove"
            )
            return
        if names:
            targets = [(s.name, s.namespace) for s in map(catalog.get, names)]
        else:
            listed = self._json(list_isvcs_argv(self.facts)) or {}
            targets = [
                (i["metadata"]["name"], i["metadata"]["namespace"])
                for i in listed.get("items") or []
            ]
        for name, namespace in targets:
            self._run(delete_isvc_argv(self.facts, name, namespace), timeout=240)
            self._say(f"deleted InferenceService {namespace}/{name}")
        if not names:
            self._run(
                kubectl_argv(
                    self.facts,
                    "delete",
                    "namespace",
                    manifests.REPLAY_NAMESPACE,
                    "--ignore-not-found",
                    "--wait=false",
                )
            )

    def status(self) -> list[ComponentStatus]:
        if not context_answers():
            return []
        return component_statuses(self._json(list_isvcs_argv(self.facts)) or {})

    def logs(self, isvc: str, component: str | None, follow: bool, lines: int | None = None) -> int:
        from sandbox import catalog

        argv = follow_logs_argv(self.facts, catalog.get(isvc), component, follow)
        if lines is not None:
            argv.append(f"--tail={lines}")
        try:
            return subprocess.call(argv)
        except FileNotFoundError:
            raise RuntimeError_(
                f"{argv[0]} not found; run `ansible-playbook sandbox.yml`"
            ) from None
