"""The offline translation of a Blubber file (the subset of blubber v4 that Lift Wing's isvcs use)
into a Dockerfile on the local bookworm base, with the semantics of the blubber version the file's
`# syntax=` line names.

Production builds an isvc's image from `.pipeline/<isvc>/blubber.yaml` with the Blubber BuildKit
frontend named on that line (v0.21.0 to v1.5.1 in inference-services). Where that image cannot be
pulled, this module produces what the frontend builds, following blubber at that tag
(`sandbox.images.blubber.versions` holds the boundaries: v0.21/v0.22 install with `pip wheel` +
`pip install --target`, v0.23 and later into a virtualenv at /opt/lib/venv):

- one stage per variant that the wanted variant copies from, then the variant itself; a variant is
  the top-level config, then its `includes` (in dependency order), then its own keys, merged:
  apt packages and copies add up, `runs.environment` merges, scalars are replaced
  (wikimedia/blubber@v0.21.1:config/reader.go ExpandVariant, @v1.5.1 the same);
- the phases in blubber's order (build/phases.go; config/variant.go userForPhase): as root, the
  base's stand-in packages, `apt.packages`, (v0.21/22) python's pip tooling upgrade, the `lives`
  user (default somebody 65533:65533) owning `lives.in` (default /srv/app) and /opt/lib, the
  `runs` user (default runuser 900:900); then as the lives user: WORKDIR `lives.in`,
  `runs.environment`, the builders in order (python, custom), the copies (`--chown` to the lives
  user), and finally the runtime user (the lives user with `runs.insecurely: true`, else the runs
  user), `runs.in` (v1.5+) and `entrypoint`.

Every field is data except custom builder commands (`sandbox.images.blubber.schema`): names,
versions, packages and paths are checked against blubber's own patterns, nothing may hold a control
character, and values are quoted for the shell with `shlex.quote`; a last check refuses any
generated line that is not one whole instruction.

What differs from the real frontend, each for the same reason (no registry, no internet):
- `FROM` is the stand-in for `base` (`sandbox.images.blubber.bases`); the original is kept as a
  label;
- pip reads wheels from the build context's `wheelhouse/` (prepared on the host) when it holds
  any, else the index, trusting the BuildKit secret `ca` (never stored in a layer);
- Wikimedia-only apt packages (`wmf-certificates`: Wikimedia's internal CA) are not installed;
- a `git clone` of a URL in SANDBOX_GIT_MIRRORS clones the local copy
  (`sandbox.images.blubber.mirrors`).

Keys: any key blubber's version does not know is an error naming it by its path, as blubber's
strict decoding makes it; keys blubber knows that no production file uses (node, php, poetry, apt
sources/proxies, arguments, builder script/mounts/caches, copies' exclude) are errors saying the
sandbox does not support them.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import SandboxError
from sandbox.images.blubber import bases, mirrors, schema, versions
from sandbox.images.blubber.schema import sh, sh_words
from sandbox.images.blubber.versions import Rules

SUPPORTED_VERSION = "v4"
LOCAL = "local"
LOCAL_LIB = "/opt/lib"
PYTHON_LIB = f"{LOCAL_LIB}/python"
SITE_PACKAGES = f"{PYTHON_LIB}/site-packages"
SITE_BIN = f"{SITE_PACKAGES}/bin"
# blubber's PythonVenv (wikimedia/blubber@v0.23.0:config/python.go).
VENV = f"{LOCAL_LIB}/venv"
SETUPTOOLS = "setuptools!=60.9.0"
# blubber's DefaultConfig (config/reader.go).
DEFAULT_LIVES = {"in": "/srv/app", "as": "somebody", "uid": 65533, "gid": 65533}
DEFAULT_RUNS = {"as": "runuser", "uid": 900, "gid": 900}
# Packages only Wikimedia's apt repository has; the sandbox's base does not need them.
WIKIMEDIA_ONLY_PACKAGES = frozenset({"wmf-certificates"})
WHEELHOUSE = "wheelhouse"
MAX_BYTES = 1_000_000

TOP_KEYS = frozenset({"version", "variants"})
VARIANT_ONLY_KEYS = frozenset({"includes", "copies"})
LIVES_KEYS = frozenset({"in", "as", "uid", "gid"})
BUILDERS_KINDS = frozenset({"python", "custom", "node", "php"})

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
# Every line of a generated Dockerfile is one of these (or a comment or blank): the last guard
# against a field that would start an instruction of its own.
_INSTRUCTION = re.compile(r"(?:FROM|USER|ENV|ARG|RUN|WORKDIR|COPY|ENTRYPOINT|LABEL) \S")


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
        # Go's path.Dir: "." for a bare file name (Python's dirname gives "")
        return (posixpath.dirname(_normalized_source(a.source)) or ".") + "/"
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
    # v0.21/22: use-system-flag (`pip install --system`); v0.23+: use-system-site-packages.
    system: bool | None = None
    no_deps: bool | None = None
    tox_version: str = ""

    def merge(self, other: Python, rules: Rules) -> None:
        if other.system is not None:
            self.system = other.system
        if other.no_deps is not None:
            self.no_deps = other.no_deps
        if other.version:
            self.version = other.version
        if other.requirements is not None:
            self.requirements = other.requirements
        if other.tox_version and rules.merges_tox_version:
            self.tox_version = other.tox_version

    def enabled(self, rules: Rules) -> bool:
        """v0.21/22: whenever `version` is set; v0.23+: `version` and `requirements` both set
        (wikimedia/blubber@v0.23.0:config/python.go)."""
        if rules.venv:
            return bool(self.version) and self.requirements is not None
        return bool(self.version)


@dataclass
class Custom:
    command: list[str] | None = None
    requirements: list[Artifact] | None = None

    def merge(self, other: Custom, rules: Rules) -> None:
        if other.command is not None:
            self.command = other.command
        if other.requirements is not None:
            self.requirements = other.requirements


@dataclass
class Variant:
    """A variant with its includes and the top-level config merged in."""

    name: str
    rules: Rules
    base: str = ""
    apt: dict[str, list[str]] = field(default_factory=dict)
    python: Python = field(default_factory=Python)
    builder: Custom = field(default_factory=Custom)
    builders: list[Python | Custom] = field(default_factory=list)
    lives: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LIVES))
    runs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RUNS))
    environment: dict[str, str] = field(default_factory=dict)
    insecurely: bool | None = None
    runs_in: str = ""
    entrypoint: list[str] | None = None
    copies: list[Artifact] = field(default_factory=list)

    def dependencies(self) -> list[str]:
        """Variants this one copies from (copies, requirements)."""
        arts = list(self.copies)
        for reqs in self._requirement_sets():
            arts += reqs
        return [a.from_ for a in arts if a.from_ != LOCAL]

    def _requirement_sets(self) -> Iterable[list[Artifact]]:
        for b in self.all_builders():
            if b.requirements:
                yield b.requirements

    def all_builders(self) -> list[Python | Custom]:
        """In blubber's order: `builders`, then `python`, then `builder`
        (CommonConfig.PhaseCompileableConfig)."""
        return [*self.builders, self.python, self.builder]

    @property
    def user(self) -> tuple[int, int]:
        """The uid:gid the image runs as."""
        who = self.lives if self.insecurely else self.runs
        return int(who["uid"]), int(who["gid"])


# -- parsing -----------------------------------------------------------------------------------
class _Reader:
    def __init__(self, path: Path, rules: Rules) -> None:
        self.path = path
        self.rules = rules

    def fail(self, where: str, message: str) -> BlubberError:
        return BlubberError(f"{self.path}: {where}: {message}")

    def _unknown(self, where: str, key: str) -> BlubberError:
        tag = self.rules.tag
        at = f"{where}.{key}" if where else str(key)
        if key in versions.UNSUPPORTED:
            return self.fail(
                at,
                f"is a key of blubber {tag} that the sandbox's translation does not support; "
                "build this file with the real frontend (SANDBOX_BLUBBER_BUILD=frontend) where "
                "it can be pulled",
            )
        hint = ""
        if key == "use-system-flag" and self.rules.venv:
            hint = (
                " (blubber v0.23.0 replaced it with `use-system-site-packages` when the python "
                "builder moved to a virtualenv)"
            )
        elif key == "use-system-site-packages" and not self.rules.venv:
            hint = (
                " (it exists from blubber v0.23.0 on; this file's `# syntax=` line names an "
                "older one)"
            )
        elif key in ("in", "arguments", "script", "exclude") and not self.rules.v1_5:
            hint = " (it exists from blubber v1.5.0 on)"
        return self.fail(
            at,
            f"is not a key blubber {tag} knows{hint}; blubber rejects unknown keys "
            "(config/reader.go decodes with DisallowUnknownFields)",
        )

    def mapping(self, value: Any, where: str, allowed: frozenset[str] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where or "the file", f"must be a mapping, not {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where or "the file", f"key {key!r} must be a string")
            if allowed is not None and key not in allowed:
                raise self._unknown(where, key)
        return dict(value)

    def text(self, value: str, where: str) -> str:
        bad = schema.control_character(value)
        if bad is not None:
            raise self.fail(
                where,
                f"contains a control character ({bad}); a Blubber field cannot carry one into "
                "a Dockerfile line",
            )
        if len(value) > schema.MAX_FIELD:
            raise self.fail(where, f"is longer than {schema.MAX_FIELD} characters")
        return value

    def strings(self, value: Any, where: str, *, controls: bool = False) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, "must be a list of strings")
        if not controls:
            for i, v in enumerate(value):
                self.text(v, f"{where}[{i}]")
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
        return self.text(value, where)

    def artifacts(self, value: Any, where: str, *, shorthand_from: bool) -> list[Artifact]:
        """`copies` (shorthand: variant names) or `requirements` (shorthand: local paths)."""
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        out: list[Artifact] = []
        for i, item in enumerate(value):
            at = f"{where}[{i}]"
            if isinstance(item, str):
                self.text(item, at)
                art = Artifact("", "", item) if shorthand_from else Artifact(item, "")
            else:
                entry = self.mapping(item, at, self.rules.artifact_keys())
                if "exclude" in entry:
                    raise self._unknown(at, "exclude")
                src = self.string(entry.get("source"), f"{at}.source")
                dest = self.string(entry.get("destination"), f"{at}.destination")
                frm = self.string(entry.get("from"), f"{at}.from") or (
                    "" if shorthand_from else LOCAL
                )
                if not frm:
                    raise self.fail(f"{at}.from", "is required")
                if dest and not src:
                    raise self.fail(f"{at}.source", 'is required if "destination" is also set')
                art = Artifact(src, dest, frm)
            self._check_artifact(art, at)
            if art in out:  # blubber: `unique` / `uniqueartifacts`
                raise self.fail(where, "cannot contain duplicates")
            out.append(art)
        return out

    def _check_artifact(self, art: Artifact, at: str) -> None:
        if art.from_ != LOCAL and not schema.is_variant_name(art.from_):
            raise self.fail(
                f"{at}.from",
                f"{art.from_!r} is not `local` or a variant name (copying from an image is not "
                "supported by the sandbox)",
            )
        if art.from_ == LOCAL and art.source and not schema.is_relative_local(art.source):
            raise self.fail(f"{at}.source", 'path must be relative when "from" is "local"')

    def python(self, value: Any, where: str) -> Python:
        d = self.mapping(value, where, self.rules.python_keys())
        if "poetry" in d:
            raise self._unknown(where, "poetry")
        reqs = d.get("requirements")
        version = self.string(d.get("version"), f"{where}.version")
        if version and not schema.is_python_version(version):
            raise self.fail(
                f"{where}.version",
                f"{version!r} is not a Python binary name or path (e.g. python3)",
            )
        system_key = "use-system-site-packages" if self.rules.venv else "use-system-flag"
        tox = self.string(d.get("tox-version"), f"{where}.tox-version")
        return Python(
            version=version,
            requirements=None
            if reqs is None
            else self.artifacts(reqs, f"{where}.requirements", shorthand_from=False),
            system=self.flag(d.get(system_key), f"{where}.{system_key}"),
            no_deps=self.flag(d.get("no-deps"), f"{where}.no-deps"),
            tox_version=tox,
        )

    def custom(self, value: Any, where: str) -> Custom:
        d = self.mapping(value, where, self.rules.builder_keys())
        for key in ("script", "mounts", "caches"):
            if key in d:
                raise self._unknown(where, key)
        reqs = d.get("requirements")
        cmd = d.get("command")
        if isinstance(cmd, str) and self.rules.v1_5:
            # v1.5: a string is one shell command (config/builder.go BuilderCommand)
            cmd = [cmd] if cmd else None
        return Custom(
            command=None if cmd is None else self.strings(cmd, f"{where}.command"),
            requirements=None
            if reqs is None
            else self.artifacts(reqs, f"{where}.requirements", shorthand_from=False),
        )

    def apply(self, variant: Variant, cfg: dict[str, Any], where: str) -> None:
        """Merge one config block (top level or a variant's) into `variant`, as blubber does."""
        prefix = f"{where}." if where else ""
        rules = self.rules
        for key in ("node", "php", "arguments"):
            if key in cfg:
                raise self._unknown(where, key)
        if "base" in cfg:
            base = self.string(cfg["base"], f"{prefix}base")
            if base and not schema.is_image_ref(base):
                raise self.fail(f"{prefix}base", f'"{base}" is not a valid image reference')
            variant.base = base or variant.base
        if "apt" in cfg:
            apt = self.mapping(cfg["apt"], f"{prefix}apt", rules.apt_keys())
            for key in ("proxies", "sources"):
                if key in apt:
                    raise self._unknown(f"{prefix}apt", key)
            pkgs = apt.get("packages") or []
            if isinstance(pkgs, list):
                pkgs = {"default": pkgs}
            if not isinstance(pkgs, Mapping):
                raise self.fail(f"{prefix}apt.packages", "must be a list or a mapping")
            for target, names in pkgs.items():
                at = f"{prefix}apt.packages.{target}"
                if target != "default" and not (
                    isinstance(target, str) and schema.is_debian_release(target)
                ):
                    raise self.fail(
                        f"{prefix}apt.packages", f'"{target}" is not a valid Debian release name'
                    )
                listed = self.strings(names, at)
                for i, name in enumerate(listed):
                    if not schema.is_debian_package(name):
                        raise self.fail(
                            f"{at}[{i}]", f'"{name}" is not a valid Debian package name'
                        )
                variant.apt.setdefault(str(target), []).extend(listed)
        if "python" in cfg:
            variant.python.merge(self.python(cfg["python"], f"{prefix}python"), rules)
        if "builder" in cfg:
            variant.builder.merge(self.custom(cfg["builder"], f"{prefix}builder"), rules)
        if "builders" in cfg:
            self._builders(variant, cfg["builders"], f"{prefix}builders")
        if "lives" in cfg:
            lives = self.mapping(cfg["lives"], f"{prefix}lives", LIVES_KEYS)
            self._user(variant.lives, lives, f"{prefix}lives")
            if lives.get("in"):
                path = self.string(lives["in"], f"{prefix}lives.in")
                if not schema.is_abs_path(path):
                    raise self.fail(
                        f"{prefix}lives.in", f'"{path}" is not a valid absolute non-root path'
                    )
                variant.lives["in"] = path
        if "runs" in cfg:
            runs = self.mapping(cfg["runs"], f"{prefix}runs", rules.runs_keys())
            self._user(variant.runs, runs, f"{prefix}runs")
            env = self.environment(runs.get("environment"), f"{prefix}runs.environment")
            variant.environment.update(env)
            flag = self.flag(runs.get("insecurely"), f"{prefix}runs.insecurely")
            if flag is not None:
                variant.insecurely = flag
            if runs.get("in"):
                path = self.string(runs["in"], f"{prefix}runs.in")
                if not schema.is_abs_path(path):
                    raise self.fail(
                        f"{prefix}runs.in", f'"{path}" is not a valid absolute non-root path'
                    )
                variant.runs_in = path
        if cfg.get("entrypoint") is not None:
            variant.entrypoint = self.strings(
                cfg["entrypoint"], f"{prefix}entrypoint", controls=True
            )
        if "copies" in cfg:
            new = self.artifacts(cfg["copies"], f"{prefix}copies", shorthand_from=True)
            variant.copies = [a for a in variant.copies if a not in new] + new

    def environment(self, value: Any, where: str) -> dict[str, str]:
        """`runs.environment`: names as blubber's `envvars`; values strings (null is empty, as
        Go's decoder makes it; a number is an error there too: quote it)."""
        env = self.mapping(value, where, None)
        out: dict[str, str] = {}
        for k, v in env.items():
            self.text(k, where)
            if not schema.is_env_name(k):
                raise self.fail(where, f"{k!r} is not a valid environment variable name")
            if v is not None and not isinstance(v, str):
                raise self.fail(
                    f"{where}.{k}", f'must be a string (quote it: {k}: "{v}"), not {v!r}'
                )
            out[k] = self.text(v or "", f"{where}.{k}")
        return out

    def _user(self, target: dict[str, Any], cfg: dict[str, Any], where: str) -> None:
        if cfg.get("as"):
            name = self.string(cfg["as"], f"{where}.as")
            if not schema.is_username(name):
                raise self.fail(f"{where}.as", f'"{name}" is not a valid user name')
            target["as"] = name
        for key in ("uid", "gid"):
            if cfg.get(key):  # blubber: a zero id does not override
                value = cfg[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise self.fail(f"{where}.{key}", "must be a non-negative integer")
                if value >= 2**32:
                    raise self.fail(f"{where}.{key}", "must be below 2^32")
                target[key] = value

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
            elif kind == "custom":
                new.append(self.custom(body, f"{where}[{i}].custom"))
            else:
                raise self._unknown(f"{where}[{i}]", kind)
        if sum(isinstance(b, Python) for b in new) > 1:
            raise self.fail(where, "contains disallowed repetitions of entries")
        # blubber's BuildersConfig.Merge: a python builder merges into the new one's place.
        new_python = next((i for i, b in enumerate(new) if isinstance(b, Python)), None)
        leading = []
        for old in variant.builders:
            if isinstance(old, Python) and new_python is not None:
                merged = copy.deepcopy(old)
                merged.merge(new[new_python], self.rules)  # type: ignore[arg-type]
                new[new_python] = merged
            else:
                leading.append(old)
        variant.builders = leading + new


def _read(path: Path) -> tuple[str, dict[str, Any], Rules]:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise BlubberError(f"cannot read the Blubber file {path}: {e.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise BlubberError(f"{path} is larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise BlubberError(f"{path} is not UTF-8 text") from None
    try:
        rules = versions.rules_for_text(text, path)
    except versions.BlubberVersionError as e:
        raise BlubberError(str(e)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BlubberError(f"{path} is not valid YAML: {e}") from None
    except RecursionError:
        raise BlubberError(f"{path} is nested too deeply") from None
    return text, data, rules


def load(path: Path) -> dict[str, Any]:
    """Parse a Blubber file: YAML with `version: v4`, every key known to its blubber version."""
    return _load(path)[0]


def _load(path: Path) -> tuple[dict[str, Any], Rules]:
    _, data, rules = _read(path)
    reader = _Reader(Path(path), rules)
    data = reader.mapping(data, "", TOP_KEYS | rules.common_keys())
    if data.get("version") != SUPPORTED_VERSION:
        raise reader.fail(
            "version", f'config version "{data.get("version")}" is unsupported (blubber reads v4)'
        )
    variants = reader.mapping(data.get("variants"), "variants", None)
    for name, cfg in variants.items():
        if not schema.is_variant_name(name):
            raise reader.fail(
                "variants",
                f"{name!r} is a bad variant name (blubber's pattern: a letter, then letters, "
                "digits, `-` or `.`, ending in a letter or digit)",
            )
        cfg = reader.mapping(cfg, f"variants.{name}", rules.common_keys() | VARIANT_ONLY_KEYS)
        for i, inc in enumerate(cfg.get("includes") or []):
            if inc not in variants:
                raise reader.fail(
                    f"variants.{name}.includes[{i}]", f'references an unknown variant "{inc}"'
                )
    return data, rules


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


def expand(data: dict[str, Any], name: str, path: Path, rules: Rules | None = None) -> Variant:
    """The variant `name` as blubber sees it: top level, includes, then its own keys."""
    rules = rules or versions.rules_for(path)
    reader = _Reader(path, rules)
    variant = Variant(name=name, rules=rules)
    reader.apply(variant, {k: v for k, v in data.items() if k in rules.common_keys()}, "")
    for inc in _include_order(data, name, path, ()):
        reader.apply(variant, data["variants"][inc] or {}, f"variants.{inc}")
    return variant


def _stage_order(data: dict[str, Any], name: str, path: Path, rules: Rules) -> list[Variant]:
    """The variants to build, dependencies (by copies) first, `name` last."""
    order: list[Variant] = []
    seen: dict[str, Variant] = {}

    def visit(v: str, chain: tuple[str, ...]) -> None:
        if v in chain:
            raise BlubberError(f"{path}: variants.{v}.copies: a cycle: {' → '.join((*chain, v))}")
        if v in seen:
            return
        variant = expand(data, v, path, rules)
        seen[v] = variant
        for dep in variant.dependencies():
            if dep not in (data.get("variants") or {}):
                raise BlubberError(
                    f'{path}: variants.{v}.copies: references an unknown variant "{dep}"'
                )
            visit(dep, (*chain, v))
        order.append(variant)

    visit(name, ())
    return order


# -- the Dockerfile ----------------------------------------------------------------------------
def _q(value: str) -> str:
    """A JSON string, for the exec and JSON forms (ENTRYPOINT, COPY) the Dockerfile parses as
    JSON."""
    return json.dumps(value)


def _run(parts: list[str]) -> str:
    return "RUN " + " && ".join(parts)


def _create_user(name: str, uid: str, gid: str) -> list[str]:
    home = "/root" if name == "root" else f"/home/{name}"
    return [
        f"(getent group {gid} || groupadd -o -g {gid} -r {name})",
        f"(getent passwd {uid} || useradd -l -o -m -d {home} -r -g {gid} -u {uid} {name})",
    ]


def _home(name: str) -> str:
    return "/root" if name == "root" else f"/home/{name}"


def _env(values: Mapping[str, str], *, expand: bool = True) -> str:
    return "ENV " + " ".join(
        f"{k}={schema.dockerfile_word(v, expand=expand)}" for k, v in sorted(values.items())
    )


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
        if len(sources) > 1 and not dest.endswith("/"):
            dest += "/"
        lines.append(f"COPY {flags}[{', '.join(_q(s) for s in [*sources, dest])}]")
    return lines


def _pip_run(commands: list[str]) -> str:
    return f"RUN {PIP_MOUNTS} {PIP_SOURCE}" + " && ".join(commands)


def _tooling(py: Python) -> list[str]:
    tox = f"tox=={py.tox_version}" if py.tox_version else "tox"
    pip = "pip<21" if py.version.startswith("python2") else "pip"
    return [SETUPTOOLS, "wheel", tox, pip]


def _pip(py: Python, args: list[str]) -> str:
    return f"{sh(py.version)} -m pip {sh_words(args)}"


def _python_privileged(py: Python, rules: Rules) -> list[str]:
    """v0.21/22 only: blubber upgrades the pip tooling in the system Python, as root."""
    if rules.venv or not py.version or py.requirements is None:
        return []
    setuptools, *rest = _tooling(py)
    return [
        _env({"PIP_BREAK_SYSTEM_PACKAGES": "1"}),
        _pip_run([_pip(py, ["install", "-U", setuptools]), _pip(py, ["install", "-U", *rest])]),
    ]


def _python_pre_install_target(py: Python, chown: str) -> list[str]:
    """wikimedia/blubber@v0.21.1:config/python.go PhasePreInstall."""
    out = []
    if py.requirements is not None:
        out += _requirements_copies(py.requirements, chown)
        out.append(_env({"PIP_WHEEL_DIR": PYTHON_LIB, "PIP_FIND_LINKS": f"file://{PYTHON_LIB}"}))
        out.append(_run([f"mkdir -p {sh(PYTHON_LIB)}"]))
        args = [x for a in py.requirements for x in ("-r", _effective_destination(a))]
        if args:
            wheel = ["wheel"] + (["--no-deps"] if py.no_deps else [])
            install = ["install"]
            if py.no_deps:
                install.append("--no-deps")
            if py.system:
                install.append("--system")
            install += ["--target", SITE_PACKAGES]
            out.append(_pip_run([_pip(py, [*wheel, *args]), _pip(py, [*install, *args])]))
    out.append(f'ENV PATH="{SITE_BIN}:${{PATH}}" PYTHONPATH="{SITE_PACKAGES}:${{PYTHONPATH}}"')
    return out


def _python_pre_install_venv(py: Python, chown: str, rules: Rules) -> list[str]:
    """wikimedia/blubber@v0.23.0 (and @v1.5.1):config/python.go PhasePreInstall: the venv,
    "activated" by VIRTUAL_ENV and PATH, the pip tooling and the requirements inside it."""
    assert py.requirements is not None
    out = _requirements_copies(py.requirements, chown)
    venv = ["-m", "venv", VENV] + (["--system-site-packages"] if py.system else [])
    out.append(_run([f"{sh(py.version)} {sh_words(venv)}"]))
    out.append(f'ENV PATH="{VENV}/bin:$PATH" VIRTUAL_ENV="{VENV}"')
    setuptools, *rest = _tooling(py)
    out.append(
        _pip_run([_pip(py, ["install", "-U", setuptools]), _pip(py, ["install", "-U", *rest])])
    )
    args = [x for a in py.requirements for x in ("-r", _effective_destination(a))]
    if args or not rules.skip_empty_install:
        install = ["install"] + (["--no-deps"] if py.no_deps else [])
        out.append(_pip_run([_pip(py, [*install, *args])]))
    return out


def _python_post_install(py: Python, rules: Rules) -> list[str]:
    if not py.enabled(rules) or py.requirements is None:
        return []
    out = [] if rules.venv else [_env({"PIP_NO_INDEX": "1"})]
    if py.no_deps:
        out.append(_run([_pip(py, ["check"])]))
    return out


@dataclass(frozen=True)
class _Custom:
    """A custom builder's RUN line with its mirrors (`sandbox.images.blubber.mirrors`)."""

    line: str
    mirrors: tuple[mirrors.Mirror, ...]
    urls: tuple[str, ...]


def _custom_run(command: list[str], mirror_map: dict[str, Path]) -> _Custom:
    """blubber's build.Run{command[0], command[1:]}: the first word is shell text (commands by
    design), the arguments quoted as blubber quotes them (build/instructions.go)."""
    rewritten, used = mirrors.rewrite(command, mirror_map)
    mounts = "".join(
        f"--mount=type=bind,source={m.context_path},target={m.mount_path} " for m in used
    )
    line = (
        f"RUN {mounts}{rewritten[0]} " + " ".join(schema.go_quote(a) for a in rewritten[1:])
    ).rstrip()
    remaining = [u for u in mirrors.urls(rewritten) if not u.startswith("file://")]
    return _Custom(line, tuple(used), tuple(remaining))


def _stand_in_prelude(stand_in: bases.StandIn) -> list[str]:
    out = []
    if stand_in.apt:
        out.append(_env({"DEBIAN_FRONTEND": "noninteractive"}))
        out.append(
            _run(
                [
                    "apt-get update",
                    f"apt-get install -y --no-install-recommends {sh_words(list(stand_in.apt))}",
                    "rm -rf /var/lib/apt/lists/*",
                ]
            )
        )
    if stand_in.pip:
        out.append(
            _pip_run(
                [f"python3 -m pip install --break-system-packages {sh_words(list(stand_in.pip))}"]
            )
        )
    return out


@dataclass
class _StageOut:
    lines: list[str]
    customs: list[_Custom]


def _stage(
    v: Variant, stage_name: str, base_image: str, stand_in: bases.StandIn, mirror_map: dict
) -> _StageOut:
    rules = v.rules
    lives, runs = v.lives, v.runs
    lives_owner = "$LIVES_UID:$LIVES_GID"
    builders = v.all_builders()
    customs: list[_Custom] = []
    out = [f"FROM {base_image}" + (f" AS {stage_name}" if stage_name else "")]
    # Privileged: as root.
    out += ["USER root", _env({"HOME": "/root"})]
    out += _stand_in_prelude(stand_in)
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
                steps.append(f"apt-get install -y {sh_words(packages[target])}")
            else:
                steps.append(f"apt-get install -y -t {sh(target)} {sh_words(packages[target])}")
        steps.append("rm -rf /var/lib/apt/lists/*")
        out.append(_run(steps))
    for b in builders:
        if isinstance(b, Python):
            out += _python_privileged(b, rules)
    out += [
        f"ARG LIVES_AS={schema.dockerfile_word(lives['as'], expand=False)}",
        f"ARG LIVES_UID={int(lives['uid'])}",
        f"ARG LIVES_GID={int(lives['gid'])}",
        _run(
            [
                *_create_user("$LIVES_AS", "$LIVES_UID", "$LIVES_GID"),
                f"mkdir -p {sh(lives['in'])}",
                f'chown "$LIVES_UID":"$LIVES_GID" {sh(lives["in"])}',
                f"mkdir -p {sh(LOCAL_LIB)}",
                f'chown "$LIVES_UID":"$LIVES_GID" {sh(LOCAL_LIB)}',
            ]
        ),
        f"ARG RUNS_AS={schema.dockerfile_word(runs['as'], expand=False)}",
        f"ARG RUNS_UID={int(runs['uid'])}",
        f"ARG RUNS_GID={int(runs['gid'])}",
        _run(_create_user("$RUNS_AS", "$RUNS_UID", "$RUNS_GID")),
    ]
    # Privilege dropped: the lives user.
    out += [
        "USER $LIVES_UID",
        _env({"HOME": _home(lives["as"])}, expand=False),
        f"WORKDIR {schema.dockerfile_word(lives['in'])}",
    ]
    if v.environment:
        out.append(_env(v.environment))
    # Pre-install: the builders.
    for b in builders:
        if isinstance(b, Python):
            if not b.enabled(rules):
                continue
            if rules.venv:
                out += _python_pre_install_venv(b, lives_owner, rules)
            else:
                out += _python_pre_install_target(b, lives_owner)
        elif b.command:
            out += _requirements_copies(b.requirements or [], lives_owner)
            custom = _custom_run(b.command, mirror_map)
            customs.append(custom)
            out.append(custom.line)
    # Install: the copies.
    for art in (x for a in v.copies for x in a.expand(lives["in"])):
        out.append(_copy(art, lives_owner))
    # Post-install: the runtime user, the entrypoint.
    post: list[str] = []
    if not v.insecurely:
        post += ["USER $RUNS_UID", _env({"HOME": _home(runs["as"])}, expand=False)]
    for b in builders:
        if isinstance(b, Python):
            post += _python_post_install(b, rules)
    if v.runs_in:
        post.append(f"WORKDIR {schema.dockerfile_word(v.runs_in)}")
    if v.entrypoint:
        post.append(f"ENTRYPOINT [{', '.join(_q(a) for a in v.entrypoint)}]")
    return _StageOut(out + post, customs)


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
    # What pip installs besides the requirements: blubber's upgrade of the pip tooling, and the
    # base stand-ins' packages (torch for a ROCm PyTorch base).
    tooling: tuple[str, ...] = ()
    # The blubber version whose rules were applied (vX.Y.Z) and its python layout.
    blubber_version: str = ""
    layout: str = ""  # "site-packages" (v0.21/22) or "venv" (v0.23+)
    # Each stage's base stand-in, in stage order.
    stand_ins: tuple[bases.StandIn, ...] = ()
    # Local clones mounted into custom builders (SANDBOX_GIT_MIRRORS).
    mirrors: tuple[mirrors.Mirror, ...] = ()
    # (command, URL) of custom builders that fetch with no mirror: they need the network.
    fetches: tuple[tuple[str, str], ...] = ()


def _guard(dockerfile: str, path: Path) -> None:
    """Every line one whole instruction: whatever a field holds, it cannot start another."""
    for line in dockerfile.split("\n"):
        if not line or line.startswith("# "):
            continue
        if (
            _INSTRUCTION.match(line) is None
            or line.endswith("\\")
            or schema.control_character(line) is not None
        ):
            raise BlubberError(
                f"{path}: the translation produced a line that is not one Dockerfile instruction "
                f"({line[:60]!r}); refusing to build it"
            )


def _comment(value: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", "?", value)


def translate(path: Path, variant: str, *, base_image: str) -> Translation:
    """Translate variant `variant` of the Blubber file at `path` (see the module doc). `base_image`
    is the local base every stand-in builds FROM."""
    path = Path(path)
    data, rules = _load(path)
    for name in data.get("variants") or {}:  # every variant is checked, as blubber does
        expand(data, name, path, rules)
    stages = _stage_order(data, variant, path, rules)
    target = stages[-1]
    stand_ins = []
    for v in stages:
        if not v.base:
            raise BlubberError(
                f"{path}: variants.{v.name}: no `base` (scratch images are not supported)"
            )
        try:
            stand_ins.append(bases.stand_in(v.base))
        except bases.BaseImageError as e:
            raise BlubberError(f"{path}: variants.{v.name}.base: {e}") from None
    try:
        mirror_map = mirrors.configured()
    except mirrors.MirrorError as e:
        raise BlubberError(str(e)) from None
    lines = [
        f"# Generated by ml-sandbox from {_comment(path.name)}, variant {variant}, with the rules",
        f"# of blubber {rules.tag}: the offline translation of what the Blubber frontend builds",
        "# (sandbox/images/blubber/__init__.py).",
        f"# Production base: {_comment(target.base)}; here: {_comment(base_image)}.",
    ]
    multi = len(stages) > 1
    customs: list[_Custom] = []
    for v, si in zip(stages, stand_ins, strict=True):
        lines.append("")
        stage = _stage(v, v.name if multi else "", base_image, si, mirror_map)
        lines += stage.lines
        customs += stage.customs
    labels = {
        "blubber.variant": variant,
        "org.ml-sandbox.blubber.base": target.base,
        "org.ml-sandbox.blubber.version": rules.tag,
    }
    lines.append(
        "LABEL "
        + " ".join(
            f"{k}={schema.dockerfile_word(val, expand=False)}" for k, val in sorted(labels.items())
        )
    )
    local: list[str] = []
    reqs: list[str] = []
    tooling: list[str] = []
    for v, si in zip(stages, stand_ins, strict=True):
        tooling += list(si.pip)
        for b in v.all_builders():
            if isinstance(b, Python) and b.enabled(rules) and b.requirements is not None:
                tooling += _tooling(b)
            if isinstance(b, Python) and not b.enabled(rules):
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
    dockerfile = "\n".join(lines) + "\n"
    _guard(dockerfile, path)
    uid, gid = target.user
    return Translation(
        dockerfile=dockerfile,
        local_sources=tuple(dict.fromkeys(local)),
        requirements=tuple(dict.fromkeys(reqs)),
        user=f"{uid}:{gid}",
        stages=tuple(v.name for v in stages),
        tooling=tuple(dict.fromkeys(tooling)),
        blubber_version=rules.tag,
        layout="venv" if rules.venv else "site-packages",
        stand_ins=tuple(stand_ins),
        mirrors=tuple(dict.fromkeys(m for c in customs for m in c.mirrors)),
        fetches=tuple((c.line.removeprefix("RUN "), u) for c in customs for u in c.urls),
    )


def to_dockerfile(path: Path, variant: str, *, base_image: str) -> str:
    """The Dockerfile for variant `variant` of the Blubber file at `path`, FROM `base_image`."""
    return translate(path, variant, base_image=base_image).dockerfile


def variants(path: Path) -> list[str]:
    """The variant names of a Blubber file (after checking the file as blubber reads it)."""
    data, _ = _load(Path(path))
    return list(data.get("variants") or {})


def local_stand_in_requirements(path: Path, variant: str) -> list[str]:
    """What the local target adds to an isvc's venv to match the docker target: the packages the
    variant's base stand-in puts in the system Python (e.g. ["torch==2.13.0"] for a ROCm PyTorch
    base, whose torch production's isvc takes from the base through
    `use-system-site-packages: true` or the base's own interpreter). Empty for other bases."""
    path = Path(path)
    data, rules = _load(path)
    v = expand(data, variant, path, rules)
    if not v.base:
        return []
    try:
        return list(bases.stand_in(v.base).pip)
    except bases.BaseImageError as e:
        raise BlubberError(f"{path}: variants.{variant}.base: {e}") from None


def frontend(path: Path) -> str | None:
    """The BuildKit frontend image named on the file's `# syntax=` line (what
    `docker buildx build -f blubber.yaml` runs where it can be pulled), or None."""
    try:
        return versions.syntax_line(Path(path).read_text(errors="replace"))
    except OSError:
        return None
