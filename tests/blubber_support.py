"""One Blubber file for the tests, shaped like inference-services' own: the structure of
wikimedia/machinelearning-liftwing-inference-services@bce944c:.pipeline/langid/blubber.yaml
(a build variant whose python builder takes the isvc's and the shared requirements, a production
variant copying the code and the build's site-packages, runs.insecurely), with our own values."""

from __future__ import annotations

from collections.abc import Sequence

FRONTEND = "docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v0.21.1"


def _list(items: Sequence[str], indent: str) -> str:
    return "".join(f"\n{indent}- {item}" for item in items)


def inference_services_blubber(
    name: str,
    *,
    entrypoint: Sequence[str] | None = None,
    build_packages: Sequence[str] = ("python3-pip",),
    packages: Sequence[str] = ("python3", "wmf-certificates"),
    extra_copies: Sequence[tuple[str, str]] = (),
) -> str:
    """The Blubber file of isvc `name`, its code in `src/models/<name>/`, shared code in
    `python/`; `extra_copies` are more (source, destination) copies from the build context,
    after the build's site-packages."""
    entry = list(entrypoint or ["python3", f"{name}/model.py"])
    copies = [("local", f"src/models/{name}/", f"{name}/"), ("local", "python", "python/")]
    copies.append(("build", "/opt/lib/python/site-packages", "/opt/lib/python/site-packages"))
    listed = "".join(
        f"\n      - from: {frm}\n        source: {src}\n        destination: {dst}"
        for frm, src, dst in [*copies, *(("local", s, d) for s, d in extra_copies)]
    )
    quoted = ", ".join(f'"{e}"' for e in entry)
    return f"""\
# syntax={FRONTEND}
version: v4
base: docker-registry.wikimedia.org/bookworm:20260816
runs:
  insecurely: true
  environment:
    PYTHONPATH: /srv/app
lives:
  in: /srv/app
variants:
  build:
    apt:
      packages:{_list(build_packages, "        ")}
    builders:
      - python:
          version: python3
          requirements: [src/models/{name}/requirements.txt, python/requirements.txt]
  production:
    copies:{listed}
    python:
      version: python3
      use-system-flag: false
    apt:
      packages:{_list(packages, "        ")}
    entrypoint: [{quoted}]
"""
