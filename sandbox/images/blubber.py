"""The offline translation of a Blubber file (the subset of blubber v4 that Lift Wing's isvcs use)
into a Dockerfile on the local bookworm base.

Production builds an isvc's image from `.pipeline/<isvc>/blubber.yaml` with the Blubber BuildKit
frontend named on the file's `# syntax=` line (v0.21 for inference-services). Where that image
cannot be pulled, this module produces the Dockerfile that frontend would, with the semantics of
blubber v0.21.1 (config/*.go, build/macros.go, docker/compiler.go):

- one stage per variant that the wanted variant copies from, then the variant itself; a variant is
  the top-level config, then its `includes` (in dependency order), then its own keys, merged:
  apt packages and copies add up, `runs.environment` merges, scalars are replaced;
- the phases in blubber's order: as root, `apt.packages`, python's pip tooling upgrade, the
  `lives` user (default somebody 65533:65533) owning `lives.in` (default /srv/app) and /opt/lib,
  the `runs` user (default runuser 900:900); then as the lives user: WORKDIR `lives.in`,
  `runs.environment`, the python requirements (`pip wheel` into /opt/lib/python, then
  `pip install --target /opt/lib/python/site-packages`, PYTHONPATH/PATH prefixed with it), the
  builder commands, the copies (`--chown` to the lives user), and finally the runtime user:
  the lives user with `runs.insecurely: true`, else the runs user; `entrypoint`.

What differs from the real frontend, each for the same reason (no registry, no internet):
- `FROM` is `base_image` (e.g. ml-sandbox/bookworm), not `base`; the original is kept as a label;
- pip reads wheels from the build context's `wheelhouse/` (prepared on the host) when it holds
  any, else the index, trusting the BuildKit secret `ca` (never stored in a layer);
- Wikimedia-only apt packages (`wmf-certificates`: Wikimedia's internal CA) are not installed.

Supported keys (anything else is a BlubberError naming the key by its path):
`version` (v4), `base`, `variants.<v>.includes`, `variants.<v>.copies`, and at the top level or
in a variant: `apt.packages` (a list, or a map of release → list), `python.version`,
`python.requirements`, `python.use-system-flag`, `python.no-deps`, `python.tox-version`,
`builder.command`, `builder.requirements`, `builders` (`python`, `custom`), `lives.in|as|uid|gid`,
`runs.as|uid|gid|environment|insecurely`, `entrypoint`.
"""

from __future__ import annotations

import copy
import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import SandboxError

SUPPORTED_VERSION = "v4"
LOCAL = "local"
LOCAL_LIB = "/opt/lib"
PYTHON_LIB = f"{LOCAL_LIB}/python"
SITE_PACKAGES = f"{PYTHON_LIB}/site-packages"
SITE_BIN = f"{SITE_PACKAGES}/bin"
SETUPTOOLS = "setuptools!=60.9.0"
# blubber's DefaultConfig (config/reader.go).
DEFAULT_LIVES = {"in": "/srv/app", "as": "somebody", "uid": 65533, "gid": 65533}
DEFAULT_RUNS = {"as": "runuser", "uid": 900, "gid": 900}
# Packages only Wikimedia's apt repository has; the sandbox's base does not need them.
WIKIMEDIA_ONLY_PACKAGES = frozenset({"wmf-certificates"})
WHEELHOUSE = "wheelhouse"

TOP_KEYS = frozenset({"version", "variants"})
COMMON_KEYS = frozenset(
    {"base", "apt", "python", "builder", "builders", "lives", "runs", "entrypoint"}
)
VARIANT_KEYS = COMMON_KEYS | {"includes", "copies"}
APT_KEYS = frozenset({"packages"})
PYTHON_KEYS = frozenset({"version", "requirements", "use-system-flag", "no-deps", "tox-version"})
BUILDER_KEYS = frozenset({"command", "requirements"})
BUILDERS_KINDS = frozenset({"python", "custom"})
LIVES_KEYS = frozenset({"in", "as", "uid", "gid"})
RUNS_KEYS = frozenset({"as", "uid", "gid", "environment", "insecurely"})
ARTIFACT_KEYS = frozenset({"from", "source", "destination"})

# Shell run before every pip command in the image: wheels from the context's wheelhouse when it
# has any (no index), else the index, trusting the `ca` secret if one was given.
PIP_SOURCE = (
    "if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; "
    f"if ls /{WHEELHOUSE}/*.whl >/dev/null 2>&1; then "
    f'export PIP_NO_INDEX=1 PIP_FIND_LINKS="/{WHEELHOUSE} ${{PIP_FIND_LINKS:-}}"; fi; '
)
PIP_MOUNTS = (
    f"--mount=type=bind,source={WHEELHOUSE},target=/{WHEELHOUSE} "
    "--mount=type=secret,id=ca,mode=0444"
)


class BlubberError(SandboxError):
    """A Blubber file the translation cannot handle; the message names the file and the key."""


# -- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    """One `copies` or `requirements` entry: from `local` or a variant."""

    source: str
    destination: str
    from_: str = LOCAL

    def expand(self, app_dir: str) -> list[Artifact]:
        """blubber's ArtifactsConfig.Expand: `from` alone copies everything (local: `.`; a
        variant: its application directory and /opt/lib); no destination means the source."""
        if not self.source and not self.destination:
            if self.from_ == LOCAL:
                return [Artifact(".", ".", LOCAL)]
            return [
                Artifact(app_dir, app_dir, self.from_),
                Artifact(LOCAL_LIB, LOCAL_LIB, self.from_),
            ]
        if not self.destination:
            return [Artifact(self.source, self.source, self.from_)]
        return [self]


def _is_dir(path: str) -> bool:
    return posixpath.normpath(path) == "." or path.endswith("/")


def _normalized_source(source: str) -> str:
    cleaned = posixpath.normpath(source)
    return cleaned + "/" if cleaned != "/" and _is_dir(source) else cleaned


def _normalized_destination(a: Artifact) -> str:
    if not a.destination:
        if a.source and _is_dir(a.source):
            return a.source
        return posixpath.dirname(_normalized_source(a.source)) + "/"
    dest = posixpath.normpath(a.destination)
    if dest != "/" and (_is_dir(a.destination) or _is_dir(a.source)):
        dest += "/"
    return dest


def _effective_destination(a: Artifact) -> str:
    dest = _normalized_destination(a)
    if not _is_dir(dest) or _is_dir(a.source):
        return dest
    base = posixpath.basename(a.source)
    return base if dest == "./" else dest + base


@dataclass
class Python:
    version: str = ""
    requirements: list[Artifact] | None = None
    use_system_flag: bool | None = None
    no_deps: bool | None = None
    tox_version: str = ""

    def merge(self, other: Python) -> None:
        if other.use_system_flag is not None:
            self.use_system_flag = other.use_system_flag
        if other.no_deps is not None:
            self.no_deps = other.no_deps
        if other.version:
            self.version = other.version
        if other.requirements is not None:
            self.requirements = other.requirements
        if other.tox_version:
            self.tox_version = other.tox_version


@dataclass
class Custom:
    command: list[str] | None = None
    requirements: list[Artifact] | None = None

    def merge(self, other: Custom) -> None:
        if other.command is not None:
            self.command = other.command
        if other.requirements is not None:
            self.requirements = other.requirements


@dataclass
class Variant:
    """A variant with its includes and the top-level config merged in."""

    name: str
    base: str = ""
    apt: dict[str, list[str]] = field(default_factory=dict)
    python: Python = field(default_factory=Python)
    builder: Custom = field(default_factory=Custom)
    builders: list[Python | Custom] = field(default_factory=list)
    lives: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LIVES))
    runs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RUNS))
    environment: dict[str, str] = field(default_factory=dict)
    insecurely: bool | None = None
    entrypoint: list[str] | None = None
    copies: list[Artifact] = field(default_factory=list)

    def dependencies(self) -> list[str]:
        """Variants this one copies from (copies, requirements)."""
        arts = list(self.copies)
        for reqs in self._requirement_sets():
            arts += reqs
        return [a.from_ for a in arts if a.from_ != LOCAL]

    def _requirement_sets(self) -> Iterable[list[Artifact]]:
        for b in (*self.builders, self.python, self.builder):
            if b.requirements:
                yield b.requirements

    @property
    def user(self) -> tuple[int, int]:
        """The uid:gid the image runs as."""
        who = self.lives if self.insecurely else self.runs
        return int(who["uid"]), int(who["gid"])


# -- parsing -----------------------------------------------------------------------------------
class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> BlubberError:
        return BlubberError(f"{self.path}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a mapping, not {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    f"{where}.{key}" if where else str(key),
                    "is not supported by the sandbox's Blubber translation (supported here: "
                    f"{', '.join(sorted(allowed))}); see docs/docker.md or build where the "
                    "Blubber frontend image can be pulled",
                )
        return dict(value)

    def strings(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, "must be a list of strings")
        return list(value)

    def flag(self, value: Any, where: str) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, not {value!r}")
        return value

    def string(self, value: Any, where: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {value!r}")
        return value

    def artifacts(self, value: Any, where: str, *, shorthand_from: bool) -> list[Artifact]:
        """`copies` (shorthand: variant names) or `requirements` (shorthand: local paths)."""
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        out = []
        for i, item in enumerate(value):
            at = f"{where}[{i}]"
            if isinstance(item, str):
                out.append(Artifact("", "", item) if shorthand_from else Artifact(item, ""))
                continue
            entry = self.mapping(item, at, ARTIFACT_KEYS)
            src = self.string(entry.get("source"), f"{at}.source")
            dest = self.string(entry.get("destination"), f"{at}.destination")
            frm = self.string(entry.get("from"), f"{at}.from") or ("" if shorthand_from else LOCAL)
            if not frm:
                raise self.fail(f"{at}.from", "is required")
            if dest and not src:
                raise self.fail(f"{at}.source", "is required with a destination")
            out.append(Artifact(src, dest, frm))
        return out

    def python(self, value: Any, where: str) -> Python:
        d = self.mapping(value, where, PYTHON_KEYS)
        reqs = d.get("requirements")
        return Python(
            version=self.string(d.get("version"), f"{where}.version"),
            requirements=None
            if reqs is None
            else self.artifacts(reqs, f"{where}.requirements", shorthand_from=False),
            use_system_flag=self.flag(d.get("use-system-flag"), f"{where}.use-system-flag"),
            no_deps=self.flag(d.get("no-deps"), f"{where}.no-deps"),
            tox_version=self.string(d.get("tox-version"), f"{where}.tox-version"),
        )

    def custom(self, value: Any, where: str) -> Custom:
        d = self.mapping(value, where, BUILDER_KEYS)
        reqs = d.get("requirements")
        cmd = d.get("command")
        return Custom(
            command=None if cmd is None else self.strings(cmd, f"{where}.command"),
            requirements=None
            if reqs is None
            else self.artifacts(reqs, f"{where}.requirements", shorthand_from=False),
        )

    def apply(self, variant: Variant, cfg: dict[str, Any], where: str) -> None:
        """Merge one config block (top level or a variant's) into `variant`, as blubber does."""
        prefix = f"{where}." if where else ""
        if "base" in cfg:
            variant.base = self.string(cfg["base"], f"{prefix}base") or variant.base
        if "apt" in cfg:
            apt = self.mapping(cfg["apt"], f"{prefix}apt", APT_KEYS)
            pkgs = apt.get("packages") or []
            if isinstance(pkgs, list):
                pkgs = {"default": pkgs}
            if not isinstance(pkgs, Mapping):
                raise self.fail(f"{prefix}apt.packages", "must be a list or a mapping")
            for target, names in pkgs.items():
                listed = self.strings(names, f"{prefix}apt.packages.{target}")
                variant.apt.setdefault(str(target), []).extend(listed)
        if "python" in cfg:
            variant.python.merge(self.python(cfg["python"], f"{prefix}python"))
        if "builder" in cfg:
            variant.builder.merge(self.custom(cfg["builder"], f"{prefix}builder"))
        if "builders" in cfg:
            self._builders(variant, cfg["builders"], f"{prefix}builders")
        if "lives" in cfg:
            lives = self.mapping(cfg["lives"], f"{prefix}lives", LIVES_KEYS)
            self._user(variant.lives, lives, f"{prefix}lives")
            if lives.get("in"):
                path = self.string(lives["in"], f"{prefix}lives.in")
                if not path.startswith("/"):
                    raise self.fail(f"{prefix}lives.in", "must be an absolute path")
                variant.lives["in"] = path
        if "runs" in cfg:
            runs = self.mapping(cfg["runs"], f"{prefix}runs", RUNS_KEYS)
            self._user(variant.runs, runs, f"{prefix}runs")
            env = self.mapping_of_strings(runs.get("environment"), f"{prefix}runs.environment")
            variant.environment.update(env)
            flag = self.flag(runs.get("insecurely"), f"{prefix}runs.insecurely")
            if flag is not None:
                variant.insecurely = flag
        if cfg.get("entrypoint") is not None:
            variant.entrypoint = self.strings(cfg["entrypoint"], f"{prefix}entrypoint")
        if "copies" in cfg:
            new = self.artifacts(cfg["copies"], f"{prefix}copies", shorthand_from=True)
            variant.copies = [a for a in variant.copies if a not in new] + new

    def mapping_of_strings(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, "must be a mapping")
        return {str(k): "" if v is None else str(v) for k, v in value.items()}

    def _user(self, target: dict[str, Any], cfg: dict[str, Any], where: str) -> None:
        if cfg.get("as"):
            target["as"] = self.string(cfg["as"], f"{where}.as")
        for key in ("uid", "gid"):
            if cfg.get(key):  # blubber: a zero id does not override
                if not isinstance(cfg[key], int) or cfg[key] < 0:
                    raise self.fail(f"{where}.{key}", "must be a non-negative integer")
                target[key] = cfg[key]

    def _builders(self, variant: Variant, value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        new: list[Python | Custom] = []
        for i, entry in enumerate(value):
            kinds = self.mapping(entry, f"{where}[{i}]", BUILDERS_KINDS)
            if len(kinds) != 1:
                raise self.fail(f"{where}[{i}]", "must have exactly one of: custom, python")
            kind, body = next(iter(kinds.items()))
            if kind == "python":
                new.append(self.python(body, f"{where}[{i}].python"))
            else:
                new.append(self.custom(body, f"{where}[{i}].custom"))
        # blubber's BuildersConfig.Merge: a python builder merges into the new one's place.
        new_python = next((i for i, b in enumerate(new) if isinstance(b, Python)), None)
        leading = []
        for old in variant.builders:
            if isinstance(old, Python) and new_python is not None:
                merged = copy.deepcopy(old)
                merged.merge(new[new_python])  # type: ignore[arg-type]
                new[new_python] = merged
            else:
                leading.append(old)
        variant.builders = leading + new


def load(path: Path) -> dict[str, Any]:
    """Parse a Blubber file: YAML with `version: v4`."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise BlubberError(f"cannot read the Blubber file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise BlubberError(f"{path} is not valid YAML: {e}") from None
    reader = _Reader(Path(path))
    data = reader.mapping(data, "", TOP_KEYS | COMMON_KEYS)
    if data.get("version") != SUPPORTED_VERSION:
        raise reader.fail("version", f"must be {SUPPORTED_VERSION!r}, not {data.get('version')!r}")
    variants = reader.mapping(
        data.get("variants"), "variants", frozenset(data.get("variants") or ())
    )
    for name, cfg in variants.items():
        reader.mapping(cfg, f"variants.{name}", VARIANT_KEYS)
    return data


def _include_order(
    data: dict[str, Any], name: str, path: Path, chain: tuple[str, ...]
) -> list[str]:
    variants = data.get("variants") or {}
    if name not in variants:
        where = f"variants.{chain[-1]}.includes" if chain else "variants"
        known = ", ".join(sorted(variants)) or "none"
        raise BlubberError(f"{path}: {where}: no variant {name!r} (variants: {known})")
    if name in chain:
        raise BlubberError(
            f"{path}: variants.{name}.includes: a cycle: {' → '.join((*chain, name))}"
        )
    out: list[str] = []
    for inc in (variants[name] or {}).get("includes") or []:
        for dep in _include_order(data, inc, path, (*chain, name)):
            if dep not in out:
                out.append(dep)
    out.append(name)
    return out


def expand(data: dict[str, Any], name: str, path: Path) -> Variant:
    """The variant `name` as blubber sees it: top level, includes, then its own keys."""
    reader = _Reader(path)
    variant = Variant(name=name)
    reader.apply(variant, {k: v for k, v in data.items() if k in COMMON_KEYS}, "")
    for inc in _include_order(data, name, path, ()):
        reader.apply(variant, data["variants"][inc] or {}, f"variants.{inc}")
    return variant


def _stage_order(data: dict[str, Any], name: str, path: Path) -> list[Variant]:
    """The variants to build, dependencies (by copies) first, `name` last."""
    order: list[Variant] = []
    seen: dict[str, Variant] = {}

    def visit(v: str, chain: tuple[str, ...]) -> None:
        if v in chain:
            raise BlubberError(f"{path}: variants.{v}.copies: a cycle: {' → '.join((*chain, v))}")
        if v in seen:
            return
        variant = expand(data, v, path)
        seen[v] = variant
        for dep in variant.dependencies():
            if dep not in (data.get("variants") or {}):
                raise BlubberError(f"{path}: variants.{v}.copies: no variant {dep!r} to copy from")
            visit(dep, (*chain, v))
        order.append(variant)

    visit(name, ())
    return order


# -- the Dockerfile ----------------------------------------------------------------------------
def _q(value: str) -> str:
    return json.dumps(value)


def _run(parts: list[str]) -> str:
    return "RUN " + " && ".join(parts)


def _cmd(command: str, args: Iterable[str]) -> str:
    return " ".join([command, *(_q(a) for a in args)])


def _create_user(name: str, uid: str, gid: str) -> list[str]:
    home = "/root" if name == "root" else f"/home/{name}"
    return [
        f"(getent group {gid} || groupadd -o -g {gid} -r {name})",
        f"(getent passwd {uid} || useradd -l -o -m -d {home} -r -g {gid} -u {uid} {name})",
    ]


def _home(name: str) -> str:
    return "/root" if name == "root" else f"/home/{name}"


def _env(values: Mapping[str, str]) -> str:
    return "ENV " + " ".join(f"{k}={_q(v)}" for k, v in sorted(values.items()))


def _copy(a: Artifact, chown: str | None) -> str:
    flags = f"--chown={chown} " if chown else ""
    if a.from_ != LOCAL:
        flags += f"--from={a.from_} "
    return f"COPY {flags}[{_q(a.source)}, {_q(a.destination)}]"


def _requirements_copies(reqs: list[Artifact], chown: str) -> list[str]:
    """blubber's RequirementsConfig: one COPY per (from, destination), sources grouped."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for a in reqs:
        grouped.setdefault((a.from_, _normalized_destination(a)), []).append(
            _normalized_source(a.source)
        )
    lines = []
    for (frm, dest), sources in grouped.items():
        flags = f"--chown={chown} " + (f"--from={frm} " if frm != LOCAL else "")
        lines.append(f"COPY {flags}[{', '.join(_q(s) for s in [*sources, dest])}]")
    return lines


def _pip_run(commands: list[str]) -> str:
    return f"RUN {PIP_MOUNTS} \\\n    {PIP_SOURCE}\\\n    " + " && ".join(commands)


def _tooling(py: Python) -> list[str]:
    tox = f"tox=={py.tox_version}" if py.tox_version else "tox"
    pip = "pip<21" if py.version.startswith("python2") else "pip"
    return [SETUPTOOLS, "wheel", tox, pip]


def _python_privileged(py: Python) -> list[str]:
    if not py.version or py.requirements is None:
        return []
    setuptools, *rest = _tooling(py)
    return [
        _env({"PIP_BREAK_SYSTEM_PACKAGES": "1"}),
        _pip_run(
            [
                _cmd(f"{py.version} -m pip install -U", [setuptools]),
                _cmd(f"{py.version} -m pip install -U", rest),
            ]
        ),
    ]


def _python_pre_install(py: Python, chown: str) -> list[str]:
    if not py.version:
        return []
    out = []
    if py.requirements is not None:
        out += _requirements_copies(py.requirements, chown)
        out.append(_env({"PIP_WHEEL_DIR": PYTHON_LIB, "PIP_FIND_LINKS": f"file://{PYTHON_LIB}"}))
        out.append(_run([_cmd("mkdir -p", [PYTHON_LIB])]))
        args = [x for a in py.requirements for x in ("-r", _effective_destination(a))]
        if args:
            wheel = ["-m", "pip", "wheel"] + (["--no-deps"] if py.no_deps else [])
            install = ["-m", "pip", "install"]
            if py.no_deps:
                install.append("--no-deps")
            if py.use_system_flag:
                install.append("--system")
            install += ["--target", SITE_PACKAGES]
            out.append(
                _pip_run([_cmd(py.version, [*wheel, *args]), _cmd(py.version, [*install, *args])])
            )
    out.append(f'ENV PATH="{SITE_BIN}:${{PATH}}" PYTHONPATH="{SITE_PACKAGES}:${{PYTHONPATH}}"')
    return out


def _python_post_install(py: Python) -> list[str]:
    if not py.version or py.requirements is None:
        return []
    out = [_env({"PIP_NO_INDEX": "1"})]
    if py.no_deps:
        out.append(_run([_cmd(f"{py.version} -m pip check", [])]))
    return out


def _custom_pre_install(b: Custom, chown: str) -> list[str]:
    if not b.command:
        return []
    out = _requirements_copies(b.requirements or [], chown)
    out.append("RUN " + _cmd(b.command[0], b.command[1:]))
    return out


def _stage(v: Variant, stage_name: str, base_image: str) -> list[str]:
    lives, runs = v.lives, v.runs
    lives_owner = "$LIVES_UID:$LIVES_GID"
    builders: list[Python | Custom] = [*v.builders, v.python, v.builder]
    out = [f"FROM {base_image}" + (f" AS {stage_name}" if stage_name else "")]
    # Privileged: as root.
    out += ["USER root", _env({"HOME": "/root"})]
    packages = {t: [p for p in ps if p not in WIKIMEDIA_ONLY_PACKAGES] for t, ps in v.apt.items()}
    if any(packages.values()):
        skipped = sorted({p for ps in v.apt.values() for p in ps} & WIKIMEDIA_ONLY_PACKAGES)
        if skipped:
            out.append(f"# Not in Debian, not needed in the sandbox: {', '.join(skipped)}")
        out.append(_env({"DEBIAN_FRONTEND": "noninteractive"}))
        steps = ["apt-get update"]
        for target in sorted(packages):
            if not packages[target]:
                continue
            if target == "default":
                steps.append(_cmd("apt-get install -y", packages[target]))
            else:
                steps.append(_cmd("apt-get install -y -t", [target, *packages[target]]))
        steps.append("rm -rf /var/lib/apt/lists/*")
        out.append(_run(steps))
    for b in builders:
        if isinstance(b, Python):
            out += _python_privileged(b)
    out += [
        f"ARG LIVES_AS={_q(lives['as'])}",
        f"ARG LIVES_UID={lives['uid']}",
        f"ARG LIVES_GID={lives['gid']}",
        _run(
            [
                *_create_user("$LIVES_AS", "$LIVES_UID", "$LIVES_GID"),
                _cmd("mkdir -p", [lives["in"]]),
                f'chown "$LIVES_UID":"$LIVES_GID" {_q(lives["in"])}',
                _cmd("mkdir -p", [LOCAL_LIB]),
                f'chown "$LIVES_UID":"$LIVES_GID" {_q(LOCAL_LIB)}',
            ]
        ),
        f"ARG RUNS_AS={_q(runs['as'])}",
        f"ARG RUNS_UID={runs['uid']}",
        f"ARG RUNS_GID={runs['gid']}",
        _run(_create_user("$RUNS_AS", "$RUNS_UID", "$RUNS_GID")),
    ]
    # Privilege dropped: the lives user.
    out += ["USER $LIVES_UID", _env({"HOME": _home(lives["as"])}), f"WORKDIR {_q(lives['in'])}"]
    if v.environment:
        out.append(_env(v.environment))
    # Pre-install: the builders.
    for b in builders:
        if isinstance(b, Python):
            out += _python_pre_install(b, lives_owner)
        else:
            out += _custom_pre_install(b, lives_owner)
    # Install: the copies.
    for art in (x for a in v.copies for x in a.expand(lives["in"])):
        out.append(_copy(art, lives_owner))
    # Post-install: the runtime user, the entrypoint.
    post: list[str] = []
    if not v.insecurely:
        post += ["USER $RUNS_UID", _env({"HOME": _home(runs["as"])})]
    for b in builders:
        if isinstance(b, Python):
            post += _python_post_install(b)
    if v.entrypoint:
        post.append(f"ENTRYPOINT [{', '.join(_q(a) for a in v.entrypoint)}]")
    return out + post


@dataclass(frozen=True)
class Translation:
    """A Dockerfile and what building it needs."""

    dockerfile: str
    # Paths (relative to the build context) that the Dockerfile copies from `local`.
    local_sources: tuple[str, ...]
    # The requirement files pip installs, relative to the build context.
    requirements: tuple[str, ...]
    # uid:gid the image runs as (blubber: the lives user if runs.insecurely, else the runs user).
    user: str
    stages: tuple[str, ...]
    # What pip installs besides the requirements: blubber's upgrade of the pip tooling.
    tooling: tuple[str, ...] = ()


def translate(path: Path, variant: str, *, base_image: str) -> Translation:
    """Translate variant `variant` of the Blubber file at `path` (see the module doc)."""
    path = Path(path)
    data = load(path)
    for name in data.get("variants") or {}:  # every variant is checked, as blubber does
        expand(data, name, path)
    stages = _stage_order(data, variant, path)
    target = stages[-1]
    for v in stages:
        if not v.base:
            raise BlubberError(
                f"{path}: variants.{v.name}: no `base` (scratch images are not supported)"
            )
    lines = [
        f"# Generated by ml-sandbox from {path.name}, variant {variant!r}: the offline",
        "# translation of what the Blubber frontend builds (sandbox/images/blubber.py).",
        f"# Production base: {target.base}; here: {base_image}.",
    ]
    multi = len(stages) > 1
    for v in stages:
        lines.append("")
        lines += _stage(v, v.name if multi else "", base_image)
    labels = {"blubber.variant": variant, "org.ml-sandbox.blubber.base": target.base}
    lines.append("LABEL " + " ".join(f"{k}={_q(val)}" for k, val in sorted(labels.items())))
    local: list[str] = []
    reqs: list[str] = []
    tooling: list[str] = []
    for v in stages:
        for b in (*v.builders, v.python, v.builder):
            if isinstance(b, Python) and b.version and b.requirements is not None:
                tooling += _tooling(b)
            if isinstance(b, Python) and not b.version:
                continue
            if isinstance(b, Custom) and not b.command:
                continue
            for a in b.requirements or []:
                if a.from_ == LOCAL:
                    local.append(_normalized_source(a.source))
                    if isinstance(b, Python):
                        reqs.append(posixpath.normpath(a.source))
        for a in (x for c in v.copies for x in c.expand(v.lives["in"])):
            if a.from_ == LOCAL:
                local.append(a.source)
    uid, gid = target.user
    return Translation(
        dockerfile="\n".join(lines) + "\n",
        local_sources=tuple(dict.fromkeys(local)),
        requirements=tuple(dict.fromkeys(reqs)),
        user=f"{uid}:{gid}",
        stages=tuple(v.name for v in stages),
        tooling=tuple(dict.fromkeys(tooling)),
    )


def to_dockerfile(path: Path, variant: str, *, base_image: str) -> str:
    """The Dockerfile for variant `variant` of the Blubber file at `path`, FROM `base_image`."""
    return translate(path, variant, base_image=base_image).dockerfile


def frontend(path: Path) -> str | None:
    """The BuildKit frontend image named on the file's `# syntax=` line (what
    `docker buildx build -f blubber.yaml` runs where it can be pulled), or None."""
    try:
        first = Path(path).read_text().lstrip().splitlines()[0]
    except (OSError, IndexError):
        return None
    key, sep, value = first.lstrip("#").strip().partition("=")
    return value.strip() if sep and key.strip() == "syntax" and value.strip() else None
