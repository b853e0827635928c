"""The wikis of `ml-sandbox pipeline --mediawiki replay` (the default): a run step's calls to
`https://<lang>.wikipedia.org` reach the sandbox's MediaWiki replay server instead of the internet.

Jenkins runs a test variant with the internet at hand, so an isvc's unit tests that call a wiki
(inference-services' outlink tests call fi.wikipedia.org and en.wikipedia.org through mwapi and
aiohttp) pass there and fail offline. Here, for each run step:

- a per-run CA issues a server certificate for every wiki of the replay server's fixtures (the
  CA's key is never written; the server's key and certificate are 0600 in a 0700 folder of the
  run directory, removed with the step);
- the replay server (its own image, `images/mediawiki-replay/`) answers HTTPS on port 443 of a
  private docker network, under a network alias for each of those wiki host names;
- the run container joins that network and trusts the CA through the standard variables
  (`SSL_CERT_FILE`, read by OpenSSL's default verify paths, i.e. by Python's
  `ssl.create_default_context()` that aiohttp uses; `REQUESTS_CA_BUNDLE` for requests), with a
  bundle of this machine's CAs plus the run's CA, so every other TLS client still works.

No code or test of the isvc changes. A request the fixtures cannot answer gets the replay
server's HTTP 501 `replay-not-in-fixtures`; the step's notes name each such request (from the
server's `NOT IN THE FIXTURES` log lines).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox import images
from sandbox.docker_cli import docker_binary
from sandbox.errors import RunError
from sandbox.paths import private_dir, run_dir

TLS_PORT = 443
CA_IN_CONTAINER = "/run/ml-sandbox-wiki-ca.pem"
TLS_IN_CONTAINER = "/run/ml-sandbox-wiki-tls"
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
RECORDINGS_IN_CONTAINER = "/srv/recordings"
START_TIMEOUT_S = 60.0
CERT_LIFETIME = datetime.timedelta(days=1)
# The server's line once it listens (sandbox.mediawiki.replay.serve), and its line per miss.
_READY = "MediaWiki replay ("
_MISS = re.compile(r"NOT IN THE FIXTURES \(([^)]*)\): (.*?)(?: -- record it with .*)?$")
# Its access log line (replay.py's access_log_format: '%a "%r" %s %b Host=%{Host}i ...').
_ACCESS = re.compile(r'"[A-Z]+ (/\S*) HTTP/[\d.]+" (\d{3}) \S+ Host=([^\s:]+)')


@dataclass(frozen=True)
class WikiMode:
    """`--mediawiki` of a pipeline that runs the replay server: its fixtures (`replay`), or
    recordings in a folder first (`replay:DIR`, answered as `--replay DIR --emulate`)."""

    recordings: Path | None = None

    def __str__(self) -> str:
        return f"replay:{self.recordings}" if self.recordings else "replay"

    def server_args(self) -> list[str]:
        """The replay server's mode arguments, with the folder as the container sees it."""
        return ["--replay", RECORDINGS_IN_CONTAINER, "--emulate"] if self.recordings else []

    def volumes(self) -> list[str]:
        return [f"{self.recordings}:{RECORDINGS_IN_CONTAINER}:ro"] if self.recordings else []


@dataclass(frozen=True)
class TlsFiles:
    """What `issue` writes: the server's chain and key, and the bundle a client trusts."""

    cert: Path
    key: Path
    bundle: Path


def wiki_hosts(fixtures: list[Path] | None = None) -> list[str]:
    """The host names the replay server's fixtures hold wikis for (the packaged fixtures by
    default), sorted: the names the run container reaches it under."""
    from sandbox.mediawiki.fixtures import load_wikis

    return sorted(load_wikis(fixtures))


def issue(hosts: list[str], directory: Path, base_bundle: Path | None) -> TlsFiles:
    """A fresh CA and a server certificate for `hosts` (names or IP literals), in `directory`:
    `server.pem` (the certificate, then the CA's) and `server.key` (0600), and `trust.pem`:
    `base_bundle`'s CAs plus the new CA, for the client (0644: the run container reads it as
    production's user; it holds only public certificates). The CA's key exists only in memory."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("no host names to issue a certificate for")
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + CERT_LIFETIME
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "ml-sandbox pipeline wiki CA (one run)")]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([_san(x509, h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    files = TlsFiles(directory / "server.pem", directory / "server.key", directory / "trust.pem")
    _write(files.cert, server.public_bytes(pem) + ca_pem, 0o600)
    _write(
        files.key,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    _write(files.bundle, trust_bundle(ca_pem, base_bundle), 0o644)
    return files


def _san(x509, host: str):  # x509: the module, imported lazily by `issue`
    """A subject alternative name: an IP address for an IP literal, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def trust_bundle(ca_pem: bytes, base_bundle: Path | None) -> bytes:
    """`base_bundle`'s certificates (this machine's CAs, when there is a bundle) and then the
    run's CA."""
    base = base_bundle.read_bytes() if base_bundle is not None else b""
    if base and not base.endswith(b"\n"):
        base += b"\n"
    return base + ca_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # whatever the umask


def misses(log: str) -> list[str]:
    """The requests the replay server answered `replay-not-in-fixtures`, from its log: each as
    it describes it (`GET fi.wikipedia.org/w/api.php?...`) with the reason, once, in order."""
    found: dict[str, None] = {}
    for line in log.splitlines():
        m = _MISS.search(line)
        if m:
            found[f"{m.group(2).strip()} ({m.group(1)})"] = None
    return list(found)


def served(log: str) -> dict[str, int]:
    """How many wiki requests (not the server's own /__replay__/ ones) the replay server
    answered, per wiki host, from its access log; sorted by host."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        m = _ACCESS.search(line)
        if m and not m.group(1).startswith("/__replay__/"):
            counts[m.group(3)] = counts.get(m.group(3), 0) + 1
    return dict(sorted(counts.items()))


def run_args(network: str, bundle: Path) -> list[str]:
    """The `docker run` options that send a container's wiki calls to the replay server: its
    network, and the run's CA bundle mounted read-only and named by the standard variables."""
    args = ["--network", network, "-v", f"{bundle}:{CA_IN_CONTAINER}:ro"]
    for var in CA_VARIABLES:
        args += ["-e", f"{var}={CA_IN_CONTAINER}"]
    return args


def server_args(hosts: list[str], network: str) -> list[str]:
    """The replay container's `docker run` options: the network, an alias per wiki host."""
    args = ["--network", network]
    for host in hosts:
        args += ["--network-alias", host]
    return args


class WikiReplay:
    """The replay server for one run step, as a context manager:

        with WikiReplay(WikiMode()) as wiki:
            docker run ... *wiki.run_args ...
            wiki.misses()

    On exit (also after an error or Ctrl-C) its container, network and certificates are gone.
    """

    def __init__(self, mode: WikiMode | None = None):
        self.mode = mode or WikiMode()
        token = secrets.token_hex(4)
        self.network = f"ml-sandbox-pipeline-wiki-{token}"
        self.container = f"ml-sandbox-pipeline-wiki-{token}"
        self.directory = run_dir() / "pipeline" / f"wiki-{token}"
        self.hosts: list[str] = []
        self.files: TlsFiles | None = None
        self._network_made = False

    @property
    def run_args(self) -> list[str]:
        assert self.files is not None, "WikiReplay is used inside `with`"
        return run_args(self.network, self.files.bundle)

    def __enter__(self) -> WikiReplay:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        image = images.build(images.replay_recipe())
        self.hosts = wiki_hosts()
        private_dir(self.directory)
        self.files = issue(self.hosts, self.directory, images.ca_bundle())
        _docker("network", "create", "--label", "ml-sandbox.pipeline=wiki", self.network)
        self._network_made = True
        tls = f"{self.directory}:{TLS_IN_CONTAINER}:ro"
        cmd = ["run", "--detach", "--name", self.container, "--user", _user(), "-v", tls]
        for volume in self.mode.volumes():
            cmd += ["-v", volume]
        cmd += [*server_args(self.hosts, self.network), image]
        cmd += ["--port", str(TLS_PORT)]
        cmd += ["--tls-cert", f"{TLS_IN_CONTAINER}/server.pem"]
        cmd += ["--tls-key", f"{TLS_IN_CONTAINER}/server.key", *self.mode.server_args()]
        _docker(*cmd)
        print(
            f"• MediaWiki replay server: https://<wiki>:{TLS_PORT} for {len(self.hosts)} wikis "
            f"({', '.join(h for h in self.hosts if h.endswith('.wikipedia.org'))[:120]}…) on "
            f"network {self.network}",
            flush=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            log = self.log()
            if _READY in log:
                return
            state = _docker(
                "inspect", "--format", "{{.State.Running}}", self.container, check=False
            )
            if state.stdout.strip() != "true" or time.monotonic() > deadline:
                raise RunError(
                    "the MediaWiki replay server did not start"
                    + (" (it exited)" if state.stdout.strip() != "true" else "")
                    + ":\n"
                    + "\n".join(log.splitlines()[-20:])
                )
            time.sleep(0.3)

    def log(self) -> str:
        out = _docker("logs", self.container, check=False)
        return out.stdout + out.stderr

    def misses(self) -> list[str]:
        return misses(self.log())

    def served(self) -> dict[str, int]:
        return served(self.log())

    def close(self) -> None:
        _docker("rm", "-f", self.container, check=False)
        if self._network_made:
            _docker("network", "rm", self.network, check=False)
            self._network_made = False
        shutil.rmtree(self.directory, ignore_errors=True)


def _user() -> str:
    """The replay container runs as this user, so it can read the 0600 key in the run dir."""
    return f"{os.getuid()}:{os.getgid()}"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([docker_binary(), *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RunError(f"docker {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc
