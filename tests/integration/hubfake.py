"""A fake Hugging Face Hub on loopback for the `cifar100 push` / `cifar100 pull` tests.

Two threaded HTTP/1.1 servers on 127.0.0.1 (random ports):
  - `hub` (HubFake.url, what HF_ENDPOINT points at): the JSON API (/api/whoami-v2, /api/repos/create,
    /api/models/{repo}[/revision/{rev}], /branch, /refs, /commits, /preupload, /commit (NDJSON), /tree,
    /api/validate-yaml), the git-lfs batch and verify endpoints ({repo}.git/info/lfs/objects/...), the
    multipart completion endpoint, and /{repo}/resolve/{rev}/{path};
  - `storage` (HubFake.storage_url), standing in for S3 (presigned LFS PUTs) and the CDN that LFS downloads
    are redirected to. Its URLs carry an expiring HMAC signature in the query, as presigned URLs do; it never
    needs the Hub token, and (like S3) rejects a presigned PUT that also carries an Authorization header.

What it checks like the real Hub (see /tmp/hub_api.md for the sources):
  - `Authorization: Bearer <token>` on every hub request: 401 {"error": "Invalid credentials in Authorization
    header"} for a missing or unknown token (stricter than the Hub, which serves public repos anonymously;
    `anonymous_reads=True` restores that);
  - write access: a token of role "write" whose user is the namespace or a write/admin member of the org.
    Creating in a foreign namespace: 403; writing (preupload, LFS batch, branch, commit) to a foreign public
    repo: 403 "Forbidden: pass `create_pr=1` ..."; a private repo that the user cannot read: 404 RepoNotFound;
  - X-Error-Code / X-Error-Message on errors (RepoNotFound, RevisionNotFound, EntryNotFound);
  - preupload: "lfs" for files >= 10 MiB, paths matching the default .gitattributes (*.safetensors, *.pt,
    ...) and binary samples (NUL bytes or invalid UTF-8), "regular" otherwise; "oid" of the existing file;
  - LFS batch: objects already stored come back without "actions" (nothing to upload); otherwise a basic
    upload action (presigned PUT on `storage`) and a verify action; multipart only when
    `multipart_chunk_size` is set and the client offered "multipart";
  - the PUT: Content-Length required (411), chunked bodies refused (501), body sha256 and size must match
    the oid (400 BadDigest);
  - commit NDJSON: Content-Type application/x-ndjson, a header line first (summary), then file / lfsFile /
    deletedFile / deletedFolder lines; base64 must decode; regular files must be text < 10 MiB (400, the
    Hub's "rejected because it contains binary files"); lfsFile oids must have been uploaded to this repo
    with that size (422); paths must be relative without '..' (422); parentCommit must be the branch head
    (412); README.md's YAML front matter is validated (400), model-index included;
  - resolve: regular files 200 with ETag "<git blob sha1>" and X-Repo-Commit; LFS files a 302 to an absolute
    storage URL with X-Linked-Etag "<sha256>", X-Linked-Size and X-Repo-Commit on the 302 itself (the CDN's
    response carries none of them, and its ETag is an MD5 as S3's would be); Range requests honoured.

Test knobs (all thread-safe):
  fake.add_user(name, token, role="write", orgs={"acme": "write"}); fake.add_token(token, user, role)
  fake.seed_repo("bob/theirs", private=False, files={"README.md": b"..."})
  fault = fake.fail("commit", status=500, times=2)   # route name or regex on the path; .attempts, .hits
  fault = fake.drop("lfs_put", times=1, after=0.5)   # close the connection mid-body (fraction or bytes)
  fake.corrupt_object(repo_id, oid)                  # the CDN then serves different bytes for that object
  fake.requests (list of dicts), fake.routes(), fake.count(route), fake.clear_log()
  fake.repo(repo_id), fake.head(repo_id, rev), fake.commits(repo_id, rev), fake.commit(repo_id, oid),
  fake.files(repo_id, rev) -> {path: bytes}, fake.lfs_objects(repo_id) -> {oid: bytes}
  fake.stop()  (or use it as a context manager)
"""
import base64
import binascii
import datetime
import fnmatch
import hashlib
import hmac
import http.server
import itertools
import json
import os
import re
import socket
import threading
import time
import urllib.parse

try:
    import yaml  # PyYAML, for the model card check (Debian: python3-yaml)
except ImportError:  # pragma: no cover
    yaml = None

LFS_MIME = "application/vnd.git-lfs+json"
TEN_MIB = 10 * 1024 * 1024

DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in [
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl",
    "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz",
    "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*"]).encode()
LFS_PATTERNS = [line.split()[0] for line in DEFAULT_GITATTRIBUTES.decode().splitlines()]

# Licence identifiers the Hub accepts in card metadata (a subset of its list; "other" is always allowed).
LICENSES = {"apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigcode-openrail-m",
            "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc0-1.0", "bsd-2-clause",
            "bsd-3-clause", "gpl-3.0", "lgpl-3.0", "agpl-3.0", "mpl-2.0", "unlicense", "llama2", "llama3", "gemma",
            "afl-3.0", "artistic-2.0", "bsl-1.0", "cc-by-2.0", "cc-by-3.0", "wtfpl", "other", "unknown"}


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid, size):
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def is_binary(sample):
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(sample) - 3  # a character cut at the end of a sample is fine
    return False


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def bad_path(path):
    return (not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\0" in path
            or any(part in ("", ".", "..") for part in path.split("/")))


def validate_card(text):
    """Errors in a README.md's YAML front matter, in the Hub's (Joi-like) wording; [] when valid."""
    if not (text.startswith("---\n") or text.startswith("---\r\n")):
        return []
    m = re.match(r"---\r?\n(.*?)(?:\r?\n)?^---[ \t]*$", text, re.S | re.M)
    if not m:
        return ["The YAML metadata block is not closed by a '---' line"]
    if yaml is None:
        return []
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as e:
        return [f"Invalid YAML: {str(e).splitlines()[0]}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ['"value" must be of type object']
    errs = []

    def strings(key, allow_str=True):
        v = meta.get(key)
        if v is None:
            return
        if allow_str and isinstance(v, str):
            return
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            errs.append(f'"{key}" must be an array of strings')

    for key in ("library_name", "pipeline_tag"):
        if key in meta and not isinstance(meta[key], str):
            errs.append(f'"{key}" must be a string')
    strings("tags")
    strings("datasets")
    strings("metrics")
    strings("language")
    lic = meta.get("license")
    if lic is not None:
        for lv in (lic if isinstance(lic, list) else [lic]):
            if not isinstance(lv, str) or lv not in LICENSES:
                errs.append(f'"license" must be one of the Hub\'s licence identifiers (got {lv!r})')
    if "model-index" in meta:
        mi = meta["model-index"]
        if not isinstance(mi, list):
            errs.append('"model-index" must be an array')
            mi = []
        for i, model in enumerate(mi):
            p = f"model-index[{i}]"
            if not isinstance(model, dict):
                errs.append(f'"{p}" must be of type object')
                continue
            if not isinstance(model.get("name"), str):
                errs.append(f'"{p}.name" is required')
            results = model.get("results")
            if not isinstance(results, list):
                errs.append(f'"{p}.results" must be an array')
                continue
            for j, res in enumerate(results):
                q = f"{p}.results[{j}]"
                if not isinstance(res, dict):
                    errs.append(f'"{q}" must be of type object')
                    continue
                for part, required in (("task", ("type",)), ("dataset", ("type", "name"))):
                    d = res.get(part)
                    if not isinstance(d, dict):
                        errs.append(f'"{q}.{part}" is required')
                        continue
                    for k in required:
                        if not isinstance(d.get(k), str):
                            errs.append(f'"{q}.{part}.{k}" is required')
                metrics = res.get("metrics")
                if not isinstance(metrics, list) or not metrics:
                    errs.append(f'"{q}.metrics" must be a non-empty array')
                    continue
                for k, met in enumerate(metrics):
                    r = f"{q}.metrics[{k}]"
                    if not isinstance(met, dict):
                        errs.append(f'"{r}" must be of type object')
                        continue
                    if not isinstance(met.get("type"), str):
                        errs.append(f'"{r}.type" is required')
                    if "value" not in met:
                        errs.append(f'"{r}.value" is required')
    return errs


def card_data(text):
    m = re.match(r"---\r?\n(.*?)(?:\r?\n)?^---[ \t]*$", text, re.S | re.M) if text.startswith("---") else None
    if not m or yaml is None:
        return None
    try:
        d = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return None
    return d if isinstance(d, dict) else None


class HttpError(Exception):
    def __init__(self, status, error, code=None, headers=None, body=None):
        super().__init__(error)
        self.status, self.error, self.code = status, error, code
        self.headers = headers or {}
        self.body = body  # bytes to send instead of {"error": error}


class Fault:
    """Fail (or drop) the next `times` requests that match; `attempts` counts every matching request, `hits`
    the ones this fault answered."""

    def __init__(self, pattern, method, server, times, status=None, body=None, headers=None, drop_after=None):
        self.pattern, self.method, self.server, self.times = pattern, method, server, times
        self.status, self.body, self.headers, self.drop_after = status, body, headers or {}, drop_after
        self.attempts = 0
        self.hits = 0

    def matches(self, server, method, route, path):
        if self.server and server != self.server:
            return False
        if self.method and method != self.method:
            return False
        return self.pattern == route or re.search(self.pattern, path) is not None


class Blob:
    def __init__(self, data=None, lfs_oid=None, size=None):
        if lfs_oid is None:
            self.lfs = False
            self.data = data
            self.size = len(data)
            self.git_oid = git_blob_sha1(data)
            self.sha256 = hashlib.sha256(data).hexdigest()
        else:
            self.lfs = True
            self.data = None
            self.sha256 = lfs_oid
            self.size = size
            self.pointer = lfs_pointer(lfs_oid, size)
            self.git_oid = git_blob_sha1(self.pointer)

    def entry(self, path):
        e = {"type": "file", "oid": self.git_oid, "size": self.size, "path": path}
        if self.lfs:
            e["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        return e


class Commit:
    def __init__(self, oid, parent, title, description, author, tree, changed, ops):
        self.oid, self.parent, self.title, self.description = oid, parent, title, description
        self.author, self.tree, self.changed, self.ops = author, tree, changed, ops
        self.date = now_iso()

    @property
    def paths(self):
        """Paths added or changed by this commit (deleted ones excluded)."""
        return sorted(p for p, kind in self.changed if kind != "delete")


class Repo:
    def __init__(self, repo_id, private, creator):
        self.id = repo_id
        self.owner, self.name = repo_id.split("/", 1)
        self.private = private
        self.creator = creator
        self.mongo_id = hashlib.md5(repo_id.encode()).hexdigest()[:24]
        self.created = now_iso()
        self.branches = {}     # name -> commit oid
        self.commits = {}      # oid -> Commit
        self.lfs = {}          # sha256 -> bytes (this repo's LFS storage)
        self.verified = set()  # oids confirmed by the verify action
        self.multipart = {}    # upload id -> {"oid", "size", "chunk", "parts": {n: (bytes, etag)}}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HubFake:
    def __init__(self, anonymous_reads=False, multipart_chunk_size=None, url_ttl_s=900):
        self.lock = threading.RLock()
        self.users = {}    # name -> {"orgs": {org: role}}
        self.tokens = {}   # token -> (user, role)
        self.repos = {}    # repo_id -> Repo
        self.requests = []
        self.faults = []
        self.corrupted = set()  # (repo_id, oid)
        self.anonymous_reads = anonymous_reads
        self.multipart_chunk_size = multipart_chunk_size
        self.url_ttl_s = url_ttl_s
        self.key = os.urandom(32)
        self._counter = itertools.count(1)
        self.hub = _Server(("127.0.0.1", 0), self._handler("hub"))
        self.storage = _Server(("127.0.0.1", 0), self._handler("storage"))
        self.url = f"http://127.0.0.1:{self.hub.server_address[1]}"
        self.storage_url = f"http://127.0.0.1:{self.storage.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                         for s in (self.hub, self.storage)]
        for t in self._threads:
            t.start()

    # ----- set-up and inspection ---------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        for s in (self.hub, self.storage):
            s.shutdown()
            s.server_close()

    def add_user(self, name, token=None, role="write", orgs=None):
        with self.lock:
            self.users[name] = {"orgs": dict(orgs or {})}
            if token:
                self.tokens[token] = (name, role)

    def add_token(self, token, user, role="write"):
        with self.lock:
            self.tokens[token] = (user, role)

    def seed_repo(self, repo_id, private=False, files=None, creator=None):
        with self.lock:
            repo = self._new_repo(repo_id, private, creator or repo_id.split("/")[0])
            if files:
                tree = dict(repo.commits[repo.branches["main"]].tree)
                changed = []
                for path, data in files.items():
                    if any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS) or is_binary(data):
                        oid = hashlib.sha256(data).hexdigest()
                        repo.lfs[oid] = data
                        tree[path] = Blob(lfs_oid=oid, size=len(data))
                    else:
                        tree[path] = Blob(data)
                    changed.append((path, "add"))
                self._add_commit(repo, "main", "Seed files", "", repo.creator, tree, changed, [])
            return repo

    def fail(self, pattern, status=500, times=1, method=None, server=None, body=None, headers=None):
        """The next `times` requests whose route name equals `pattern` (or whose path matches it as a regex)
        get `status` (default body: {"error": "Internal Error - We're working hard to fix this as soon as
        possible!"})."""
        f = Fault(pattern, method, server, times, status=status, body=body, headers=headers)
        with self.lock:
            self.faults.append(f)
        return f

    def drop(self, pattern="lfs_put", times=1, after=0.5, method=None, server=None):
        """Close the connection without answering after reading `after` of the request body (a fraction when
        < 1, else a byte count) for the next `times` matching requests: an interrupted upload."""
        f = Fault(pattern, method, server, times, drop_after=after)
        with self.lock:
            self.faults.append(f)
        return f

    def corrupt_object(self, repo_id, oid):
        with self.lock:
            self.corrupted.add((repo_id, oid))

    def clear_log(self):
        with self.lock:
            self.requests.clear()

    def routes(self, server=None):
        with self.lock:
            return [r["route"] for r in self.requests if server is None or r["server"] == server]

    def count(self, route):
        return self.routes().count(route)

    def repo(self, repo_id):
        with self.lock:
            return self.repos.get(repo_id)

    def head(self, repo_id, rev="main"):
        with self.lock:
            return self.repos[repo_id].branches.get(rev)

    def commit(self, repo_id, oid):
        with self.lock:
            return self.repos[repo_id].commits[oid]

    def commits(self, repo_id, rev="main"):
        """Commits of a branch, newest first."""
        with self.lock:
            repo = self.repos[repo_id]
            out, oid = [], repo.branches.get(rev)
            while oid:
                c = repo.commits[oid]
                out.append(c)
                oid = c.parent
            return out

    def files(self, repo_id, rev="main"):
        with self.lock:
            repo = self.repos[repo_id]
            tree = repo.commits[self._resolve_rev(repo, rev)].tree
            return {p: (repo.lfs[b.sha256] if b.lfs else b.data) for p, b in tree.items()}

    def lfs_objects(self, repo_id):
        with self.lock:
            return dict(self.repos[repo_id].lfs)

    # ----- model -------------------------------------------------------------------------------------------
    def _new_repo(self, repo_id, private, creator):
        repo = Repo(repo_id, private, creator)
        self.repos[repo_id] = repo
        self._add_commit(repo, "main", "initial commit", "", creator,
                         {".gitattributes": Blob(DEFAULT_GITATTRIBUTES)}, [(".gitattributes", "add")], [])
        return repo

    def _add_commit(self, repo, branch, title, description, author, tree, changed, ops):
        parent = repo.branches.get(branch)
        oid = hashlib.sha1(f"{repo.id}\0{parent}\0{title}\0{next(self._counter)}\0{time.time()}".encode()).hexdigest()
        repo.commits[oid] = Commit(oid, parent, title, description, author, tree, changed, ops)
        repo.branches[branch] = oid
        return oid

    def _resolve_rev(self, repo, rev):
        if rev in repo.branches:
            return repo.branches[rev]
        if re.fullmatch(r"[0-9a-f]{7,40}", rev or ""):
            found = [oid for oid in repo.commits if oid.startswith(rev)]
            if len(found) == 1:
                return found[0]
        raise HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _can_write_ns(self, user, role, ns):
        if user is None or role != "write":
            return False
        return ns == user or self.users.get(user, {}).get("orgs", {}).get(ns) in ("write", "admin", "contributor")

    def _can_read_ns(self, user, ns):
        return user is not None and (ns == user or ns in self.users.get(user, {}).get("orgs", {}))

    def _get_repo(self, repo_id, user, write=False, role=None):
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self._can_read_ns(user, repo.owner)):
            raise HttpError(404, "Repository not found", "RepoNotFound")
        if write and not self._can_write_ns(user, role, repo.owner):
            raise HttpError(403, "Forbidden: pass `create_pr=1` as a query parameter to create a Pull Request")
        return repo

    def _sign(self, method, path, expires):
        return hmac.new(self.key, f"{method}\n{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _presign(self, method, path):
        expires = int(time.time()) + self.url_ttl_s
        q = urllib.parse.urlencode({"X-Amz-Expires": self.url_ttl_s, "Expires": expires,
                                    "X-Amz-Signature": self._sign(method, path, expires)})
        return f"{self.storage_url}{path}?{q}"

    def _check_signature(self, method, path, query):
        try:
            expires = int(query.get("Expires", ["0"])[0])
            sig = query.get("X-Amz-Signature", [""])[0]
        except ValueError:
            expires, sig = 0, ""
        if not hmac.compare_digest(sig, self._sign(method, path, expires)):
            raise HttpError(403, "", headers={"Content-Type": "application/xml"}, body=s3_error(
                "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."))
        if expires < time.time():
            raise HttpError(403, "", headers={"Content-Type": "application/xml"},
                            body=s3_error("AccessDenied", "Request has expired"))

    # ----- the HTTP side -----------------------------------------------------------------------------------
    def _handler(self, server_name):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "hubfake"
            sys_version = ""

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._serve(self, server_name)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

        return Handler

    def _read_body(self, h, limit=None):
        """The request body (de-chunked); with `limit`, read at most that many bytes of it (for drops)."""
        te = h.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = h.rfile.readline(65537)
                if not line:
                    break
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += h.rfile.read(n)
                h.rfile.readline()
                if limit is not None and len(out) >= limit:
                    return out[:limit]
            return out
        n = int(h.headers.get("Content-Length") or 0)
        if limit is not None:
            n = min(n, limit)
        return h.rfile.read(n) if n > 0 else b""

    def _serve(self, h, server_name):
        split = urllib.parse.urlsplit(h.path)
        path, query = split.path, urllib.parse.parse_qs(split.query, keep_blank_values=True)
        route = self._route_name(server_name, h.command, path)
        hdrs = {k.lower(): v for k, v in h.headers.items()}
        rec = {"server": server_name, "method": h.command, "path": h.path, "route": route, "headers": hdrs,
               "body_size": 0, "status": None, "user": None, "authorized": False, "dropped": False,
               "time": time.time()}
        auth = hdrs.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        with self.lock:
            ident = self.tokens.get(token) if token else None
            rec["user"] = ident[0] if ident else None
            rec["authorized"] = ident is not None
            fault = None
            for f in self.faults:
                if f.matches(server_name, h.command, route, path):
                    f.attempts += 1
                    if fault is None and f.hits < f.times:
                        f.hits += 1
                        fault = f
        try:
            if fault is not None and fault.drop_after is not None:
                total = int(hdrs.get("content-length") or 0)
                after = fault.drop_after
                n = int(total * after) if isinstance(after, float) and after < 1 else int(after)
                got = self._read_body(h, limit=max(0, min(n, max(total - 1, 0))))
                rec["body_size"] = len(got)
                rec["dropped"] = True
                with self.lock:
                    self.requests.append(rec)
                h.close_connection = True
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            body = self._read_body(h)
            rec["body_size"] = len(body)
            if server_name == "hub" and len(body) <= 4 * 1024 * 1024:
                rec["body"] = body
            if fault is not None:
                raise HttpError(fault.status, "Internal Error - We're working hard to fix this as soon as possible!",
                                headers=fault.headers, body=fault.body)
            if server_name == "hub":
                status, headers, out = self._hub(h, path, query, hdrs, body, ident, route)
            else:
                status, headers, out = self._storage(h, path, query, hdrs, body, route)
        except HttpError as e:
            status = e.status
            headers = dict(e.headers)
            if e.body is not None:
                out = e.body if isinstance(e.body, bytes) else e.body.encode()
                headers.setdefault("Content-Type", "application/json; charset=utf-8")
            else:
                out = json.dumps({"error": e.error}).encode()
                headers.setdefault("Content-Type", "application/json; charset=utf-8")
                if e.error:
                    headers.setdefault("X-Error-Message", e.error)
            if e.code:
                headers["X-Error-Code"] = e.code
        except Exception as e:  # a bug in the fake: answer 500 and keep the message for the test's log
            status, headers, out = 500, {"Content-Type": "text/plain"}, f"hubfake bug: {e!r}".encode()
            rec["exception"] = repr(e)
        rec["status"] = status
        with self.lock:
            self.requests.append(rec)
        self._respond(h, status, headers, out)

    def _respond(self, h, status, headers, body):
        h.send_response(status)
        headers = dict(headers)
        headers.setdefault("X-Request-Id", f"Root=1-{next(self._counter):08x}")
        headers.setdefault("X-Powered-By", "huggingface-moon")
        for k, v in headers.items():
            if k.lower() != "content-length":
                h.send_header(k, str(v))
        h.send_header("Content-Length", str(headers.get("Content-Length", len(body))))
        h.end_headers()
        if h.command != "HEAD" and body:
            h.wfile.write(body)

    @staticmethod
    def _route_name(server_name, method, path):
        if server_name == "storage":
            if path.startswith("/upload/"):
                return "lfs_put"
            if path.startswith("/multipart/"):
                return "lfs_part_put"
            return "cdn"
        table = [
            (r"^/api/whoami-v2$", "whoami"),
            (r"^/api/repos/create$", "create"),
            (r"^/api/validate-yaml$", "validate_yaml"),
            (r"^/api/complete_multipart$", "lfs_complete"),
            (r"^/api/models/[^/]+/[^/]+/preupload/[^/]+$", "preupload"),
            (r"^/api/models/[^/]+/[^/]+/commit/[^/]+$", "commit"),
            (r"^/api/models/[^/]+/[^/]+/branch/[^/]+$", "branch"),
            (r"^/api/models/[^/]+/[^/]+/refs$", "refs"),
            (r"^/api/models/[^/]+/[^/]+/commits/[^/]+$", "commits"),
            (r"^/api/models/[^/]+/[^/]+/tree/[^/]+(/.*)?$", "tree"),
            (r"^/api/models/[^/]+/[^/]+(/revision/[^/]+)?$", "repo_info"),
            (r"^/[^/]+/[^/]+\.git/info/lfs/objects/batch$", "lfs_batch"),
            (r"^/[^/]+/[^/]+\.git/info/lfs/objects/verify$", "lfs_verify"),
            (r"^/[^/]+/[^/]+/resolve/[^/]+/.+$", "resolve"),
        ]
        for rx, name in table:
            if re.match(rx, path):
                return name
        return "unknown"

    # ----- hub endpoints -----------------------------------------------------------------------------------
    def _hub(self, h, path, query, hdrs, body, ident, route):
        method = h.command
        seg = [urllib.parse.unquote(s) for s in path.split("/")[1:]]
        user, role = ident if ident else (None, None)
        anonymous_ok = self.anonymous_reads and "authorization" not in hdrs and method in ("GET", "HEAD") \
            and route != "whoami"
        if ident is None and not (anonymous_ok or route == "lfs_complete"):
            if route in ("lfs_batch", "lfs_verify"):
                raise HttpError(401, "", headers={"Content-Type": LFS_MIME, "LFS-Authenticate": 'Basic realm="Git LFS"'},
                                body=json.dumps({"message": "Invalid credentials in Authorization header"}))
            raise HttpError(401, "Invalid credentials in Authorization header")
        with self.lock:
            if route == "whoami" and method == "GET":
                return self._whoami(token_user=user, role=role)
            if route == "create" and method == "POST":
                return self._create(body, user, role)
            if route == "validate_yaml" and method == "POST":
                doc = self._json(body)
                errs = validate_card(doc.get("content", "") if isinstance(doc, dict) else "")
                if errs:
                    raise HttpError(400, "", body=json.dumps({"errors": [{"message": m} for m in errs], "warnings": []}))
                return self._json_response({"errors": [], "warnings": []})
            if route == "lfs_complete" and method == "POST":
                return self._lfs_complete(query, body)
            if route in ("lfs_batch", "lfs_verify") and method == "POST":
                repo_id = f"{seg[0]}/{seg[1][:-4]}"
                if route == "lfs_batch":
                    return self._lfs_batch(repo_id, hdrs, body, user, role)
                return self._lfs_verify(repo_id, body, user)
            if route == "resolve" and method in ("GET", "HEAD"):
                return self._resolve(f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]), hdrs, user)
            if path.startswith("/api/models/"):
                repo_id = f"{seg[2]}/{seg[3]}"
                rest = seg[4:]
                if route == "repo_info" and method == "GET":
                    return self._repo_info(repo_id, rest[1] if rest else "main", query, user)
                if route == "branch" and method == "POST":
                    return self._branch(repo_id, rest[1], body, user, role)
                if route == "refs" and method == "GET":
                    repo = self._get_repo(repo_id, user)
                    return self._json_response({"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c}
                                                             for b, c in sorted(repo.branches.items())],
                                                "converts": [], "tags": []})
                if route == "commits" and method == "GET":
                    repo = self._get_repo(repo_id, user)
                    oid = self._resolve_rev(repo, rest[1])
                    out = []
                    while oid:
                        c = repo.commits[oid]
                        out.append({"id": c.oid, "title": c.title, "message": c.description,
                                    "authors": [{"user": c.author}], "date": c.date})
                        oid = c.parent
                    return self._json_response(out)
                if route == "tree" and method == "GET":
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]), query, user)
                if route == "preupload" and method == "POST":
                    return self._preupload(repo_id, rest[1], body, user, role)
                if route == "commit" and method == "POST":
                    return self._commit(repo_id, rest[1], hdrs, body, user, role)
        raise HttpError(404, "Sorry, we can't find the page you are looking for.")

    @staticmethod
    def _json(body):
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HttpError(400, f"Invalid JSON body: {e}")

    @staticmethod
    def _json_response(doc, status=200, headers=None, mime="application/json; charset=utf-8"):
        h = {"Content-Type": mime}
        h.update(headers or {})
        return status, h, json.dumps(doc).encode()

    def _whoami(self, token_user, role):
        orgs = self.users.get(token_user, {}).get("orgs", {})
        return self._json_response({
            "type": "user", "id": hashlib.md5(token_user.encode()).hexdigest()[:24], "name": token_user,
            "fullname": token_user.title(), "email": f"{token_user}@example.com", "emailVerified": True,
            "canPay": False, "isPro": False, "periodEnd": None, "avatarUrl": "/avatars/default.svg",
            "orgs": [{"type": "org", "id": hashlib.md5(o.encode()).hexdigest()[:24], "name": o, "fullname": o,
                      "roleInOrg": r, "isEnterprise": False} for o, r in sorted(orgs.items())],
            "auth": {"type": "access_token", "accessToken": {"displayName": f"{token_user}-token", "role": role,
                                                             "createdAt": "2025-01-01T00:00:00.000Z"}}})

    def _create(self, body, user, role):
        doc = self._json(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
            raise HttpError(400, '"name" is required')
        rtype = doc.get("type", "model")
        if rtype != "model":
            raise HttpError(400, "hubfake only hosts model repos")
        name, org = doc["name"], doc.get("organization")
        if org is not None and not isinstance(org, str):
            raise HttpError(400, '"organization" must be a string')
        if "/" in name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) or "--" in name or ".." in name:
            raise HttpError(400, "Repo name must use alphanumeric chars or '-', '_', '.', '--' and '..' are forbidden, "
                            "'-' and '.' cannot start or end the name, max length is 96.")
        if "private" in doc and not isinstance(doc["private"], bool):
            raise HttpError(400, '"private" must be a boolean')
        if "visibility" in doc and doc["visibility"] not in ("public", "private"):
            raise HttpError(400, '"visibility" must be one of [public, private]')
        private = bool(doc.get("private", False)) or doc.get("visibility") == "private"
        ns = org or user
        repo_id = f"{ns}/{name}"
        if not self._can_write_ns(user, role, ns):
            raise HttpError(403, f'You don\'t have the rights to create a model under the namespace "{ns}"')
        if repo_id in self.repos:
            raise HttpError(409, "You already created this model repo", body=json.dumps(
                {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}))
        repo = self._new_repo(repo_id, private, user)
        return self._json_response({"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo.mongo_id})

    def _repo_info(self, repo_id, rev, query, user):
        repo = self._get_repo(repo_id, user)
        oid = self._resolve_rev(repo, rev)
        c = repo.commits[oid]
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for p in sorted(c.tree):
            b = c.tree[p]
            s = {"rfilename": p}
            if blobs:
                s.update({"size": b.size, "blobId": b.git_oid})
                if b.lfs:
                    s["lfs"] = {"sha256": b.sha256, "size": b.size, "pointerSize": len(b.pointer)}
            siblings.append(s)
        card = card_data(c.tree["README.md"].data.decode("utf-8", "replace")) if "README.md" in c.tree and not c.tree["README.md"].lfs else None
        doc = {"_id": repo.mongo_id, "id": repo.id, "modelId": repo.id, "author": repo.owner, "sha": oid,
               "lastModified": c.date, "createdAt": repo.created, "private": repo.private, "gated": False,
               "disabled": False, "downloads": 0, "likes": 0, "tags": (card or {}).get("tags", []) or [],
               "siblings": siblings, "spaces": []}
        if card:
            doc["cardData"] = card
            if card.get("library_name"):
                doc["library_name"] = card["library_name"]
        return self._json_response(doc)

    def _branch(self, repo_id, branch, body, user, role):
        repo = self._get_repo(repo_id, user, write=True, role=role)
        doc = self._json(body) if body.strip() else {}
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or branch.startswith(("/", ".", "-")) or ".." in branch \
                or branch.endswith(("/", ".lock")) or "//" in branch or branch.startswith("refs/"):
            raise HttpError(400, f"Invalid reference for a branch: {branch}")
        if branch in repo.branches:
            raise HttpError(409, "Reference already exists")
        start = self._resolve_rev(repo, doc.get("startingPoint") or "main")
        repo.branches[branch] = start
        return self._json_response({})

    def _tree(self, repo_id, rev, sub, query, user):
        repo = self._get_repo(repo_id, user)
        tree = repo.commits[self._resolve_rev(repo, rev)].tree
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in tree):
            raise HttpError(404, f"Entry not found: {sub}", "EntryNotFound")
        out, dirs = [], set()
        for p in sorted(tree):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):]
            if "/" in rest and not recursive:
                d = prefix + rest.split("/")[0]
                if d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    d = prefix + "/".join(parts[:i + 1])
                    if d not in dirs:
                        dirs.add(d)
                        out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
            out.append(tree[p].entry(p))
        return self._json_response(out)

    def _preupload(self, repo_id, rev, body, user, role):
        repo = self._get_repo(repo_id, user, write=True, role=role)
        head = self._resolve_rev(repo, rev)
        doc = self._json(body)
        files = doc.get("files") if isinstance(doc, dict) else None
        if not isinstance(files, list) or not files:
            raise HttpError(400, '"files" must be a non-empty array')
        out = []
        tree = repo.commits[head].tree
        for i, f in enumerate(files):
            if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not isinstance(f.get("sample"), str) \
                    or not isinstance(f.get("size"), int) or isinstance(f.get("size"), bool) or f["size"] < 0:
                raise HttpError(400, f'"files[{i}]" must have "path" (string), "sample" (base64 string) and "size" (integer)')
            if bad_path(f["path"]):
                raise HttpError(422, f"Invalid path: {f['path']}")
            try:
                sample = base64.b64decode(f["sample"], validate=True)
            except (binascii.Error, ValueError):
                raise HttpError(400, f'"files[{i}].sample" must be base64')
            if len(sample) > 512 or len(sample) > f["size"]:
                raise HttpError(400, f'"files[{i}].sample" must be the first 512 bytes of the file at most')
            lfs = f["size"] >= TEN_MIB or is_binary(sample) or \
                any(fnmatch.fnmatch(f["path"].rsplit("/", 1)[-1], p) or fnmatch.fnmatch(f["path"], p) for p in LFS_PATTERNS)
            entry = {"path": f["path"], "uploadMode": "lfs" if lfs and f["size"] > 0 else "regular", "shouldIgnore": False}
            if f["path"] in tree:
                b = tree[f["path"]]
                entry["oid"] = b.sha256 if b.lfs else b.git_oid
            out.append(entry)
        return self._json_response({"files": out, "commitOid": head})

    def _lfs_batch(self, repo_id, hdrs, body, user, role):
        ctype = hdrs.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in (LFS_MIME, "application/json"):
            raise HttpError(415, "", headers={"Content-Type": LFS_MIME},
                            body=json.dumps({"message": f"Content-Type must be {LFS_MIME}"}))
        doc = self._json(body)
        op = doc.get("operation") if isinstance(doc, dict) else None
        try:
            repo = self._get_repo(repo_id, user, write=(op == "upload"), role=role)
        except HttpError as e:
            raise HttpError(e.status, "", e.code, headers={"Content-Type": LFS_MIME},
                            body=json.dumps({"message": e.error}))
        objects = doc.get("objects")
        if op not in ("upload", "download") or not isinstance(objects, list):
            raise HttpError(422, "", headers={"Content-Type": LFS_MIME},
                            body=json.dumps({"message": '"operation" must be upload or download, "objects" an array'}))
        transfers = doc.get("transfers") or ["basic"]
        if "basic" not in transfers and "multipart" not in transfers:
            raise HttpError(422, "", headers={"Content-Type": LFS_MIME},
                            body=json.dumps({"message": "No supported transfer adapter (basic, multipart)"}))
        if doc.get("hash_algo", "sha256") != "sha256":
            raise HttpError(409, "", headers={"Content-Type": LFS_MIME}, body=json.dumps({"message": "Unsupported hash algorithm"}))
        ref = doc.get("ref")
        if ref is not None:
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
                raise HttpError(422, "", headers={"Content-Type": LFS_MIME}, body=json.dumps({"message": '"ref.name" must be a string'}))
        out = []
        chosen = "basic"
        for o in objects:
            oid, size = (o.get("oid"), o.get("size")) if isinstance(o, dict) else (None, None)
            if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) \
                    or isinstance(size, bool) or size < 0:
                out.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "Invalid object: oid must be a sha256, size a non-negative integer"}})
                continue
            entry = {"oid": oid, "size": size, "authenticated": True}
            if op == "download":
                if oid not in repo.lfs:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    entry["actions"] = {"download": {"href": self._presign("GET", f"/repos/{repo.mongo_id}/{oid}"),
                                                     "expires_in": self.url_ttl_s}}
                out.append(entry)
                continue
            if oid in repo.lfs and len(repo.lfs[oid]) == size:
                out.append(entry)  # already stored: no actions, nothing to upload
                continue
            verify = {"href": f"{self.url}/{repo.id}.git/info/lfs/objects/verify"}
            if self.multipart_chunk_size and "multipart" in transfers and size > self.multipart_chunk_size:
                chosen = "multipart"
                upload_id = hashlib.sha1(f"{oid}{next(self._counter)}".encode()).hexdigest()
                chunk = self.multipart_chunk_size
                nparts = -(-size // chunk)
                repo.multipart[upload_id] = {"oid": oid, "size": size, "chunk": chunk, "parts": {}}
                header = {"chunk_size": str(chunk)}
                for n in range(1, nparts + 1):
                    header[f"{n:05d}"] = self._presign("PUT", f"/multipart/{repo.mongo_id}/{upload_id}/{n}")
                expires = int(time.time()) + self.url_ttl_s
                q = urllib.parse.urlencode({"uploadId": upload_id, "repo": repo.id, "expiration": expires,
                                            "signature": self._sign("COMPLETE", upload_id, expires)})
                entry["actions"] = {"upload": {"href": f"{self.url}/api/complete_multipart?{q}", "header": header},
                                    "verify": verify}
            else:
                entry["actions"] = {"upload": {"href": self._presign("PUT", f"/upload/{repo.mongo_id}/{oid}/{size}"),
                                               "expires_at": (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                                                   seconds=self.url_ttl_s)).strftime("%Y-%m-%dT%H:%M:%SZ")},
                                    "verify": verify}
            out.append(entry)
        return self._json_response({"transfer": chosen, "objects": out, "hash_algo": "sha256"}, mime=LFS_MIME)

    def _lfs_verify(self, repo_id, body, user):
        repo = self._get_repo(repo_id, user)
        doc = self._json(body)
        oid, size = (doc.get("oid"), doc.get("size")) if isinstance(doc, dict) else (None, None)
        if oid not in repo.lfs:
            raise HttpError(404, "", headers={"Content-Type": LFS_MIME}, body=json.dumps({"message": "Object not found"}))
        if size != len(repo.lfs[oid]):
            raise HttpError(422, "", headers={"Content-Type": LFS_MIME}, body=json.dumps({"message": "Object size mismatch"}))
        repo.verified.add(oid)
        return self._json_response({"message": "ok"}, mime=LFS_MIME)

    def _lfs_complete(self, query, body):
        upload_id = query.get("uploadId", [""])[0]
        try:
            expires = int(query.get("expiration", ["0"])[0])
        except ValueError:
            expires = 0
        if not hmac.compare_digest(query.get("signature", [""])[0], self._sign("COMPLETE", upload_id, expires)) \
                or expires < time.time():
            raise HttpError(403, "Invalid or expired completion signature")
        repo = self.repos.get(query.get("repo", [""])[0])
        mp = repo.multipart.get(upload_id) if repo else None
        if mp is None:
            raise HttpError(404, "Upload not found")
        doc = self._json(body)
        parts = doc.get("parts") if isinstance(doc, dict) else None
        if doc.get("oid") != mp["oid"] or not isinstance(parts, list):
            raise HttpError(400, '"oid" and "parts" are required')
        nparts = -(-mp["size"] // mp["chunk"])
        if [p.get("partNumber") for p in parts] != list(range(1, nparts + 1)):
            raise HttpError(400, "parts must list every part number in order")
        data = b""
        for p in parts:
            got = mp["parts"].get(p["partNumber"])
            if got is None or got[1].strip('"') != str(p.get("etag", "")).strip('"'):
                raise HttpError(400, f"part {p['partNumber']}: missing or ETag mismatch")
            data += got[0]
        if len(data) != mp["size"] or hashlib.sha256(data).hexdigest() != mp["oid"]:
            raise HttpError(400, "The assembled object does not match its oid and size")
        repo.lfs[mp["oid"]] = data
        del repo.multipart[upload_id]
        return self._json_response({"success": True})

    def _commit(self, repo_id, rev, hdrs, body, user, role):
        repo = self._get_repo(repo_id, user, write=True, role=role)
        head = self._resolve_rev(repo, rev)
        if rev not in repo.branches:
            raise HttpError(400, f"Cannot commit to {rev}: not a branch")
        ctype = hdrs.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-ndjson":
            raise HttpError(400, f"Content-Type must be application/x-ndjson (got {ctype or 'none'})")
        try:
            lines = [json.loads(l) for l in body.decode("utf-8").split("\n") if l.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HttpError(400, f"Invalid NDJSON body: {e}")
        if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
            raise HttpError(400, 'The first line must be {"key": "header", "value": {"summary": ...}}')
        hv = lines[0].get("value")
        if not isinstance(hv, dict) or not isinstance(hv.get("summary"), str) or not hv["summary"].strip():
            raise HttpError(400, '"header.summary" is required')
        if "description" in hv and not isinstance(hv["description"], str):
            raise HttpError(400, '"header.description" must be a string')
        parent = hv.get("parentCommit")
        if parent is not None and not (isinstance(parent, str) and len(parent) >= 7 and head.startswith(parent)):
            raise HttpError(412, "The branch was updated since you opened this page. Please refresh and try again.")
        tree = dict(repo.commits[head].tree)
        changed, ops, seen = [], [], set()
        for i, line in enumerate(lines[1:], start=2):
            if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
                raise HttpError(400, f"line {i}: each line must be {{\"key\": ..., \"value\": {{...}}}}")
            key, v = line.get("key"), line["value"]
            p = v.get("path")
            if key == "header":
                raise HttpError(400, f"line {i}: only one header line is allowed, first")
            if key not in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                raise HttpError(400, f"line {i}: unknown key {key!r}")
            if bad_path(p):
                raise HttpError(422, f"line {i}: invalid path {p!r}")
            if p in seen:
                raise HttpError(400, f"line {i}: {p} appears twice in the commit")
            seen.add(p)
            if key == "file":
                if v.get("encoding") != "base64" or not isinstance(v.get("content"), str):
                    raise HttpError(400, f"line {i}: a file needs \"content\" (string) and \"encoding\": \"base64\"")
                try:
                    data = base64.b64decode(v["content"], validate=True)
                except (binascii.Error, ValueError):
                    raise HttpError(400, f"line {i}: the content of {p} is not valid base64")
                if len(data) >= TEN_MIB:
                    raise HttpError(400, "Your push was rejected because it contains files larger than 10 MiB. "
                                    "Please use https://git-lfs.github.com/ to store large files.")
                if b"\0" in data[:8000]:  # git's (and the Hub's) test for a binary file
                    raise HttpError(400, "Your push was rejected because it contains binary files. "
                                    "Please use https://huggingface.co/docs/hub/xet to store binary files.")
                if p == "README.md":
                    errs = validate_card(data.decode("utf-8", "replace"))
                    if errs:
                        raise HttpError(400, "Invalid metadata in README.md.\n" + "\n".join(f"- {m}" for m in errs))
                tree[p] = Blob(data)
                changed.append((p, "add"))
                ops.append({"key": key, "path": p, "size": len(data)})
            elif key == "lfsFile":
                oid = v.get("oid")
                if v.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid):
                    raise HttpError(400, f"line {i}: an lfsFile needs \"algo\": \"sha256\" and a sha256 \"oid\"")
                if "size" in v and (not isinstance(v["size"], int) or isinstance(v["size"], bool)):
                    raise HttpError(400, f"line {i}: \"size\" must be an integer")
                if oid not in repo.lfs:
                    raise HttpError(422, f"Your push was rejected because an LFS pointer pointed to a file that does "
                                    f"not exist: {p} (oid {oid})")
                if "size" in v and v["size"] != len(repo.lfs[oid]):
                    raise HttpError(422, f"line {i}: size {v['size']} of {p} does not match the stored object "
                                    f"({len(repo.lfs[oid])} bytes)")
                if p == "README.md":
                    raise HttpError(400, "README.md cannot be stored with LFS")
                tree[p] = Blob(lfs_oid=oid, size=len(repo.lfs[oid]))
                changed.append((p, "add"))
                ops.append({"key": key, "path": p, "oid": oid, "size": len(repo.lfs[oid])})
            elif key == "deletedFile":
                if p not in tree:
                    raise HttpError(404, f"Entry not found: {p}", "EntryNotFound")
                del tree[p]
                changed.append((p, "delete"))
                ops.append({"key": key, "path": p})
            else:
                gone = [q for q in tree if q.startswith(p.rstrip("/") + "/")]
                for q in gone:
                    del tree[q]
                    changed.append((q, "delete"))
                ops.append({"key": key, "path": p})
        oid = self._add_commit(repo, rev, hv["summary"], hv.get("description", ""), user, tree, changed, ops)
        return self._json_response({"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{repo.id}/commit/{oid}",
                                    "hookOutput": ""})

    def _resolve(self, repo_id, rev, filename, hdrs, user):
        repo = self._get_repo(repo_id, user)
        oid = self._resolve_rev(repo, rev)
        tree = repo.commits[oid].tree
        if filename not in tree:
            raise HttpError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": oid})
        b = tree[filename]
        common = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes", "Vary": "Origin, Accept"}
        if b.lfs:
            url = self._presign("GET", f"/repos/{repo.mongo_id}/{b.sha256}")
            text = f"Found. Redirecting to {url}".encode()
            h = dict(common, **{"Location": url, "ETag": f'"{b.git_oid}"', "X-Linked-Etag": f'"{b.sha256}"',
                                "X-Linked-Size": str(b.size), "Content-Type": "text/plain; charset=utf-8",
                                "Content-Disposition": f"inline; filename*=UTF-8''{urllib.parse.quote(filename.rsplit('/', 1)[-1])}"})
            return 302, h, text
        h = dict(common, **{"ETag": f'"{b.git_oid}"', "Content-Type": "application/octet-stream"})
        return self._ranged(b.data, hdrs, h)

    @staticmethod
    def _ranged(data, hdrs, headers):
        rng = hdrs.get("range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if rng and not m:
            return 416, dict(headers, **{"Content-Range": f"bytes */{len(data)}"}), b""
        if m:
            a = int(m.group(1))
            z = int(m.group(2)) if m.group(2) else len(data) - 1
            if a >= len(data) or z < a:
                return 416, dict(headers, **{"Content-Range": f"bytes */{len(data)}"}), b""
            z = min(z, len(data) - 1)
            return 206, dict(headers, **{"Content-Range": f"bytes {a}-{z}/{len(data)}"}), data[a:z + 1]
        return 200, headers, data

    # ----- storage (S3 + CDN) ------------------------------------------------------------------------------
    def _storage(self, h, path, query, hdrs, body, route):
        method = h.command
        xml = {"Content-Type": "application/xml"}
        if route in ("lfs_put", "lfs_part_put"):
            if method != "PUT":
                raise HttpError(405, "", headers=xml, body=s3_error("MethodNotAllowed", "The specified method is not allowed"))
            if "chunked" in hdrs.get("transfer-encoding", "").lower():
                raise HttpError(501, "", headers=xml, body=s3_error(
                    "NotImplemented", "A header you provided implies functionality that is not implemented",
                    "<Header>Transfer-Encoding</Header>"))
            if "content-length" not in hdrs:
                raise HttpError(411, "", headers=xml, body=s3_error("MissingContentLength", "You must provide the Content-Length HTTP header."))
            if "authorization" in hdrs:
                raise HttpError(400, "", headers=xml, body=s3_error(
                    "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                    "Signature query string parameter or the Authorization header should be specified",
                    "<ArgumentName>Authorization</ArgumentName>"))
            self._check_signature("PUT", path, query)
            parts = path.split("/")
            with self.lock:
                repo = next((r for r in self.repos.values() if r.mongo_id == parts[2]), None)
                if repo is None:
                    raise HttpError(404, "", headers=xml, body=s3_error("NoSuchBucket", "The specified bucket does not exist"))
                etag = f'"{hashlib.md5(body).hexdigest()}"'
                if route == "lfs_part_put":
                    mp = repo.multipart.get(parts[3])
                    n = int(parts[4])
                    if mp is None:
                        raise HttpError(404, "", headers=xml, body=s3_error("NoSuchUpload", "The specified upload does not exist."))
                    expect = min(mp["chunk"], mp["size"] - (n - 1) * mp["chunk"])
                    if len(body) != expect:
                        raise HttpError(400, "", headers=xml, body=s3_error("IncompleteBody", f"part {n} must be {expect} bytes"))
                    mp["parts"][n] = (body, etag)
                    return 200, {"ETag": etag}, b""
                oid, size = parts[3], int(parts[4])
                if len(body) != size:
                    raise HttpError(400, "", headers=xml, body=s3_error(
                        "IncompleteBody", f"You did not provide the number of bytes specified ({len(body)} of {size})"))
                if hashlib.sha256(body).hexdigest() != oid:
                    raise HttpError(400, "", headers=xml, body=s3_error(
                        "BadDigest", "The sha256 of the uploaded body does not match the object id (oid)"))
                repo.lfs[oid] = body
            return 200, {"ETag": etag}, b""
        if method not in ("GET", "HEAD") or not path.startswith("/repos/"):
            raise HttpError(404, "", headers=xml, body=s3_error("NoSuchKey", "The specified key does not exist."))
        self._check_signature("GET", path, query)
        _, _, mongo_id, oid = path.split("/", 3)
        with self.lock:
            repo = next((r for r in self.repos.values() if r.mongo_id == mongo_id), None)
            data = repo.lfs.get(oid) if repo else None
            if data is not None and (repo.id, oid) in self.corrupted:
                data = bytes([data[0] ^ 0xFF]) + data[1:] if data else data
        if data is None:
            raise HttpError(404, "", headers=xml, body=s3_error("NoSuchKey", "The specified key does not exist."))
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{hashlib.md5(data).hexdigest()}"',
                   "Accept-Ranges": "bytes", "X-Cache": "Miss from cloudfront"}
        return self._ranged(data, hdrs, headers)


def s3_error(code, message, extra=""):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{extra}'
            f"<RequestId>{os.urandom(8).hex().upper()}</RequestId></Error>").encode()
