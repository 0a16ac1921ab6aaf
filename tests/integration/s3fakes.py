"""Local stand-ins for AWS in the S3 tests, all on loopback:
  - moto's S3 server (moto[server] from the project's venv, scripts/setup-python.sh) as the object store, in a
    process of its own, with path-style addressing;
  - a verifying proxy in front of it that recomputes every request's SigV4 signature with botocore's signer
    (moto checks none), checks the payload hash, the credential scope and the session token's validity,
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
import signal
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import moto.server  # the venv (scripts/setup-python.sh) is required: without moto this import fails
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

REGION = "us-east-1"
# moto accepts any key; the proxy signs what it forwards with this one, so moto sees a single account.
MOTO_KEY, MOTO_SECRET = "moto-upstream-key", "moto-upstream-secret"


# Runs moto's S3 server in a process of its own (moto.server.ThreadedMotoServer, what `moto_server` serves) on
# port 0, so the kernel picks a free port and no other process can take it between choosing and binding; the
# port is printed once the socket listens. The server lives until its stdin closes: when the test process ends
# in any way (killed by a ctest timeout included), so does moto.
MOTO_LAUNCHER = """
import os, sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.buffer.read()
os._exit(0)
"""


class MotoS3:
    """moto's S3 server on a loopback port of its own with the given buckets (path-style addressing);
    `client` is a boto3 client that talks to it directly, not through the proxy, to inspect its state."""

    def __init__(self, buckets, timeout=60):
        self.dir = tempfile.mkdtemp(prefix="moto-s3-")
        self.log_path = os.path.join(self.dir, "moto_server.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                    "AWS_CONFIG_FILE": "/nonexistent"})
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", MOTO_LAUNCHER], env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        got = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = got[0].strip() if got else b""
        if not line.isdigit():
            self.stop(keep_log=True)
            with open(self.log_path, errors="replace") as f:
                tail = f.read()[-3000:]
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"moto {moto.__version__}'s S3 server did not start within {timeout} s; "
                               f"its log ends:\n{tail}")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=MOTO_KEY,
                                   aws_secret_access_key=MOTO_SECRET,
                                   config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        try:
            for b in buckets:
                self.client.create_bucket(Bucket=b)  # us-east-1: no LocationConstraint
        except Exception:
            self.stop()
            raise

    def multipart_uploads(self, bucket, prefix=""):
        """The multipart uploads begun and neither completed nor aborted: [(key, upload id, part numbers)]."""
        out = []
        for u in self.client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []):
            parts = self.client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])
            out.append((u["Key"], u["UploadId"], [p["PartNumber"] for p in parts]))
        return out

    def keys(self, bucket, prefix=""):
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def stop(self, keep_log=False):
        self.proc.stdin.close()  # the launcher's signal to exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc.stdout.close()
        if hasattr(self, "client"):
            self.client.close()
        if not keep_log:
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
    """Checks each request's signature with botocore, then forwards it to moto's S3 server."""

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
        # The verified request is signed again with one fixed key and no session token, so moto (which takes
        # the account from the key it sees) keeps every bucket in one account whatever key the client used.
        # The body has been read in full: an Expect: 100-continue was answered here and is not forwarded.
        keep = {k: v for k, v in headers.items()
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "authorization", "host",
                                     "x-amz-security-token", "x-amz-date", "x-amz-content-sha256", "expect")}
        fwd = AWSRequest(method=method, url=f"http://127.0.0.1:{self.upstream}{path}", headers=keep, data=body)
        S3SigV4Auth(Credentials(MOTO_KEY, MOTO_SECRET), "s3", REGION).add_auth(fwd)
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
        self.server.server_close()


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
        self.server.server_close()


def clean_aws_env(extra=None):
    """The test process's environment without any real AWS settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                "AWS_CONFIG_FILE": "/nonexistent", "AWS_REGION": REGION})
    env.update(extra or {})
    return env
