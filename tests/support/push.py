"""Getting test images into a RegistryServer: with skopeo, or straight through the distribution API.

skopeo 1.9 re-compresses uncompressed layers, drops zstd when pushing to a registry and cannot
write a manifest list, so indexes, zstd, uncompressed and hostile images go through `push_raw`,
which sends the bytes we built unchanged (the spec's monolithic upload: POST, then PUT with
?digest=). skopeo is used where the images are ordinary, with --preserve-digests so a changed
manifest fails loudly instead of silently giving the test a different digest.
"""

import json
import re
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import requests

from . import images

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class PushError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# Raw pushes


class RegistrySession:
    """requests.Session for one repository of a RegistryServer, answering its auth challenges.

    A token is fetched on the first Bearer challenge and kept: a push ends long before it expires.

    `creds`: None means the registry's own credentials (if it has any), `()` means anonymous, or
    a (user, password) pair. `actions` are the token scope's actions.
    """

    def __init__(self, registry, repository, creds=None, actions=("pull", "push")):
        self.registry = registry
        self.repository = repository
        self.creds = registry.credentials if creds is None else (tuple(creds) or None)
        self.actions = actions
        self.http = requests.Session()
        self.token_requests = 0

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def url(self, path):
        return f"{self.registry.url}/v2/{self.repository}/{path}"

    def request(self, method, url, **kw):
        kw.setdefault("timeout", 30)
        # Per request, not Session.verify: requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE
        # override a session's verify (but not a request's), and CI machines set them.
        kw.setdefault("verify", self.registry.verify)
        response = self.http.request(method, url, **kw)
        if response.status_code == 401 and self._answer_challenge(response.headers.get("WWW-Authenticate",
                                                                                       "")):
            if hasattr(kw.get("data"), "seek"):
                kw["data"].seek(0)
            response = self.http.request(method, url, **kw)
        return response

    def _answer_challenge(self, header):
        scheme, _, rest = header.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        if scheme.lower() == "basic":
            if self.creds is None or self.http.auth == self.creds:
                return False
            self.http.auth = self.creds
            return True
        if scheme.lower() == "bearer":
            query = {"scope": f"repository:{self.repository}:{','.join(self.actions)}"}
            if "service" in params:
                query["service"] = params["service"]
            self.token_requests += 1
            answer = requests.get(params["realm"], params=query, auth=self.creds, timeout=30,
                                  verify=self.registry.verify)
            if answer.status_code != 200:
                raise PushError(f"token server {params['realm']} answered {answer.status_code}: "
                                f"{answer.text[:200]}")
            body = answer.json()
            self.http.headers["Authorization"] = "Bearer " + (body.get("token") or body["access_token"])
            return True
        return False

    def check(self, response, what):
        if response.status_code >= 400:
            raise PushError(f"{what}: {response.request.method} {response.url} -> {response.status_code} "
                            f"{response.text[:300]}")
        return response

    # -- the distribution API

    def blob_exists(self, digest):
        return self.request("HEAD", self.url(f"blobs/{digest}")).status_code == 200

    def upload_blob(self, digest, data):
        """Monolithic upload (distribution spec: POST /blobs/uploads/, then PUT <location>?digest=)."""
        started = self.check(self.request("POST", self.url("blobs/uploads/")), f"start upload of {digest}")
        location = urllib.parse.urljoin(self.registry.url + "/", started.headers["Location"])
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        self.check(self.request("PUT", location, data=data,
                                headers={"Content-Type": "application/octet-stream"}),
                   f"upload of {digest}")

    def put_manifest(self, reference, data, media_type):
        response = self.check(self.request("PUT", self.url(f"manifests/{reference}"), data=data,
                                           headers={"Content-Type": media_type}),
                              f"manifest {self.repository}:{reference}")
        return response.headers.get("Docker-Content-Digest")

    def get_manifest(self, reference, accept=None):
        accept = accept or ", ".join((images.OCI_INDEX, images.DOCKER_LIST,
                                      images.OCI_MANIFEST, images.DOCKER_MANIFEST))
        return self.check(self.request("GET", self.url(f"manifests/{reference}"), headers={"Accept": accept}),
                          f"manifest {self.repository}:{reference}")


def push_raw(registry, repository, reference, built, *, creds=None):
    """Push `built` (a BuiltImage or BuiltIndex) under `reference` (a tag or its digest).

    Blobs the registry has in this repository are skipped; child manifests go first, by digest.
    Returns the manifest digest the registry reports. `creds` as for RegistrySession.
    """
    with RegistrySession(registry, repository, creds) as session:
        for digest, data in built.blobs.items():
            if not session.blob_exists(digest):
                session.upload_blob(digest, data)
        for child in built.children:
            session.put_manifest(child.manifest_digest, child.manifest_bytes, child.media_type)
        digest = session.put_manifest(reference, built.manifest_bytes, built.media_type)
    if digest != built.manifest_digest:
        raise PushError(f"the registry stored {repository}:{reference} as {digest}, not "
                        f"{built.manifest_digest}")
    return digest


def get_manifest(registry, repository, reference, *, creds=None, accept=None):
    """(bytes, content type, Docker-Content-Digest) of a manifest as the registry serves it."""
    with RegistrySession(registry, repository, creds, actions=("pull",)) as session:
        response = session.get_manifest(reference, accept)
        return (response.content, response.headers.get("Content-Type"),
                response.headers.get("Docker-Content-Digest"))


# ---------------------------------------------------------------------------------------------
# skopeo


class Skopeo:
    """skopeo with every piece of configuration in `directory`, so it behaves the same for root
    and for a fresh user without /etc/containers/policy.json, $XDG_RUNTIME_DIR or ~/.docker."""

    def __init__(self, directory, binary="skopeo"):
        self.directory = Path(directory)
        self.binary = binary
        for sub in ("tmp", "run", "data", "config", "docker", "certs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "run").chmod(0o700)
        self.policy = self.directory / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = self.directory / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.authfile = self.directory / "auth.json"
        self.authfile.write_text(json.dumps({"auths": {}}))

    def env(self):
        d = self.directory
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(d),
            "TMPDIR": str(d / "tmp"),
            # Rootless c/image looks for auth.json under $XDG_RUNTIME_DIR and keeps its blob-info
            # cache under $XDG_DATA_HOME (root's goes to /var/lib/containers/cache regardless).
            "XDG_RUNTIME_DIR": str(d / "run"),
            "XDG_DATA_HOME": str(d / "data"),
            "XDG_CONFIG_HOME": str(d / "config"),
            "DOCKER_CONFIG": str(d / "docker"),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "REGISTRIES_CONFIG_PATH": str(self.registries_conf),
        }

    def run(self, *args, check=True):
        command = [self.binary, "--policy", str(self.policy), "--tmpdir", str(self.directory / "tmp"), *args]
        result = subprocess.run(command, env=self.env(), stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=120)
        if check and result.returncode != 0:
            raise PushError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.strip()}")
        return result

    def tls_args(self, registry, prefix):
        """--{prefix}-tls-verify and --{prefix}-cert-dir for `registry` (prefix "" for inspect)."""
        flag = _flag_prefix(prefix)
        if registry.ca_file is None:
            return [f"{flag}tls-verify=false"]
        # c/image reads every *.crt in the directory as a CA (and *.cert/*.key as client certs).
        cert_dir = self.directory / "certs" / registry.host.replace(":", "_")
        cert_dir.mkdir(exist_ok=True)
        (cert_dir / "ca.crt").write_bytes(Path(registry.ca_file).read_bytes())
        return [f"{flag}tls-verify=true", f"{flag}cert-dir", str(cert_dir)]

    @staticmethod
    def creds_args(registry, creds, prefix):
        flag = _flag_prefix(prefix)
        creds = registry.credentials if creds is None else (tuple(creds) or None)
        return [f"{flag}creds", f"{creds[0]}:{creds[1]}"] if creds else [f"{flag}no-creds"]

    def copy_layout_to_registry(self, layout_dir, layout_tag, registry, repository, tag, *, format=None,
                                creds=None):
        digest_file = self.directory / "tmp" / "digest"
        args = ["copy", "--quiet", "--authfile", str(self.authfile), "--digestfile", str(digest_file),
                *self.tls_args(registry, "dest"), *self.creds_args(registry, creds, "dest")]
        if format:
            args += ["--format", format]
        else:
            args.append("--preserve-digests")
        self.run(*args, source_name(layout_dir, layout_tag), f"docker://{registry.host}/{repository}:{tag}")
        return digest_file.read_text().strip()

    def inspect_raw(self, registry, repository, reference, *, creds=None):
        """The manifest bytes as skopeo fetches them (by tag, or by digest when `reference` has ':')."""
        sep = "@" if ":" in reference else ":"
        result = self.run("inspect", "--raw", "--authfile", str(self.authfile), *self.tls_args(registry, ""),
                          *self.creds_args(registry, creds, ""),
                          f"docker://{registry.host}/{repository}{sep}{reference}")
        return result.stdout.encode()


def _flag_prefix(prefix):
    # `skopeo copy` says --src-creds/--dest-creds; `skopeo inspect` says --creds.
    return f"--{prefix}-" if prefix else "--"


def source_name(layout_dir, layout_tag=None):
    """`oci:DIR:TAG` for an OCI layout (images.write_oci_layout), `dir:DIR` for images.write_skopeo_dir."""
    layout_dir = Path(layout_dir)
    if (layout_dir / "oci-layout").exists():
        return f"oci:{layout_dir}:{layout_tag}"
    if (layout_dir / "manifest.json").exists():
        return f"dir:{layout_dir}"
    raise PushError(f"{layout_dir} is neither an OCI layout nor a skopeo dir: image")


def push_with_skopeo(layout_dir, layout_tag, registry, repository, tag, *, format=None, creds=None,
                     workdir=None):
    """`skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:TAG`; returns the pushed manifest digest.

    `layout_dir` may also be a skopeo `dir:` image (images.write_skopeo_dir; `layout_tag` is then
    ignored): the only way to push a Docker schema 2 image unchanged with skopeo 1.9.

    Without `format` the manifest is pushed byte for byte (--preserve-digests); with "oci" or
    "v2s2" skopeo may rewrite it, and the returned digest is the new one.
    """
    if workdir is not None:
        return Skopeo(workdir).copy_layout_to_registry(layout_dir, layout_tag, registry, repository, tag,
                                                       format=format, creds=creds)
    with tempfile.TemporaryDirectory(prefix="skopeo-") as tmp:
        return Skopeo(tmp).copy_layout_to_registry(layout_dir, layout_tag, registry, repository, tag,
                                                   format=format, creds=creds)


# ---------------------------------------------------------------------------------------------
# The scenarios, pushed once per registry


@dataclass(frozen=True)
class PushedImage:
    name: str  # the scenario
    registry: object  # the RegistryServer
    repository: str
    tag: str
    manifest_digest: str
    config_digest: str | None  # None for an index
    media_type: str
    built: object  # BuiltImage or BuiltIndex
    tampered_digest: str | None = None  # the blob corrupted in storage, for the "tampered" scenario

    @property
    def reference(self):
        """HOST:PORT/REPO:TAG"""
        return f"{self.registry.host}/{self.repository}:{self.tag}"

    @property
    def by_digest(self):
        """HOST:PORT/REPO@sha256:..."""
        return f"{self.registry.host}/{self.repository}@{self.manifest_digest}"

    @property
    def digest(self):
        return self.manifest_digest

    @property
    def layer_digests(self):
        return tuple(layer["digest"] for layer in getattr(self.built, "layers", ()))


# name -> (repository, how it is pushed, builder). The shared-base pair is one builder call.
SCENARIOS = {
    "busybox": ("busybox", "skopeo", images.busybox_image),
    "shared_a": ("shared/a", "raw", lambda: images.two_images_sharing_base()[0]),
    "shared_b": ("shared/b", "raw", lambda: images.two_images_sharing_base()[1]),
    "whiteout": ("whiteout", "raw", images.whiteout_image),
    "multiarch": ("multiarch", "raw", images.multiarch_index),
    "zstd": ("zstd", "raw", images.zstd_image),
    "uncompressed": ("uncompressed", "raw", images.uncompressed_image),
    "docker_schema2": ("docker-schema2", "skopeo", images.docker_schema2_image),
    "docker_list": ("docker-list", "raw", images.docker_manifest_list),
    "dotdot": ("hostile/dotdot", "raw", images.dotdot_image),
    "symlink_escape": ("hostile/symlink-escape", "raw", images.symlink_escape_image),
    "hardlink_escape": ("hostile/hardlink-escape", "raw", images.hardlink_escape_image),
    "too_deep": ("hostile/too-deep", "raw", images.too_deep_image),
    "trailing_data": ("hostile/trailing-data", "raw", images.trailing_data_image),
    "absolute_paths": ("hostile/absolute-paths", "raw", images.absolute_paths_image),
    "special_files": ("hostile/special-files", "raw", images.special_files_image),
    "odd_names": ("odd-names", "raw", images.odd_names_image),
    "tampered": ("hostile/tampered", "raw", images.tampered_image),
}
TAG = "1"


def push_scenarios(registry, workdir, names=None, *, repository_prefix="", creds=None):
    """Build and push scenarios (all by default) to `registry`; returns name -> PushedImage.

    The "tampered" scenario's layer is corrupted in the registry's storage after the push.
    """
    workdir = Path(workdir)
    skopeo = None
    pushed = {}
    for name in names or SCENARIOS:
        repo_suffix, method, builder = SCENARIOS[name]
        repository = repository_prefix + repo_suffix
        built = builder()
        if method == "skopeo":
            skopeo = skopeo or Skopeo(workdir / "skopeo")
            if built.media_type == images.DOCKER_MANIFEST:
                source = workdir / f"dir-{name}"
                images.write_skopeo_dir(source, built)
            else:
                source = workdir / "layout"
                images.write_oci_layout(source, built, name)
            digest = skopeo.copy_layout_to_registry(source, name, registry, repository, TAG, creds=creds)
        else:
            digest = push_raw(registry, repository, TAG, built, creds=creds)
        if digest != built.manifest_digest:
            raise PushError(f"{name}: pushed as {digest}, built as {built.manifest_digest}")
        tampered = None
        if name == "tampered":
            tampered = built.layers[0]["digest"]
            registry.tamper_blob(tampered)
        pushed[name] = PushedImage(
            name=name, registry=registry, repository=repository, tag=TAG, manifest_digest=digest,
            config_digest=getattr(built, "config_digest", None), media_type=built.media_type, built=built,
            tampered_digest=tampered)
    return pushed
