"""Local stand-ins for AWS in the S3 tests, all on loopback:
  - s3rver (npm) as the object store;
  - a verifying proxy in front of it that recomputes every request's SigV4 signature with botocore's signer
    (s3rver checks none), checks the payload hash, the credential scope and the session token's validity,
    and can inject failures (503 SlowDown, ExpiredToken) before forwarding;
  - a container-credentials endpoint and an IMDSv2 endpoint that hand out expiring temporary credentials.
"""
import datetime
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SOURCE = os.environ.get("SOURCE_DIR", ".")
S3RVER = os.path.join(SOURCE, "build", "npm", "node_modules", ".bin", "s3rver")
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class S3rver:
    """s3rver on a free loopback port with the given buckets."""

    def __init__(self, buckets):
        self.dir = tempfile.mkdtemp(prefix="s3rver-")
        self.port = free_port()
        args = [S3RVER, "-d", self.dir, "-a", "127.0.0.1", "-p", str(self.port), "--silent"]
        for b in buckets:
            args += ["--configure-bucket", b]
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Keys:
    """Access keys the proxy accepts: static ones, and temporary ones (with a token) until they expire."""

    def __init__(self):
        self.lock = threading.Lock()
        self.static = {}   # key id -> secret
        self.temporary = {}  # key id -> (secret, token, expires_at)
        self.revoked = set()  # tokens that the service treats as expired before their time
        self.counter = 0

    def add_static(self, key, secret):
        self.static[key] = secret

    def issue(self, lifetime_s):
        with self.lock:
            self.counter += 1
            n = self.counter
        key, secret, token = f"ASIATEMP{n:08d}", f"temp-secret-{n}", f"temp-token-{n}-" + "x" * 40
        expires = time.time() + lifetime_s
        with self.lock:
            self.temporary[key] = (secret, token, expires)
        stamp = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"AccessKeyId": key, "SecretAccessKey": secret, "Token": token, "Expiration": stamp}

    def lookup(self, key):
        with self.lock:
            if key in self.static:
                return self.static[key], None, None
            return self.temporary.get(key, (None, None, None))


def xml_error(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f'</Error>').encode()


class VerifyingProxy:
    """Checks each request's signature with botocore, then forwards it to s3rver."""

    def __init__(self, upstream_port, keys):
        self.upstream = upstream_port
        self.keys = keys
        self.faults = []    # [(predicate(method, path), status, code)], each used once
        self.log = []       # (method, path, status, token)
        self.rejected = []  # reasons for 403s
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status, headers, data = proxy.handle(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if not (self.command == "HEAD" and any(k.lower() == "content-length" for k, _ in headers)):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def inject(self, predicate, status, code, times=1):
        with self.lock:
            for _ in range(times):
                self.faults.append((predicate, status, code))

    def verify(self, method, path, headers, body):
        h = {k.lower(): v for k, v in headers.items()}
        auth = h.get("authorization", "")
        m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                     r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$", auth)
        if not m:
            return 403, "AccessDenied", "no SigV4 Authorization header"
        key, date, region, service, signed, signature = m.groups()
        secret, token, expires = self.keys.lookup(key)
        if secret is None:
            return 403, "InvalidAccessKeyId", f"unknown access key {key}"
        if token is not None:
            if h.get("x-amz-security-token") != token:
                return 403, "InvalidToken", "the session token does not belong to the access key"
            if token in self.keys.revoked or time.time() > expires:
                return 400, "ExpiredToken", "The provided token has expired."
        amz_date = h.get("x-amz-date", "")
        if (region, service) != (REGION, "s3") or not amz_date.startswith(date):
            return 403, "AuthorizationHeaderMalformed", "wrong credential scope"
        content_sha = h.get("x-amz-content-sha256")
        if content_sha is None:
            return 400, "InvalidRequest", "x-amz-content-sha256 is missing"
        if content_sha != "UNSIGNED-PAYLOAD" and content_sha != hashlib.sha256(body).hexdigest():
            return 400, "XAmzContentSHA256Mismatch", "the body does not match x-amz-content-sha256"
        names = signed.split(";")
        if "host" not in names or "x-amz-date" not in names or "x-amz-content-sha256" not in names:
            return 403, "AccessDenied", "host, x-amz-date and x-amz-content-sha256 must be signed"
        request = AWSRequest(method=method, url=f"http://{h['host']}{path}",
                             headers={n: h[n] for n in names if n in h}, data=body)
        request.context["timestamp"] = amz_date
        signer = S3SigV4Auth(Credentials(key, secret, token), "s3", REGION)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if expected != signature:
            return 403, "SignatureDoesNotMatch", "botocore computes another signature; canonical request:\n" + canonical
        return None

    def handle(self, method, path, headers, body):
        token = {k.lower(): v for k, v in headers.items()}.get("x-amz-security-token")
        problem = self.verify(method, path, headers, body)
        if problem:
            status, code, msg = problem
            with self.lock:
                self.log.append((method, path, status, token))
                if status == 403:
                    self.rejected.append(f"{method} {path}: {code}: {msg}")
            return status, [("Content-Type", "application/xml")], xml_error(code, msg.split("\n")[0])
        with self.lock:
            for i, (pred, status, code) in enumerate(self.faults):
                if pred(method, path):
                    del self.faults[i]
                    self.log.append((method, path, status, token))
                    return status, [("Content-Type", "application/xml")], xml_error(code, "injected by the test")
        # s3rver knows only its own key (S3RVER/S3RVER): the verified request is signed again for it.
        keep = {k: v for k, v in headers.items()
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "authorization", "host",
                                     "x-amz-security-token", "x-amz-date", "x-amz-content-sha256")}
        fwd = AWSRequest(method=method, url=f"http://127.0.0.1:{self.upstream}{path}", headers=keep, data=body)
        S3SigV4Auth(Credentials("S3RVER", "S3RVER"), "s3", REGION).add_auth(fwd)
        c = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=60)
        c.request(method, path, body=body, headers=dict(fwd.headers.items()))
        r = c.getresponse()
        data = r.read()
        drop = ("connection", "transfer-encoding", "keep-alive") + (() if method == "HEAD" else ("content-length",))
        out = [(k, v) for k, v in r.getheaders() if k.lower() not in drop]
        c.close()
        with self.lock:
            self.log.append((method, path, r.status, token))
        return r.status, out, data

    def stop(self):
        self.server.shutdown()


class CredentialServer:
    """The container-credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI with an authorization token) and
    IMDSv2 (PUT /latest/api/token, then the role list and the role's credentials), both on one loopback server."""

    def __init__(self, keys, lifetime_s=3600, auth_token="container-auth-token"):
        self.keys, self.lifetime_s, self.auth_token = keys, lifetime_s, auth_token
        self.fetches = []  # (kind, token issued)
        self.imds_tokens = set()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body, ctype="application/json"):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    t = f"imds-token-{len(srv.imds_tokens)}"
                    srv.imds_tokens.add(t)
                    return self.reply(200, t, "text/plain")
                self.reply(400, "bad token request", "text/plain")

            def do_GET(self):
                if self.path == "/container-credentials":
                    if self.headers.get("Authorization") != srv.auth_token:
                        return self.reply(403, '{"message": "bad authorization token"}')
                    c = srv.keys.issue(srv.lifetime_s)
                    srv.fetches.append(("container", c["Token"]))
                    return self.reply(200, json.dumps(c))
                if self.path.startswith("/latest/meta-data/iam/security-credentials/"):
                    if self.headers.get("X-aws-ec2-metadata-token") not in srv.imds_tokens:
                        return self.reply(401, "", "text/plain")  # IMDSv2 only
                    role = self.path.rsplit("/", 1)[1]
                    if not role:
                        return self.reply(200, "cifar100-test-role", "text/plain")
                    c = srv.keys.issue(srv.lifetime_s)
                    srv.fetches.append(("imds", c["Token"]))
                    return self.reply(200, json.dumps(dict(c, Code="Success", Type="AWS-HMAC")))
                self.reply(404, "{}")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def clean_aws_env(extra=None):
    """The test process's environment without any real AWS settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                "AWS_CONFIG_FILE": "/nonexistent", "AWS_REGION": REGION})
    env.update(extra or {})
    return env
