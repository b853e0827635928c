"""The isvc images, built for real from the local debootstrapped bookworm base."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import yaml

from sandbox import images, models
from sandbox.checks import evaluate
from tests.docker.conftest import inspect

pytestmark = pytest.mark.docker

COMPILERS = ["gcc", "cc", "c++", "g++", "clang", "make", "ld", "as"]


def _component_tags(built) -> list[str]:
    return [tag for isvc, tags in built.items() if isvc != "mediawiki" for tag in tags.values()]


def _all_tags(built) -> list[str]:
    return [tag for tags in built.values() for tag in tags.values()]


def test_every_component_has_an_image(built, services) -> None:
    for name, svc in services.items():
        assert set(built[name]) == {n for n, _ in svc.component_items()}
        for component, tag in built[name].items():
            assert tag == images.image_tag(svc, component)
            labels = inspect(tag)["Config"]["Labels"]
            assert labels["org.ml-sandbox.content-hash"] == tag.rsplit(":", 1)[1]


def test_images_build_from_the_local_base(built) -> None:
    base_layers = inspect(images.base_image())["RootFS"]["Layers"]
    for tag in _all_tags(built):
        layers = inspect(tag)["RootFS"]["Layers"]
        assert layers[: len(base_layers)] == base_layers, tag
    out = images.docker(
        "run", "--rm", "--entrypoint", "sh", _component_tags(built)[0], "-c",
        "cat /etc/debian_version; python3 --version",
    ).stdout.split()  # fmt: skip
    assert out[0].startswith("12.")
    assert out[1:3] == ["Python", out[2]] and out[2].startswith("3.11.")


def _blubber_variant(svc, comp) -> dict:
    """The variant of the component's Blubber file its image is built from."""
    doc = yaml.safe_load((svc.source_dir / comp.image.blubber).read_text())
    return doc["variants"][comp.image.variant]


def test_images_run_as_their_non_root_user(built, services) -> None:
    """Every image, the replay server's too, runs as Blubber runs production's isvcs
    (`runs.insecurely: true`: the `lives` user, somebody 65533)."""
    for tag in _all_tags(built):
        assert inspect(tag)["Config"]["User"] == "65533", tag
        uid = images.docker("run", "--rm", "--entrypoint", "id", tag, "-u").stdout.strip()
        assert uid == "65533", tag


def test_no_compilers_or_build_secrets_in_the_images(built) -> None:
    script = f"for c in {' '.join(COMPILERS)}; do command -v $c || true; done; ls -A /run/secrets"
    for tag in _all_tags(built):
        proc = images.docker("run", "--rm", "--entrypoint", "sh", tag, "-c", script, check=False)
        assert proc.stdout == "", f"{tag} has build tools: {proc.stdout}"
        assert "/run/secrets" in proc.stderr, f"{tag} keeps /run/secrets: {proc.stderr}"


def test_entrypoint_starts_the_component_like_kserve(built, services) -> None:
    """Each component's image starts its model server as its Blubber file says; KServe's args
    follow. Nothing of the sandbox is in the image."""
    for name, svc in services.items():
        for component, comp in svc.component_items():
            config = inspect(built[name][component])["Config"]
            assert config["Entrypoint"] == _blubber_variant(svc, comp)["entrypoint"]
            assert not any(e.startswith("SANDBOX_") for e in config["Env"]), config["Env"]


def test_rebuilding_an_unchanged_service_reuses_its_images(built, services) -> None:
    svc = services["langid"]
    first = images.build_images(svc)
    before = {c: inspect(t)["Id"] for c, t in first.items()}
    log = images.build_log(images.component_recipe(svc, "predictor"))
    log_mtime = log.stat().st_mtime if log.exists() else None
    again = images.build_images(svc)
    assert again == first
    assert {c: inspect(t)["Id"] for c, t in again.items()} == before
    assert (log.stat().st_mtime if log.exists() else None) == log_mtime  # no docker build ran


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(url: str, cid: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if json.loads(r.read()).get("ready"):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if not inspect(cid)["State"]["Running"]:
            break
        time.sleep(0.2)
    logs = images.docker("logs", cid).stderr
    pytest.fail(f"the container did not become ready:\n{logs[-3000:]}")


def test_predictor_container_answers_a_sample(built, services, run_container, tmp_path) -> None:
    """The predictor image alone, as KServe runs it: args, env from service.yaml, the model
    read-only under /mnt/models, port 8080 published on 127.0.0.1 only."""
    svc = services["langid"]
    comp = svc.components.predictor
    models_dir = tmp_path / "models"
    models.stage(
        svc, models_dir, private=False
    )  # the container user (65533) reads it, as on docker
    env = [f"--env={k}={v}" for k, v in comp.env.items()]
    cid = run_container(
        "--publish", "127.0.0.1::8080", "--volume", f"{models_dir}:/mnt/models:ro", *env,
        built["langid"]["predictor"], "--model_name", svc.name, "--http_port", "8080",
    )  # fmt: skip
    port = images.docker("port", cid, "8080/tcp").stdout.split(":")[-1].strip()
    base = f"http://127.0.0.1:{port}"
    _wait_ready(f"{base}/v1/models/{svc.name}", cid)
    for sample in svc.samples:
        status, body = _post(base + svc.predict_path, sample.body())
        assert evaluate(sample, status, body) == [], sample.name
    # The model server is the container's only process (PID 1), so it gets the kubelet's SIGTERM.
    top = images.docker("top", cid, "-o", "pid,args").stdout.splitlines()[1:]
    assert [line.split(None, 1)[1] for line in top] == [
        "python3 langid/model.py --model_name langid --http_port 8080"
    ]
    assert inspect(cid)["Config"]["User"] == "65533"
