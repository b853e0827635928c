"""The sandbox's S3 model store: the one uploader of models to their production paths.

The playbook creates the store and its bucket; `deploy --target minikube` uploads each isvc's
model here before it applies the InferenceService, through a port-forward to the store, with the
credentials the playbook generated (a 0600 file). An object carries the model's sha256 as
metadata, so an unchanged model is not uploaded again.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.catalog import Service
from sandbox.errors import RunError
from sandbox.hints import venv_tool
from sandbox.models import sha256_of
from sandbox.runtime.minikube.facts import ClusterFacts
from sandbox.runtime.minikube.kubectl import port_forward_argv


def object_key(service: Service, bucket: str) -> str:
    """The model's key in the bucket: its production path from service.yaml."""
    prefix = f"s3://{bucket}/"
    if not service.model.storage_uri.startswith(prefix):
        raise RunError(f"{service.name}: model.storage_uri is not in bucket {bucket}")
    return service.model.storage_uri.removeprefix(prefix) + service.model.file


def read_credentials(path: Path) -> dict[str, str]:
    """The playbook's 0600 credentials file (JSON: access_key, secret_key)."""
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except OSError as e:
        raise RunError(
            f"cannot read the model store credentials {path}: {e.strerror}; "
            f"run `{venv_tool('ansible-playbook')} sandbox.yml` (it writes them)"
        ) from None
    if mode & 0o077:
        raise RunError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        creds = json.loads(text)
    except ValueError:
        raise RunError(f"{path}: not JSON") from None
    if not isinstance(creds, dict):
        raise RunError(f"{path}: expected a JSON object")
    missing = [k for k in ("access_key", "secret_key") if not creds.get(k)]
    if missing:
        raise RunError(f"{path}: missing {', '.join(missing)}")
    return {k: str(creds[k]) for k in ("access_key", "secret_key")}


@contextmanager
def _forward(facts: ClusterFacts) -> Iterator[str]:
    """A port-forward to the store's S3 port for the duration of the block."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        port_forward_argv(facts, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                detail = proc.stderr.read().strip() if proc.stderr else ""
                raise RunError(f"port-forward to the model store failed: {detail}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            raise RunError("port-forward to the model store did not open within 30s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def upload(facts: ClusterFacts, service: Service, model_file: Path, say) -> None:
    """Put the model at its production path; skipped when the store has the same sha256."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    creds = read_credentials(facts.s3_credentials_file)
    key = object_key(service, facts.s3_bucket)
    digest = sha256_of(model_file)
    with _forward(facts) as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=creds["access_key"],
            aws_secret_access_key=creds["secret_key"],
            region_name=facts.s3_region,
            config=Config(s3={"addressing_style": "path"}),
        )
        try:
            try:
                head = s3.head_object(Bucket=facts.s3_bucket, Key=key)
                if (head.get("Metadata") or {}).get("sha256") == digest:
                    say(f"model s3://{facts.s3_bucket}/{key} is up to date")
                    return
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                    raise
            say(f"uploading {model_file} to s3://{facts.s3_bucket}/{key}")
            s3.upload_file(
                str(model_file), facts.s3_bucket, key, ExtraArgs={"Metadata": {"sha256": digest}}
            )
        except (BotoCoreError, ClientError) as e:
            raise RunError(f"model upload to the sandbox store failed: {e}") from None
