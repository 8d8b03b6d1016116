"""Sources outside DigitalOcean's API: GitHub repository archives, S3 objects, Grafana, plain URLs.

Everything streams: a repository tarball is read member by member straight
from the HTTP response into the config archive (never whole in memory, never
in /tmp); S3 objects go from GetObject to the archive. Failures raise
`SourceError` with what to do next; tokens are never part of a message.
"""

from __future__ import annotations

import fnmatch
import tarfile
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from drkit import __version__
from drkit.configbackup.archive import SourceError, safe_path
from drkit.configbackup.inventory import doc, redact_secrets
from drkit.configbackup.sources import Source
from drkit.platform.config import SpacesConfig

TIMEOUT = (10, 60)  # connect, read (seconds)
GITHUB_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class Sink(Protocol):
    def add_bytes(self, path: str, data: bytes) -> Any: ...
    def add_stream(self, path: str, size: int, reader: Any, mode: int = 0o644) -> Any: ...
    def add_symlink(self, path: str, target: str) -> Any: ...


def session() -> Any:
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = f"drkit/{__version__}"
    return s


def _get(http: Any, url: str, what: str, token_label: str, **kwargs: Any) -> Any:
    import requests

    try:
        resp = http.get(url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        raise SourceError(f"{what}: cannot reach {urlsplit(url).netloc} ({type(exc).__name__})") from None
    if resp.status_code in (401, 403):
        hint = "rate limited or forbidden" if resp.status_code == 403 else "rejected"
        resp.close()
        raise SourceError(f"{what}: the token was {hint} (HTTP {resp.status_code}): check {token_label}")
    if resp.status_code == 404:
        resp.close()
        raise SourceError(f"{what}: not found (HTTP 404) at {urlsplit(url).netloc}{urlsplit(url).path}")
    if resp.status_code != 200:
        resp.close()
        raise SourceError(f"{what}: HTTP {resp.status_code} from {urlsplit(url).netloc}")
    return resp


# -- GitHub -------------------------------------------------------------------------------------

def github(source: Source, sink: Sink) -> dict[str, Any]:
    """The repository at `ref` (default branch if absent) via `GET /repos/{repo}/tarball/{ref}`.

    GitHub answers with a redirect to codeload; requests drops the Authorization
    header on the cross-host redirect, as it should.
    """
    repo, ref = source.options["repo"], source.options.get("ref")
    api = str(source.opt("api_url")).rstrip("/")
    url = f"{api}/repos/{repo}/tarball" + (f"/{quote(ref, safe='')}" if ref else "")
    token_var = source.opt("token_env")
    http = session()
    headers = {**GITHUB_HEADERS, "Authorization": f"Bearer {source.secrets['token_env'].reveal()}"}
    resp = _get(http, url, f"GitHub {repo}", token_var, headers=headers, stream=True)
    excludes = list(source.opt("exclude") or [])
    limit = int(source.opt("max_bytes"))
    files = total = 0
    commit = None
    try:
        with tarfile.open(fileobj=resp.raw, mode="r|gz") as tar:
            for member in tar:
                commit = commit or tar.pax_headers.get("comment")
                rel = member.name.split("/", 1)[1] if "/" in member.name else ""
                if not rel or member.isdir() or any(fnmatch.fnmatch(rel, pat) for pat in excludes):
                    continue
                if member.issym():
                    sink.add_symlink(safe_path(rel), member.linkname)
                elif member.isfile():
                    total += member.size
                    if total > limit:
                        raise SourceError(f"GitHub {repo}: more than {limit} bytes of files; raise max_bytes or "
                                          "add exclude patterns")
                    sink.add_stream(safe_path(rel), member.size, tar.extractfile(member), member.mode)
                else:
                    continue  # hard links, devices: not in GitHub archives
                files += 1
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"GitHub {repo}: the archive stream broke after {files} files "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    finally:
        resp.close()
    return {"repo": repo, "ref": ref or "(default branch)", "commit": commit, "files": files, "bytes": total}


# -- S3 ----------------------------------------------------------------------------------------

def s3(source: Source, sink: Sink, spaces: SpacesConfig) -> dict[str, Any]:
    """Objects under `prefix` (or the listed `keys`) of another bucket, e.g. Terraform state."""
    from drkit.storage.store import make_client

    o = source.options
    endpoint = o.get("endpoint") or (f"https://{o['region']}.digitaloceanspaces.com" if o.get("region")
                                     else spaces.endpoint_url)
    cfg = SpacesConfig(bucket=o["bucket"], endpoint_url=str(endpoint).rstrip("/"), region=o.get("region") or spaces.region,
                       access_key=source.secrets["key_env"], secret_key=source.secrets["secret_env"], max_attempts=4)
    client = make_client(cfg)
    prefix = str(o.get("prefix", ""))
    limit_objects, limit_bytes = int(source.opt("max_objects")), int(source.opt("max_bytes"))
    what = f"s3://{o['bucket']}/{prefix}"
    try:
        if o.get("keys"):
            objects = [(k, None) for k in o["keys"]]
        else:
            objects = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=o["bucket"], Prefix=prefix):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        objects.append((item["Key"], item["Size"]))
                if len(objects) > limit_objects:
                    raise SourceError(f"{what}: more than {limit_objects} objects; narrow the prefix or raise max_objects")
        total = 0
        for key, _ in objects:
            body = client.get_object(Bucket=o["bucket"], Key=key)
            size = int(body["ContentLength"])
            total += size
            if total > limit_bytes:
                body["Body"].close()
                raise SourceError(f"{what}: more than {limit_bytes} bytes; narrow the prefix or raise max_bytes")
            rel = key[len(prefix):] if prefix and key.startswith(prefix) else key
            try:
                sink.add_stream(safe_path(rel), size, body["Body"])
            finally:
                body["Body"].close()
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore errors become the source's failure
        from drkit.storage.store import explain

        raise SourceError(f"{what}: {explain(exc, 'reading', o['bucket'], str(endpoint))}") from None
    return {"bucket": o["bucket"], "prefix": prefix, "objects": len(objects), "bytes": total}


# -- Grafana -----------------------------------------------------------------------------------

def grafana(source: Source, sink: Sink) -> dict[str, Any]:
    """Dashboards (by uid, through /api/search), data sources, folders and alert rules."""
    base = str(source.options["url"]).rstrip("/")
    http = session()
    http.headers["Authorization"] = f"Bearer {source.secrets['token_env'].reveal()}"
    label = str(source.opt("token_env"))

    def get_json(path: str, what: str) -> Any:
        resp = _get(http, base + path, f"Grafana {what}", label)
        try:
            return resp.json()
        except ValueError:
            raise SourceError(f"Grafana {what}: the answer is not JSON (is {base} a Grafana URL?)") from None

    dashboards: list[dict[str, Any]] = []
    page = 1
    while True:
        batch = get_json(f"/api/search?type=dash-db&limit=500&page={page}", "dashboard search")
        if not isinstance(batch, list):
            raise SourceError("Grafana dashboard search: unexpected answer")
        dashboards += batch
        if len(batch) < 500:
            break
        page += 1
    index = []
    for d in sorted(dashboards, key=lambda d: str(d.get("uid"))):
        uid = str(d.get("uid"))
        full = get_json(f"/api/dashboards/uid/{quote(uid, safe='')}", f"dashboard {uid}")
        sink.add_bytes(f"dashboards/{safe_path(uid)}.json", doc(full))
        index.append({"uid": uid, "title": d.get("title"), "folder": d.get("folderTitle") or "General"})
    sink.add_bytes("dashboards.index.json", doc(index))  # beside dashboards/: no uid can collide
    datasources = get_json("/api/datasources", "data sources")
    for ds in sorted(datasources, key=lambda x: str(x.get("uid") or x.get("name"))):
        sink.add_bytes(f"datasources/{safe_path(str(ds.get('uid') or ds.get('name')))}.json",
                       doc(redact_secrets({k: v for k, v in ds.items() if k != "basicAuthPassword"})))
    sink.add_bytes("folders.json", doc(get_json("/api/folders", "folders")))
    details: dict[str, Any] = {"dashboards": len(dashboards), "datasources": len(datasources)}
    try:
        rules = get_json("/api/v1/provisioning/alert-rules", "alert rules")
        sink.add_bytes("alert-rules.json", doc(rules))
        details["alert_rules"] = len(rules) if isinstance(rules, list) else None
    except SourceError as exc:
        if "HTTP 404" not in str(exc):
            raise
        details["alert_rules"] = "not available (Grafana < 9)"
    return details


# -- plain HTTP(S) ------------------------------------------------------------------------------

def http_file(source: Source, sink: Sink) -> dict[str, Any]:
    url = str(source.options["url"])
    path = str(source.options.get("path") or urlsplit(url).path.rsplit("/", 1)[-1] or "index")
    http = session()
    if "token_env" in source.secrets:
        http.headers["Authorization"] = f"Bearer {source.secrets['token_env'].reveal()}"
    limit = int(source.opt("max_bytes"))
    label = str(source.opt("token_env")) if "token_env" in source.secrets else \
        "whether the URL needs a token (token_env names the variable holding it)"
    resp = _get(http, url, f"URL {urlsplit(url).netloc}{urlsplit(url).path}", label, stream=True)
    try:
        length = resp.headers.get("Content-Length")
        if length is not None and resp.headers.get("Content-Encoding") in (None, "identity") and length.isdigit():
            if int(length) > limit:
                raise SourceError(f"{url}: {length} bytes is more than max_bytes ({limit})")
            sink.add_stream(safe_path(path), int(length), resp.raw)
            size = int(length)
        else:  # no length (chunked or compressed): read it whole, bounded
            data = bytearray()
            for chunk in resp.iter_content(1 << 16):
                data.extend(chunk)
                if len(data) > limit:
                    raise SourceError(f"{url}: more than max_bytes ({limit}) without a Content-Length")
            sink.add_bytes(safe_path(path), bytes(data))
            size = len(data)
    finally:
        resp.close()
    return {"url": url, "path": path, "bytes": size}
