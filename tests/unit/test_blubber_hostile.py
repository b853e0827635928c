"""Hostile Blubber files (issue 16, items 1 and 2): the translation refuses each, or produces a
Dockerfile in which the hostile value stays data.

Before the fix, a newline in a `runs.environment` key, a variant name, `python.version` or `base`
became extra Dockerfile instructions, and values were quoted with `json.dumps` in shell-form RUN
lines, so `$(…)` and backticks expanded. Each case below names the field it attacks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from sandbox.images import blubber
from sandbox.images.blubber import BlubberError

pytestmark = pytest.mark.unit

BASE = "ml-sandbox/bookworm:latest"
SYNTAX = "# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:{tag}\n"
PAYLOAD = "touch /tmp/pwned"


def benign() -> dict:
    return {
        "version": "v4",
        "base": "docker-registry.wikimedia.org/bookworm:20260816",
        "runs": {"insecurely": True, "environment": {"PYTHONPATH": "/srv/app"}},
        "lives": {"in": "/srv/app"},
        "variants": {
            "build": {
                "apt": {"packages": ["python3-pip"]},
                "python": {"version": "python3", "requirements": ["requirements.txt"]},
            },
            "production": {
                "copies": [
                    {"from": "local", "source": "app", "destination": "app"},
                    {"from": "build", "source": "/opt/lib", "destination": "/opt/lib"},
                ],
                "entrypoint": ["python3", "app/model.py"],
            },
        },
    }


def _set(data: dict, path: str, value: object) -> None:
    *parents, last = path.split("/")
    for p in parents:
        data = data[p]
    data[last] = value


def _rename_variant(data: dict, new: str) -> None:
    data["variants"][new] = data["variants"].pop("build")
    data["variants"]["production"]["copies"][1]["from"] = new


# (case id, how to make the file hostile) → the translation must refuse it.
REFUSED = {
    "env key with a newline": lambda d: _set(
        d, "runs/environment", {f"A\nRUN {PAYLOAD}\nENV B": "x"}
    ),
    "env value with a newline": lambda d: _set(d, "runs/environment/X1", f"a\nRUN {PAYLOAD}"),
    "env value with a carriage return": lambda d: _set(d, "runs/environment/X1", "a\rRUN x"),
    "env key with =": lambda d: _set(d, "runs/environment", {"BAD=KEY": "x"}),
    "env value not a string": lambda d: _set(d, "runs/environment/TIMEOUT", 100),
    "variant name with a newline": lambda d: _rename_variant(d, f"build\nRUN {PAYLOAD}\nFROM x"),
    "variant name with a space": lambda d: _rename_variant(d, "build AS evil"),
    "variant name starting with a dash": lambda d: _rename_variant(d, "-build"),
    "python.version with a newline": lambda d: _set(
        d, "variants/build/python/version", f"python3\nRUN {PAYLOAD}"
    ),
    "python.version with ;": lambda d: _set(
        d, "variants/build/python/version", f"python3; {PAYLOAD};"
    ),
    "python.version with $()": lambda d: _set(d, "variants/build/python/version", f"$({PAYLOAD})"),
    "python.version starting with a dash": lambda d: _set(d, "variants/build/python/version", "-c"),
    "base with a newline": lambda d: _set(
        d, "base", f"docker-registry.wikimedia.org/bookworm:1\nRUN {PAYLOAD}"
    ),
    "base with AS": lambda d: _set(d, "base", "docker-registry.wikimedia.org/bookworm:1 AS x"),
    "apt package with $()": lambda d: _set(d, "variants/build/apt/packages", [f"curl$({PAYLOAD})"]),
    "apt package with backticks": lambda d: _set(
        d, "variants/build/apt/packages", [f"curl`{PAYLOAD}`"]
    ),
    "apt package that is an option": lambda d: _set(
        d, "variants/build/apt/packages", [f"-oAPT::Update::Pre-Invoke::={PAYLOAD}"]
    ),
    "apt package with a space": lambda d: _set(
        d, "variants/build/apt/packages", ["curl -y --allow-unauthenticated"]
    ),
    "apt release with ;": lambda d: _set(
        d, "variants/build/apt/packages", {f"bookworm; {PAYLOAD}": ["curl"]}
    ),
    "requirements path outside the context": lambda d: _set(
        d, "variants/build/python/requirements", ["../../etc/passwd"]
    ),
    "local copy of an absolute path": lambda d: _set(
        d,
        "variants/production/copies",
        [{"from": "local", "source": "/etc/shadow", "destination": "x"}],
    ),
    "copy from a variant name with a newline": lambda d: _set(
        d,
        "variants/production/copies",
        [{"from": f"build\nRUN {PAYLOAD}", "source": "/a", "destination": "/b"}],
    ),
    "copy from an option": lambda d: _set(
        d,
        "variants/production/copies",
        [{"from": "build --chmod=777", "source": "/a", "destination": "/b"}],
    ),
    "lives.as root": lambda d: _set(d, "lives/as", "root"),
    "lives.as with ;": lambda d: _set(d, "lives/as", f"x; {PAYLOAD}"),
    "runs.as with a newline": lambda d: _set(d, "runs/as", "runner\nUSER root"),
    "lives.in relative": lambda d: _set(d, "lives/in", "srv/app"),
    "lives.in the root": lambda d: _set(d, "lives/in", "/"),
    "lives.in with a newline": lambda d: _set(d, "lives/in", f"/srv\nRUN {PAYLOAD}"),
    "uid not a number": lambda d: _set(d, "lives/uid", "0; id"),
    "uid negative": lambda d: _set(d, "runs/uid", -1),
    "custom command with a newline": lambda d: _set(
        d, "variants/build/builder", {"command": ["echo", f"x\nRUN {PAYLOAD}"]}
    ),
    "tox-version with a newline": lambda d: _set(
        d, "variants/build/python/tox-version", f"4\nRUN {PAYLOAD}"
    ),
}

# Accepted by blubber's schema and kept as data: (case id, how, the value that must stay one
# shell word or one JSON string).
KEPT_AS_DATA = {
    "lives.in with $()": (
        lambda d: _set(d, "lives/in", f"/srv/$({PAYLOAD})"),
        f"/srv/$({PAYLOAD})",
    ),
    "requirements path with $()": (
        lambda d: _set(d, "variants/build/python/requirements", [f"r$({PAYLOAD}).txt"]),
        f"r$({PAYLOAD}).txt",
    ),
    "requirements path with backticks": (
        lambda d: _set(d, "variants/build/python/requirements", [f"r`{PAYLOAD}`.txt"]),
        f"r`{PAYLOAD}`.txt",
    ),
    "requirements path starting with a dash": (
        lambda d: _set(d, "variants/build/python/requirements", ["--pre"]),
        "--pre",
    ),
    "tox-version with &&": (
        lambda d: _set(d, "variants/build/python/tox-version", f"4 && {PAYLOAD}"),
        f"tox==4 && {PAYLOAD}",
    ),
    "env value with quotes and backslashes": (
        lambda d: _set(d, "runs/environment/X1", '" && ' + PAYLOAD + " \\"),
        None,
    ),
    "entrypoint with a newline": (
        lambda d: _set(d, "variants/production/entrypoint", ["sh", "-c", f"a\n{PAYLOAD}"]),
        None,
    ),
}


def write(tmp_path: Path, data: dict, tag: str = "v1.5.1", name: str = "blubber.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SYNTAX.format(tag=tag) + yaml.safe_dump(data))
    return path


def instructions(dockerfile: str) -> list[str]:
    return [ln.split(" ", 1)[0] for ln in dockerfile.splitlines() if ln and not ln.startswith("#")]


@pytest.mark.parametrize("tag", ["v0.21.1", "v1.5.1"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_field_is_refused(tmp_path: Path, case: str, tag: str) -> None:
    data = benign()
    REFUSED[case](data)
    path = write(tmp_path, data, tag)
    with pytest.raises(BlubberError) as err:
        blubber.translate(path, "production", base_image=BASE)
    assert str(err.value).startswith(f"{path}: ")  # names the file, then the key


@pytest.mark.parametrize("tag", ["v0.21.1", "v1.5.1"])
@pytest.mark.parametrize("case", sorted(KEPT_AS_DATA))
def test_hostile_value_stays_data(tmp_path: Path, case: str, tag: str) -> None:
    plain = blubber.translate(
        write(tmp_path, benign(), tag, "plain.yaml"), "production", base_image=BASE
    )
    data = benign()
    make, value = KEPT_AS_DATA[case]
    make(data)
    hostile = blubber.translate(write(tmp_path, data, tag), "production", base_image=BASE)
    # The same instructions, in the same order: nothing was added by the value.
    assert instructions(hostile.dockerfile) == instructions(plain.dockerfile)
    if value is not None:
        runs = [ln for ln in hostile.dockerfile.splitlines() if ln.startswith("RUN ")]
        # It reaches the shell as one whole word, and only inside single quotes.
        words = [w for ln in runs for w in shlex.split(ln.split(" ", 1)[1])]
        assert value in words
        for ln in runs:
            assert PAYLOAD not in re.sub(r"'[^']*'", "", ln), ln


def test_a_newline_in_the_file_name_stays_in_the_comment(tmp_path: Path) -> None:
    path = write(tmp_path, benign(), name="blub\nRUN touch pwned.yaml")
    df = blubber.to_dockerfile(path, "production", base_image=BASE)
    assert "\nRUN touch pwned" not in df and "blub?RUN touch pwned.yaml" in df


def test_yaml_tags_and_bombs_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "blubber.yaml"
    path.write_text("version: v4\nbase: !!python/object/apply:os.system ['id']\n")
    with pytest.raises(BlubberError, match="not valid YAML"):
        blubber.translate(path, "production", base_image=BASE)
    path.write_text("version: v4\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(BlubberError):
        blubber.translate(path, "production", base_image=BASE)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("# syntax=evil.example/frontend:v1.0.0\n", "not the Blubber frontend"),
        ("# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:latest\n", "vX.Y.Z"),
        ("# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v0.16.0\n", "older"),
    ],
)
def test_syntax_lines_the_sandbox_cannot_follow(tmp_path: Path, line: str, says: str) -> None:
    path = tmp_path / "blubber.yaml"
    path.write_text(line + yaml.safe_dump(benign()))
    with pytest.raises(BlubberError, match=says):
        blubber.translate(path, "production", base_image=BASE)


def test_the_guard_refuses_a_line_that_is_not_one_instruction(tmp_path: Path) -> None:
    """The last line of defence: even a field a future change forgot to check cannot add an
    instruction."""
    with pytest.raises(BlubberError, match="not one Dockerfile instruction"):
        blubber._guard("FROM x\nRUN a\nevil line\n", tmp_path / "b.yaml")
    with pytest.raises(BlubberError, match="not one Dockerfile instruction"):
        blubber._guard("FROM x\nRUN a \\\n", tmp_path / "b.yaml")
    blubber._guard("# c\n\nFROM x\nRUN a\n", tmp_path / "b.yaml")
