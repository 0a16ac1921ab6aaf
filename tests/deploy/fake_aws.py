"""A fake of the AWS APIs that scripts/deploy.sh calls, on loopback, for tests/deploy/test_deploy.py.

One HTTP server answers several protocols, as the real endpoints would:
  - SageMaker (JSON 1.1, POST / with X-Amz-Target: SageMaker.<Operation>): training jobs, models, endpoint
    configs, endpoints;
  - CloudWatch Logs (JSON 1.1, Logs_20140328.*) and ECR (JSON 1.1, AmazonEC2ContainerRegistry_V20150921.*);
  - IAM and STS (query protocol: form-encoded POST, XML answers), told apart by the signature's scope;
  - SageMaker Runtime (REST: POST /endpoints/NAME/invocations), proxied to a real `cifar100 serve`.
Every request is checked against botocore's service model (required members, types, enums, lengths, ranges,
patterns, as the service does: a violation is a 400 ValidationException) and so is every answer of the fake
itself (a violation is recorded in State.errors, which the test requires to be empty).

A training job runs for real: the channel's objects are downloaded from the S3 fake (moto) into a fresh
/opt/ml ($SAGEMAKER_BASE_DIR) with hyperparameters.json, inputdataconfig.json and resourceconfig.json, and
`cifar100 train` runs there (or the image with podman). A managed spot job is interrupted once with SIGTERM in
the middle of training, as a spot reclaim would; its checkpoints are synced to CheckpointConfig.S3Uri and
back into a new, empty /opt/ml; the second run must resume. The status walks Starting -> Downloading ->
Training -> Interrupted -> Starting -> Downloading -> Training -> Uploading -> Completed. The container's
output goes to the log streams JOB/algo-1-<time>; metric values come from the job's MetricDefinitions.
"""
import base64
import http.client
import http.server
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
import traceback
import urllib.parse
import uuid
from xml.sax.saxutils import escape

import botocore.loaders
import botocore.session
from botocore.config import Config

ACCOUNT = "123456789012"
REGION = "us-east-1"
# The access key of the test's AWS CLI and of the S3 client here (moto's S3 server takes any key).
S3_KEY, S3_SECRET = "AKIADEPLOYTEST000001", "deploy-test-secret"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_PAGE = 40  # events per GetLogEvents answer at most: followers must page with the forward token


# ---- botocore's service models ------------------------------------------------------------------------------
_PROPERTY_CLASSES = {
    "L": r"a-zA-Z\u00aa-\uffff", "M": r"\u0300-\u036f", "N": r"0-9", "Z": r" \u00a0\u2000-\u200a\u2028\u2029\u3000",
    "S": r"$+<=>^`|~", "P": r"!-#%-*,-/:;?@\[-\]_{}", "ASCII": r"\x00-\x7f", "Print": r"\x20-\x7e",
}


def python_pattern(pattern):
    r"""The service models use Java regular expressions; translate the constructs they use (\p{..}, \z)."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and pattern.startswith("\\p{", i):
            end = pattern.index("}", i)
            cls = _PROPERTY_CLASSES[pattern[i + 3:end]]
            out.append(cls if depth else "[" + cls + "]")
            i = end + 1
            continue
        if c == "\\" and i + 1 < len(pattern):
            out.append("\\Z" if pattern[i + 1] == "z" else pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]" and depth:
            depth -= 1
        out.append(c)
        i += 1
    return re.compile("".join(out))


def lower_first(s):
    return s[:1].lower() + s[1:]


class Model:
    """One botocore service model and a validator that answers like the service (lowerCamelCase paths)."""

    def __init__(self, service):
        self.model = botocore.loaders.Loader().load_service_model(service, "service-2")
        self.shapes = self.model["shapes"]
        self.operations = self.model["operations"]
        self.unchecked_patterns = set()
        self._patterns = {}

    def pattern(self, shape_name, text):
        if shape_name not in self._patterns:
            try:
                self._patterns[shape_name] = python_pattern(text)
            except (re.error, KeyError, ValueError):
                self._patterns[shape_name] = None
                self.unchecked_patterns.add(shape_name)
        return self._patterns[shape_name]

    def input_shape(self, op):
        return self.operations[op]["input"]["shape"] if "input" in self.operations[op] else None

    def output_shape(self, op):
        return self.operations[op]["output"]["shape"] if "output" in self.operations[op] else None

    def validate(self, shape_name, value, path=""):
        errors = []
        self._check(shape_name, value, path, errors)
        return errors

    def _check(self, name, value, path, errors):
        s = self.shapes[name]
        t = s["type"]
        where = f"at '{path}'" if path else "at the top level"
        shown = repr(value) if not isinstance(value, (dict, list)) else "the value"
        if t == "structure":
            if not isinstance(value, dict):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a structure")
                return
            members = s.get("members", {})
            for r in s.get("required", []):
                if value.get(r) is None:
                    p = f"{path}.{lower_first(r)}" if path else lower_first(r)
                    errors.append(f"Value null at '{p}' failed to satisfy constraint: Member must not be null")
            for k, v in value.items():
                p = f"{path}.{lower_first(k)}" if path else lower_first(k)
                if k not in members:
                    errors.append(f"Unknown member '{p}'")
                elif v is not None:
                    self._check(members[k]["shape"], v, p, errors)
            return
        if t == "list":
            if not isinstance(value, list):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a list")
                return
            self._size(s, len(value), shown, where, errors, "have length")
            for i, v in enumerate(value):
                self._check(s["member"]["shape"], v, f"{path}.{i + 1}.member", errors)
            return
        if t == "map":
            if not isinstance(value, dict):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a map")
                return
            self._size(s, len(value), shown, where, errors, "have length")
            for k, v in value.items():
                self._check(s["key"]["shape"], k, f"{path}.{k}.key", errors)
                self._check(s["value"]["shape"], v, f"{path}.{k}.value", errors)
            return
        if t == "string":
            if not isinstance(value, str):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a string")
                return
            self._size(s, len(value), shown, where, errors, "have length")
            if "enum" in s and value not in s["enum"]:
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must satisfy enum value set: "
                              f"[{', '.join(s['enum'])}]")
            if "pattern" in s:
                rx = self.pattern(name, s["pattern"])
                if rx is not None and not rx.fullmatch(value):
                    errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must satisfy regular "
                                  f"expression pattern: {s['pattern']}")
            return
        if t in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be an integer")
                return
            self._size(s, value, shown, where, errors, "have value")
            return
        if t in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a number")
                return
            self._size(s, value, shown, where, errors, "have value")
            return
        if t == "boolean":
            if not isinstance(value, bool):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a boolean")
            return
        if t == "timestamp":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a timestamp")
            return
        if t == "blob":
            if not isinstance(value, (str, bytes)):
                errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must be a blob")
            else:
                self._size(s, len(value), "the value", where, errors, "have length")

    @staticmethod
    def _size(s, n, shown, where, errors, what):
        if "min" in s and n < s["min"]:
            errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must {what} greater than or equal "
                          f"to {s['min']}")
        if "max" in s and n > s["max"]:
            errors.append(f"Value {shown} {where} failed to satisfy constraint: Member must {what} less than or equal "
                          f"to {s['max']}")


class JobFailed(Exception):
    """Ends a training job as Failed with this FailureReason."""


class ApiError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def validation(errors):
    n = len(errors)
    return ApiError("ValidationException", f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors))


# ---- the S3 fake (moto's S3 server) through botocore ----------------------------------------------------------
def split_s3(uri):
    m = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not m:
        raise ValueError(f"not an s3:// URI: {uri}")
    return m.group(1), m.group(2)


class S3:
    def __init__(self, endpoint):
        self.client = botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET, config=Config(s3={"addressing_style": "path"},
                                                           retries={"max_attempts": 1}))

    def keys(self, bucket, prefix):
        out, token = [], None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = self.client.list_objects_v2(**kw)
            out += [o["Key"] for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def download_prefix(self, uri, dest):
        """Like a File-mode channel: each object under the prefix, relative to the prefix's 'directory'."""
        bucket, prefix = split_s3(uri)
        base = prefix if prefix.endswith("/") or not prefix else prefix[:prefix.rfind("/") + 1]
        keys = self.keys(bucket, prefix)
        for key in keys:
            rel = key[len(base):]
            if not rel or rel.endswith("/"):
                continue
            path = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            with open(path, "wb") as f:
                shutil.copyfileobj(body, f)
        return keys

    def upload_dir(self, src, uri):
        bucket, prefix = split_s3(uri)
        prefix = prefix.rstrip("/")
        done = []
        for root, _, files in os.walk(src):
            for name in files:
                path = os.path.join(root, name)
                key = f"{prefix}/{os.path.relpath(path, src)}" if prefix else os.path.relpath(path, src)
                with open(path, "rb") as f:
                    self.client.put_object(Bucket=bucket, Key=key, Body=f.read())
                done.append(key)
        return sorted(done)

    def put(self, uri, data):
        bucket, key = split_s3(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, uri):
        bucket, key = split_s3(uri)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tar_dir(src):
    """SageMaker's model.tar.gz: the directory's files at the top level."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(src)):
            tar.add(os.path.join(src, name), arcname=name)
    return buf.getvalue()


def safe_extract(data, dest):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                raise ValueError(f"unsafe member {m.name} in model.tar.gz")
        tar.extractall(dest)


# ---- the fake ---------------------------------------------------------------------------------------------------
class Fake:
    """State of every fake service, the job and endpoint runners, and the HTTP server."""

    def __init__(self, s3_endpoint, work, binary, image=None, podman_env=None, endpoint_env=None):
        self.models = {name: Model(name) for name in ("sagemaker", "logs", "ecr", "iam", "sts", "sagemaker-runtime")}
        self.s3 = S3(s3_endpoint)
        self.work = work
        self.binary = binary
        self.image = image  # a local podman image that replaces the job's TrainingImage, or None: the binary
        self.podman_env = podman_env or dict(os.environ)
        # Variables every endpoint's `serve` gets (as a model's PrimaryContainer.Environment would give them), e.g.
        # the precision a test pins to compare the endpoint's answers with another program's.
        self.endpoint_env = dict(endpoint_env or {})
        self.lock = threading.RLock()
        self.requests = []  # (service, operation) of every AWS request
        self.rejected = []  # (service, operation, code, message) of every request answered with an error
        self.errors = []  # problems of the fake itself or of a request's signature: must stay empty
        self.jobs, self.sm_models, self.configs, self.endpoints = {}, {}, {}, {}
        self.roles, self.role_policies, self.repos = {}, {}, {}
        self.streams = {}  # log stream name -> [events]
        self.threads = []
        self.httpd = None

    # -- server ----------------------------------------------------------------------------------------------
    def start(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"requests": len(fake.requests)}).encode()
                self.send_response(200 if self.path == "/_fake/state" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    status, headers, out = fake.dispatch(self.path, self.headers, body)
                except Exception:  # a bug of the fake: answer 500 and record it
                    fake.errors.append(traceback.format_exc())
                    status, headers, out = 500, {"Content-Type": "application/x-amz-json-1.1"}, \
                        json.dumps({"__type": "InternalFailure", "message": "fake failed"}).encode()
                self.send_response(status)
                headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        t.start()
        return self.httpd.server_address[1]

    def stop(self):
        for ep in list(self.endpoints.values()):
            self._stop_server(ep)
        for job in list(self.jobs.values()):
            job["_stop"] = True
            p = job.get("_proc")
            if p and p.poll() is None:
                self._signal(job, signal.SIGKILL)
        for t in self.threads:
            t.join(timeout=30)
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    # -- dispatch --------------------------------------------------------------------------------------------
    def dispatch(self, path, headers, body):
        auth = headers.get("Authorization", "")
        m = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", auth)
        scope_region, scope_service = (m.group(1), m.group(2)) if m else (None, None)
        target = headers.get("X-Amz-Target", "")
        rm = re.fullmatch(r"/endpoints/([^/]+)/invocations", urllib.parse.urlsplit(path).path)
        if rm:
            return self.runtime(urllib.parse.unquote(rm.group(1)), headers, body, scope_service)
        if target:
            prefix, _, op = target.partition(".")
            service = {"SageMaker": "sagemaker", "Logs_20140328": "logs",
                       "AmazonEC2ContainerRegistry_V20150921": "ecr"}.get(prefix)
            if service is None:
                return self.json_error("UnknownOperationException", f"unknown target {target}", 400)
            return self.json_api(service, op, body, scope_service, scope_region)
        if scope_service in ("iam", "sts"):
            return self.query_api(scope_service, body, scope_region)
        self.errors.append(f"unrecognised request: POST {path} target={target!r} scope={scope_service!r}")
        return self.json_error("UnknownOperationException", "unrecognised request", 400)

    def check_scope(self, service, expected_service, scope_service, scope_region):
        if scope_service != expected_service:
            self.errors.append(f"{service}: signed for service {scope_service!r}, expected {expected_service!r}")
        if scope_region != REGION:
            self.errors.append(f"{service}: signed for region {scope_region!r}, expected {REGION}")

    @staticmethod
    def json_error(code, message, status):
        return status, {"Content-Type": "application/x-amz-json-1.1"}, \
            json.dumps({"__type": code, "message": message}).encode()

    def json_api(self, service, op, body, scope_service, scope_region):
        self.check_scope(service, self.models[service].model["metadata"].get("signingName", service),
                         scope_service, scope_region)
        model = self.models[service]
        with self.lock:
            self.requests.append((service, op))
        try:
            if op not in model.operations:
                raise ApiError("UnknownOperationException", f"unknown operation {op}")
            params = json.loads(body or b"{}")
            shape = model.input_shape(op)
            errors = model.validate(shape, params) if shape else []
            if errors:
                raise validation(errors)
            handler = getattr(self, f"{service.replace('-', '_')}_{op}", None)
            if handler is None:
                self.errors.append(f"{service} {op}: not implemented by the fake")
                raise ApiError("UnknownOperationException", f"{op} is not implemented by the fake")
            with self.lock:
                result = handler(params)
            if result is None:
                result = {}
            out_shape = model.output_shape(op)
            if out_shape:
                problems = model.validate(out_shape, result)
                if problems:
                    self.errors.append(f"{service} {op}: the fake's answer breaks the model: {problems}")
            return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(result).encode()
        except ApiError as e:
            with self.lock:
                self.rejected.append((service, op, e.code, e.message))
            return self.json_error(e.code, e.message, e.status)

    # -- query protocol (IAM, STS) ---------------------------------------------------------------------------------
    def query_api(self, service, body, scope_region):
        self.check_scope(service, service, service, scope_region)
        params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        op = params.pop("Action", "")
        version = params.pop("Version", "")
        model = self.models[service]
        ns = f"https://{service}.amazonaws.com/doc/{model.model['metadata']['apiVersion']}/"
        with self.lock:
            self.requests.append((service, op))
        try:
            if op not in model.operations:
                raise ApiError("InvalidAction", f"Could not find operation {op} for version {version}")
            if version != model.model["metadata"]["apiVersion"]:
                raise ApiError("InvalidParameterValue", f"unsupported Version {version}")
            shape = model.shapes[model.input_shape(op)] if model.input_shape(op) else {"members": {}}
            errors = []
            for r in shape.get("required", []):
                if not any(k == r or k.startswith(r + ".") for k in params):
                    errors.append(f"Value null at '{lower_first(r)}' failed to satisfy constraint: Member must not be null")
            for k, v in params.items():
                top = k.split(".")[0]
                if top not in shape["members"]:
                    errors.append(f"Unknown parameter '{k}'")
                    continue
                sub = model.shapes[shape["members"][top]["shape"]]
                if "." not in k and sub["type"] in ("string", "integer", "long", "boolean"):
                    value = v
                    if sub["type"] in ("integer", "long"):
                        value = int(v) if re.fullmatch(r"-?\d+", v) else v
                    if sub["type"] == "boolean":
                        value = {"true": True, "false": False}.get(v, v)
                    errors += model.validate(shape["members"][top]["shape"], value, lower_first(top))
            if errors:
                raise validation(errors)
            handler = getattr(self, f"{service}_{op}", None)
            if handler is None:
                self.errors.append(f"{service} {op}: not implemented by the fake")
                raise ApiError("InvalidAction", f"{op} is not implemented by the fake")
            with self.lock:
                result_xml = handler(params)
            xml = (f'<{op}Response xmlns="{ns}">' + (f"<{op}Result>{result_xml}</{op}Result>" if result_xml is not None
                                                     else "")
                   + f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{op}Response>")
            return 200, {"Content-Type": "text/xml"}, xml.encode()
        except ApiError as e:
            with self.lock:
                self.rejected.append((service, op, e.code, e.message))
            xml = (f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{escape(e.code)}</Code>'
                   f"<Message>{escape(e.message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
            return (404 if e.code == "NoSuchEntity" else e.status), {"Content-Type": "text/xml"}, xml.encode()

    @staticmethod
    def xml(d):
        out = []
        for k, v in d.items():
            if isinstance(v, dict):
                out.append(f"<{k}>{Fake.xml(v)}</{k}>")
            else:
                out.append(f"<{k}>{escape(str(v))}</{k}>")
        return "".join(out)

    def sts_GetCallerIdentity(self, params):
        return self.xml({"UserId": "AIDAFAKEUSER0000000001", "Account": ACCOUNT,
                         "Arn": f"arn:aws:iam::{ACCOUNT}:user/deploy-test"})

    def role_xml(self, role):
        return self.xml({"Role": {
            "Path": "/", "RoleName": role["RoleName"], "RoleId": role["RoleId"], "Arn": role["Arn"],
            "CreateDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(role["CreateDate"])),
            # IAM returns policy documents URL-encoded; the CLI decodes them.
            "AssumeRolePolicyDocument": urllib.parse.quote(role["AssumeRolePolicyDocument"]),
            "Description": role.get("Description", ""), "MaxSessionDuration": 3600}})

    def iam_GetRole(self, params):
        role = self.roles.get(params["RoleName"])
        if role is None:
            raise ApiError("NoSuchEntity", f"The role with name {params['RoleName']} cannot be found.", 404)
        return self.role_xml(role)

    def iam_CreateRole(self, params):
        name = params["RoleName"]
        if name in self.roles:
            raise ApiError("EntityAlreadyExists", f"Role with name {name} already exists.", 409)
        doc = params["AssumeRolePolicyDocument"]
        try:
            json.loads(doc)
        except ValueError:
            raise ApiError("MalformedPolicyDocument", "This policy contains invalid Json")
        self.roles[name] = {"RoleName": name, "RoleId": "AROAFAKE" + uuid.uuid4().hex[:12].upper(),
                            "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "CreateDate": time.time(),
                            "AssumeRolePolicyDocument": doc, "Description": params.get("Description", "")}
        return self.role_xml(self.roles[name])

    def iam_PutRolePolicy(self, params):
        if params["RoleName"] not in self.roles:
            raise ApiError("NoSuchEntity", f"The role with name {params['RoleName']} cannot be found.", 404)
        try:
            json.loads(params["PolicyDocument"])
        except ValueError:
            raise ApiError("MalformedPolicyDocument", "This policy contains invalid Json")
        self.role_policies[(params["RoleName"], params["PolicyName"])] = params["PolicyDocument"]
        return None

    # -- ECR --------------------------------------------------------------------------------------------------------
    def repo(self, name):
        return {"repositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}", "registryId": ACCOUNT,
                "repositoryName": name, "repositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}",
                "createdAt": self.repos[name]}

    def ecr_DescribeRepositories(self, params):
        names = params.get("repositoryNames") or sorted(self.repos)
        for n in names:
            if n not in self.repos:
                raise ApiError("RepositoryNotFoundException",
                               f"The repository with name '{n}' does not exist in the registry with id '{ACCOUNT}'")
        return {"repositories": [self.repo(n) for n in names]}

    def ecr_CreateRepository(self, params):
        n = params["repositoryName"]
        if n in self.repos:
            raise ApiError("RepositoryAlreadyExistsException", f"The repository with name '{n}' already exists")
        self.repos[n] = time.time()
        return {"repository": self.repo(n)}

    def ecr_GetAuthorizationToken(self, params):
        return {"authorizationData": [{"authorizationToken": base64.b64encode(b"AWS:fake-password").decode(),
                                       "expiresAt": time.time() + 43200,
                                       "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"}]}

    # -- CloudWatch Logs ----------------------------------------------------------------------------------------------
    def add_log(self, stream, message):
        if not message:
            return  # CloudWatch Logs has no empty events (the log agent drops empty lines)
        with self.lock:
            now = int(time.time() * 1000)
            self.streams.setdefault(stream, []).append({"timestamp": now, "message": message, "ingestionTime": now})

    def logs_DescribeLogStreams(self, params):
        if params["logGroupName"] != LOG_GROUP or not self.streams:
            raise ApiError("ResourceNotFoundException", "The specified log group does not exist.")
        names = sorted(n for n in self.streams if n.startswith(params.get("logStreamNamePrefix", "")))
        start = int(params.get("nextToken") or 0)
        limit = params.get("limit", 50)
        page = names[start:start + limit]
        out = {"logStreams": [{"logStreamName": n, "creationTime": self.streams[n][0]["timestamp"],
                               "arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{LOG_GROUP}:log-stream:{n}",
                               "storedBytes": 0} for n in page]}
        if start + limit < len(names):
            out["nextToken"] = str(start + limit)
        return out

    def logs_GetLogEvents(self, params):
        if params["logGroupName"] != LOG_GROUP or params["logStreamName"] not in self.streams:
            raise ApiError("ResourceNotFoundException", "The specified log stream does not exist.")
        events = self.streams[params["logStreamName"]]
        token = params.get("nextToken")
        if token:
            m = re.fullmatch(r"[fb]/(\d+)", token)
            if not m:
                raise ApiError("InvalidParameterException", "The specified nextToken is invalid.")
            pos = int(m.group(1))
        elif params.get("startFromHead"):
            pos = 0
        else:
            pos = max(0, len(events) - LOG_PAGE)
        limit = min(params.get("limit", LOG_PAGE), LOG_PAGE)
        page = events[pos:pos + limit]
        return {"events": page, "nextForwardToken": f"f/{pos + len(page):012d}", "nextBackwardToken": f"b/{pos:012d}"}

    # -- SageMaker: training jobs ----------------------------------------------------------------------------------
    def arn(self, kind, name):
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"

    def check_role(self, arn):
        role = next((r for r in self.roles.values() if r["Arn"] == arn), None)
        if role is None or "sagemaker.amazonaws.com" not in role["AssumeRolePolicyDocument"]:
            raise ApiError("ValidationException", f"Could not assume role {arn}. Please ensure that the role exists and "
                                                  "allows principal 'sagemaker.amazonaws.com' to assume the role.")

    def sagemaker_CreateTrainingJob(self, p):
        name = p["TrainingJobName"]
        if name in self.jobs:
            raise ApiError("ResourceInUse", f"Training job names must be unique within an AWS account and region, and a "
                                            f"training job with this name already exists ({self.arn('training-job', name)})")
        sc = p["StoppingCondition"]
        if p.get("EnableManagedSpotTraining"):
            if sc.get("MaxWaitTimeInSeconds") is None or sc["MaxWaitTimeInSeconds"] < sc.get("MaxRuntimeInSeconds", 86400):
                raise ApiError("ValidationException", "Invalid MaxWaitTimeInSeconds. It must be present and be greater "
                                                      "than or equal to MaxRuntimeInSeconds")
            if not p.get("CheckpointConfig"):
                self.errors.append(f"{name}: a spot job without CheckpointConfig would restart from scratch")
        elif sc.get("MaxWaitTimeInSeconds") is not None:
            raise ApiError("ValidationException", "MaxWaitTimeInSeconds is only valid with managed spot training")
        self.check_role(p["RoleArn"])
        now = time.time()
        job = dict(p)
        job.update({"TrainingJobArn": self.arn("training-job", name), "TrainingJobStatus": "InProgress",
                    "SecondaryStatus": "Starting", "CreationTime": now, "LastModifiedTime": now,
                    "SecondaryStatusTransitions": [], "FinalMetricDataList": [],
                    "ModelArtifacts": {"S3ModelArtifacts": p["OutputDataConfig"]["S3OutputPath"].rstrip("/")
                                       + f"/{name}/output/model.tar.gz"}, "_metrics": {},
                    "_fake": {"attempts": []}, "_stop": False, "_proc": None})
        job.pop("Tags", None)
        self.jobs[name] = job
        self.transition(job, "Starting", "Launching requested ML instances")
        t = threading.Thread(target=self.run_job, args=(job,), daemon=True)
        self.threads.append(t)
        t.start()
        return {"TrainingJobArn": job["TrainingJobArn"]}

    def get_job(self, name):
        if name not in self.jobs:
            raise ApiError("ValidationException", "Requested resource not found.")
        return self.jobs[name]

    def sagemaker_DescribeTrainingJob(self, p):
        job = self.get_job(p["TrainingJobName"])
        out = {k: v for k, v in job.items() if not k.startswith("_")}
        out["FinalMetricDataList"] = list(job["_metrics"].values())
        out["SecondaryStatusTransitions"] = [dict(t) for t in job["SecondaryStatusTransitions"]]
        if not out["FinalMetricDataList"]:
            del out["FinalMetricDataList"]
        return json.loads(json.dumps(out))

    def sagemaker_StopTrainingJob(self, p):
        job = self.get_job(p["TrainingJobName"])
        if job["TrainingJobStatus"] != "InProgress":
            raise ApiError("ValidationException", f"The request was rejected because the training job is in status "
                                                  f"{job['TrainingJobStatus']}.")
        job["TrainingJobStatus"] = "Stopping"
        job["_stop"] = True
        self.transition(job, "Stopping", "Stopping the training job")
        proc = job.get("_proc")
        if proc is not None and proc.poll() is None:
            self._signal(job, signal.SIGTERM)
        return {}

    def transition(self, job, status, message):
        with self.lock:
            now = time.time()
            trs = job["SecondaryStatusTransitions"]
            if trs and "EndTime" not in trs[-1]:
                trs[-1]["EndTime"] = now
            trs.append({"Status": status, "StartTime": now, "StatusMessage": message})
            job["SecondaryStatus"] = status
            job["LastModifiedTime"] = now
            if status in ("Completed", "Failed", "Stopped"):
                trs[-1]["EndTime"] = now

    # -- the job runner -----------------------------------------------------------------------------------------------
    def run_job(self, job):
        name = job["TrainingJobName"]
        facts = job["_fake"]
        try:
            spot = bool(job.get("EnableManagedSpotTraining"))
            rc, base = self.attempt(job, 1, interrupt=spot)
            if spot and not job["_stop"]:
                a = facts["attempts"][-1]
                if not a.get("interrupted"):
                    self.errors.append(f"{name}: the job ended before the spot interruption could be sent")
                else:
                    self.transition(job, "Interrupted", "Training job interrupted: the spot instance was reclaimed")
                    ckpt = job["CheckpointConfig"]
                    local = self.local_checkpoints(base, job)
                    facts["checkpoints_synced"] = self.s3.upload_dir(local, ckpt["S3Uri"]) if os.path.isdir(local) else []
                    time.sleep(0.3)
                    self.transition(job, "Starting", "Launching requested ML instances after the spot interruption")
                    time.sleep(0.3)
                    rc, base = self.attempt(job, 2, interrupt=False)
            self.finish(job, rc, base)
        except JobFailed as e:
            with self.lock:
                job["TrainingJobStatus"], job["FailureReason"] = "Failed", str(e)[:1024]
                self.transition(job, "Failed", "Training job failed")
        except Exception as e:
            self.errors.append(f"{name}: runner failed: {traceback.format_exc()}")
            with self.lock:
                job["TrainingJobStatus"] = "Failed"
                job["FailureReason"] = f"InternalServerError: {e}"[:1024]
                self.transition(job, "Failed", "Training job failed")

    def local_checkpoints(self, base, job):
        local = (job.get("CheckpointConfig") or {}).get("LocalPath", "/opt/ml/checkpoints")
        return os.path.join(base, os.path.relpath(local, "/opt/ml"))

    def attempt(self, job, n, interrupt):
        """One container run on a fresh instance: a new /opt/ml from S3, then train; returns (exit code, base)."""
        name = job["TrainingJobName"]
        facts = {"attempt": n}
        job["_fake"]["attempts"].append(facts)
        inst = os.path.join(self.work, f"{name}-{n}")
        base = os.path.join(inst, "opt-ml")
        for d in ("input/config", "model", "output", "checkpoints"):
            os.makedirs(os.path.join(base, d))
        time.sleep(0.3)
        self.transition(job, "Downloading", "Downloading input data")
        idc = {}
        for ch in job.get("InputDataConfig", []):
            src = ch["DataSource"]["S3DataSource"]["S3Uri"]
            dest = os.path.join(base, "input", "data", ch["ChannelName"])
            os.makedirs(dest)
            if not self.s3.download_prefix(src, dest):
                raise JobFailed(f"ClientError: Data download failed: no objects found under {src}")
            idc[ch["ChannelName"]] = {"TrainingInputMode": ch.get("InputMode", job["AlgorithmSpecification"]
                                                                  ["TrainingInputMode"]),
                                      "S3DistributionType": ch["DataSource"]["S3DataSource"].get(
                                          "S3DataDistributionType", "FullyReplicated"),
                                      "RecordWrapperType": ch.get("RecordWrapperType", "None")}
        ckpt = job.get("CheckpointConfig")
        if ckpt:
            local = self.local_checkpoints(base, job)
            facts["checkpoints_restored"] = sorted(
                os.path.relpath(k, split_s3(ckpt["S3Uri"])[1].rstrip("/")) for k in
                self.s3.download_prefix(ckpt["S3Uri"].rstrip("/") + "/", local))
        cfg = os.path.join(base, "input", "config")
        with open(os.path.join(cfg, "hyperparameters.json"), "w") as f:
            json.dump(job.get("HyperParameters", {}), f)
        with open(os.path.join(cfg, "inputdataconfig.json"), "w") as f:
            json.dump(idc, f)
        with open(os.path.join(cfg, "resourceconfig.json"), "w") as f:
            json.dump({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}, f)
        if job["_stop"]:
            return 0, base
        self.transition(job, "Training", "Training image download completed. Training in progress.")
        stream = f"{name}/algo-1-{int(time.time())}"
        while stream in self.streams:  # one stream per instance start
            stream += "0"
        rc = self.run_container(job, base, inst, stream, facts, interrupt)
        facts["exit_code"] = rc
        facts["checkpoints_after"] = sorted(os.listdir(self.local_checkpoints(base, job))) if ckpt else []
        return rc, base

    def _signal(self, job, sig):
        proc = job["_proc"]
        if self.image:
            subprocess.run(["podman", "kill", "--signal", "KILL" if sig == signal.SIGKILL else "TERM",
                            job["_container"]], env=self.podman_env, capture_output=True, timeout=60)
        else:
            proc.send_signal(sig)

    def run_container(self, job, base, inst, stream, facts, interrupt):
        name = job["TrainingJobName"]
        env_vars = {"TRAINING_JOB_NAME": name, "TRAINING_JOB_ARN": job["TrainingJobArn"]}
        env_vars.update(job.get("Environment", {}))
        if self.image:
            job["_container"] = f"fake-sagemaker-{name}-{facts['attempt']}"
            cmd = ["podman", "run", "--rm", "--name", job["_container"], "--network", "none",
                   "-v", f"{base}:/opt/ml", "-v", f"{base}/model:/opt/ml/model"]
            for k, v in env_vars.items():
                cmd += ["-e", f"{k}={v}"]
            cmd += [self.image, "train"]
            env = self.podman_env
        else:
            cmd = [self.binary, "train"]
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CIFAR100_", "SM_", "SAGEMAKER_"))}
            env.update(env_vars, SAGEMAKER_BASE_DIR=base, XDG_CACHE_HOME=os.path.join(inst, "cache"))
        regexes = [(m["Name"], re.compile(m["Regex"])) for m in job["AlgorithmSpecification"].get("MetricDefinitions", [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                errors="replace")
        job["_proc"] = proc
        lines = []
        killer = None
        if job["_stop"]:
            self._signal(job, signal.SIGTERM)
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            self.add_log(stream, line)
            with self.lock:
                for metric, rx in regexes:
                    m = rx.search(line)
                    if m:
                        try:
                            value = float(m.group(1))
                        except (ValueError, IndexError):
                            continue
                        job["_metrics"][metric] = {"MetricName": metric, "Value": value, "Timestamp": time.time()}
            if interrupt and not facts.get("interrupted") and ("progress: epoch 1/" in line or "INFO  epoch=1;" in line):
                facts["interrupted"] = line
                self._signal(job, signal.SIGTERM)  # a spot reclaim: SIGTERM, SIGKILL 120 s later

                def kill_later():
                    if proc.poll() is None:
                        facts["sigkilled"] = True
                        self._signal(job, signal.SIGKILL)
                killer = threading.Timer(120, kill_later)
                killer.daemon = True
                killer.start()
        proc.stdout.close()
        rc = proc.wait()
        if killer:
            killer.cancel()
        job["_proc"] = None
        facts["stopped_by_sigterm"] = any("stopped by SIGTERM" in ln for ln in lines)
        facts["resumed"] = next((ln for ln in lines if "resuming at epoch" in ln), None)
        return rc

    def finish(self, job, rc, base):
        name = job["TrainingJobName"]
        out_uri = job["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{name}/output"
        stopped = job["_stop"]
        if rc != 0 and not stopped:
            reason = "AlgorithmError: "
            path = os.path.join(base, "output", "failure")
            reason += open(path).read()[:1000] if os.path.exists(path) else f"exit code {rc}"
            with self.lock:
                job["TrainingJobStatus"], job["FailureReason"] = "Failed", reason[:1024]
                self.transition(job, "Failed", "Training job failed")
            return
        self.transition(job, "Uploading", "Uploading generated training model")
        ckpt = job.get("CheckpointConfig")
        if ckpt and os.path.isdir(self.local_checkpoints(base, job)):
            self.s3.upload_dir(self.local_checkpoints(base, job), ckpt["S3Uri"])
        model_uri = f"{out_uri}/model.tar.gz"
        self.s3.put(model_uri, tar_dir(os.path.join(base, "model")))
        data = os.path.join(base, "output", "data")
        if os.path.isdir(data):
            self.s3.put(f"{out_uri}/output.tar.gz", tar_dir(data))
        now = time.time()
        with self.lock:
            job["ModelArtifacts"] = {"S3ModelArtifacts": model_uri}
            job["TrainingStartTime"] = job["CreationTime"]
            job["TrainingEndTime"] = now
            seconds = max(1, int(now - job["CreationTime"]))
            job["TrainingTimeInSeconds"] = seconds
            job["BillableTimeInSeconds"] = max(1, int(seconds * (0.3 if job.get("EnableManagedSpotTraining") else 1)))
            if stopped:
                job["TrainingJobStatus"] = "Stopped"
                self.transition(job, "Stopped", "Training job stopped")
            else:
                job["TrainingJobStatus"] = "Completed"
                self.transition(job, "Completed", "Training job completed")

    # -- SageMaker: hosting ------------------------------------------------------------------------------------------
    def sagemaker_CreateModel(self, p):
        name = p["ModelName"]
        if name in self.sm_models:
            raise ApiError("ValidationException", f'Cannot create already existing model "{self.arn("model", name)}".')
        self.check_role(p["ExecutionRoleArn"])
        c = p.get("PrimaryContainer") or {}
        if not c.get("Image") or not c.get("ModelDataUrl"):
            raise ApiError("ValidationException", "PrimaryContainer needs Image and ModelDataUrl for this model")
        self.sm_models[name] = dict(p, ModelArn=self.arn("model", name), CreationTime=time.time())
        return {"ModelArn": self.sm_models[name]["ModelArn"]}

    def sagemaker_DeleteModel(self, p):
        if p["ModelName"] not in self.sm_models:
            raise ApiError("ValidationException", f'Could not find model "{self.arn("model", p["ModelName"])}".')
        del self.sm_models[p["ModelName"]]
        return None

    def sagemaker_CreateEndpointConfig(self, p):
        name = p["EndpointConfigName"]
        if name in self.configs:
            raise ApiError("ValidationException", f'Cannot create already existing endpoint configuration '
                                                  f'"{self.arn("endpoint-config", name)}".')
        for v in p["ProductionVariants"]:
            if v["ModelName"] not in self.sm_models:
                raise ApiError("ValidationException", f'Could not find model "{self.arn("model", v["ModelName"])}".')
            if "InstanceType" not in v or "InitialInstanceCount" not in v:
                raise ApiError("ValidationException", "InstanceType and InitialInstanceCount are needed for a "
                                                      "real-time endpoint variant")
        self.configs[name] = dict(p, EndpointConfigArn=self.arn("endpoint-config", name), CreationTime=time.time())
        self.configs[name].pop("Tags", None)
        return {"EndpointConfigArn": self.configs[name]["EndpointConfigArn"]}

    def sagemaker_DescribeEndpointConfig(self, p):
        if p["EndpointConfigName"] not in self.configs:
            raise ApiError("ValidationException", f'Could not find endpoint configuration '
                                                  f'"{self.arn("endpoint-config", p["EndpointConfigName"])}".')
        return json.loads(json.dumps(self.configs[p["EndpointConfigName"]]))

    def sagemaker_DeleteEndpointConfig(self, p):
        if p["EndpointConfigName"] not in self.configs:
            raise ApiError("ValidationException", f'Could not find endpoint configuration '
                                                  f'"{self.arn("endpoint-config", p["EndpointConfigName"])}".')
        del self.configs[p["EndpointConfigName"]]
        return None

    def sagemaker_CreateEndpoint(self, p):
        name = p["EndpointName"]
        if name in self.endpoints:
            raise ApiError("ValidationException", f'Cannot create already existing endpoint "{self.arn("endpoint", name)}".')
        if p["EndpointConfigName"] not in self.configs:
            raise ApiError("ValidationException", f'Could not find endpoint configuration '
                                                  f'"{self.arn("endpoint-config", p["EndpointConfigName"])}".')
        now = time.time()
        ep = {"EndpointName": name, "EndpointArn": self.arn("endpoint", name),
              "EndpointConfigName": p["EndpointConfigName"], "EndpointStatus": "Creating", "CreationTime": now,
              "LastModifiedTime": now, "_proc": None, "_port": None, "_dir": None}
        self.endpoints[name] = ep
        t = threading.Thread(target=self.run_endpoint, args=(ep,), daemon=True)
        self.threads.append(t)
        t.start()
        return {"EndpointArn": ep["EndpointArn"]}

    def get_endpoint(self, name):
        if name not in self.endpoints:
            raise ApiError("ValidationException", f'Could not find endpoint "{self.arn("endpoint", name)}".')
        return self.endpoints[name]

    def sagemaker_DescribeEndpoint(self, p):
        ep = self.get_endpoint(p["EndpointName"])
        out = {k: v for k, v in ep.items() if not k.startswith("_")}
        if ep["EndpointStatus"] == "InService":
            variant = self.configs.get(ep["EndpointConfigName"], {}).get("ProductionVariants", [{}])[0]
            out["ProductionVariants"] = [{"VariantName": variant.get("VariantName", "AllTraffic"),
                                          "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                                          "CurrentInstanceCount": 1, "DesiredInstanceCount": 1}]
        return json.loads(json.dumps(out))

    def sagemaker_DeleteEndpoint(self, p):
        ep = self.get_endpoint(p["EndpointName"])
        self._stop_server(ep)
        del self.endpoints[p["EndpointName"]]
        return None

    def _stop_server(self, ep):
        proc = ep.get("_proc")
        if proc is None:
            return
        if self.image:
            subprocess.run(["podman", "stop", "-t", "30", ep["_container"]], env=self.podman_env, capture_output=True,
                           timeout=90)
            subprocess.run(["podman", "rm", "-f", ep["_container"]], env=self.podman_env, capture_output=True,
                           timeout=60)
        else:
            proc.terminate()
        try:
            ep["_exit_code"] = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            ep["_exit_code"] = proc.wait()
        ep["_proc"] = None

    def run_endpoint(self, ep):
        """Like SageMaker hosting: model.tar.gz extracted into /opt/ml/model, `serve`, healthy within 4 minutes."""
        name = ep["EndpointName"]
        try:
            config = self.configs[ep["EndpointConfigName"]]
            model = self.sm_models[config["ProductionVariants"][0]["ModelName"]]
            d = os.path.join(self.work, f"endpoint-{name}-{uuid.uuid4().hex[:6]}")
            model_dir = os.path.join(d, "model")
            os.makedirs(model_dir)
            safe_extract(self.s3.get(model["PrimaryContainer"]["ModelDataUrl"]), model_dir)
            port = free_port()
            if self.image:
                ep["_container"] = f"fake-endpoint-{name}"
                cmd = ["podman", "run", "--rm", "--name", ep["_container"], "--network", "host",
                       "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
                       *[a for k, v in self.endpoint_env.items() for a in ("-e", f"{k}={v}")],
                       "-v", f"{model_dir}:/opt/ml/model:ro", self.image, "serve"]
                env = self.podman_env
            else:
                cmd = [self.binary, "serve", "--model", model_dir, "--port", str(port), "--host", "127.0.0.1"]
                env = {k: v for k, v in os.environ.items() if not k.startswith(("CIFAR100_", "SM_", "SAGEMAKER_"))}
                env.update(self.endpoint_env)
            with open(os.path.join(d, "serve.log"), "w") as log:
                ep["_proc"] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            ep["_port"], ep["_dir"] = port, d
            deadline = time.time() + 240
            while time.time() < deadline:
                if ep["_proc"] is None or ep["_proc"].poll() is not None:
                    break
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    c.request("GET", "/ping")
                    healthy = c.getresponse().status == 200
                except OSError:
                    healthy = False
                finally:
                    c.close()
                if healthy:
                    time.sleep(max(0.0, ep["CreationTime"] + 2 - time.time()))  # real ones take minutes
                    with self.lock:
                        ep["EndpointStatus"], ep["LastModifiedTime"] = "InService", time.time()
                    return
                time.sleep(0.2)
            with self.lock:
                ep["EndpointStatus"] = "Failed"
                ep["FailureReason"] = ("The primary container for production variant AllTraffic did not pass the ping "
                                       "health check. Please check CloudWatch logs for this endpoint.")
        except Exception as e:
            self.errors.append(f"endpoint {name}: {traceback.format_exc()}")
            with self.lock:
                ep["EndpointStatus"], ep["FailureReason"] = "Failed", str(e)[:1024]

    # -- SageMaker Runtime (REST) ------------------------------------------------------------------------------------
    def runtime(self, name, headers, body, scope_service):
        model = self.models["sagemaker-runtime"]
        with self.lock:
            self.requests.append(("sagemaker-runtime", "InvokeEndpoint"))
        if scope_service != "sagemaker":
            self.errors.append(f"sagemaker-runtime: signed for service {scope_service!r}, expected 'sagemaker'")
        params = {"EndpointName": name, "Body": body.decode("latin-1")}
        for member, header in (("ContentType", "Content-Type"), ("Accept", "Accept")):
            if headers.get(header) is not None:
                params[member] = headers[header]

        def error(code, message, status, extra=None):
            with self.lock:
                self.rejected.append(("sagemaker-runtime", "InvokeEndpoint", code, message))
            payload = dict({"message": message}, **(extra or {}))
            return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, json.dumps(payload).encode()

        errors = model.validate(model.input_shape("InvokeEndpoint"), params)
        if len(body) > 6 * 1024 * 1024:
            errors.append("Value the body at 'body' failed to satisfy constraint: Member must have length less than or "
                          "equal to 6291456")
        if errors:
            e = validation(errors)
            return error(e.code, e.message, 400)
        ep = self.endpoints.get(name)
        if ep is None or ep["EndpointStatus"] != "InService":
            return error("ValidationException", f"Endpoint {name} of account {ACCOUNT} not found.", 400)
        c = http.client.HTTPConnection("127.0.0.1", ep["_port"], timeout=60)
        fwd = {"Content-Type": params.get("ContentType", "application/octet-stream")}
        if "Accept" in params:
            fwd["Accept"] = params["Accept"]
        c.request("POST", "/invocations", body=body, headers=fwd)
        r = c.getresponse()
        data = r.read()
        c.close()
        if not 200 <= r.status < 300:
            return error("ModelError", f"Received client error ({r.status}) from primary with message "
                                       f"\"{data.decode(errors='replace')[:500]}\".", 424,
                         {"OriginalStatusCode": r.status, "OriginalMessage": data.decode(errors="replace")})
        return 200, {"Content-Type": r.getheader("Content-Type", "application/json"),
                     "x-Amzn-Invoked-Production-Variant": "AllTraffic"}, data


def main():
    import argparse
    ap = argparse.ArgumentParser(description="fake AWS APIs for scripts/deploy.sh (prints its URL, runs until killed)")
    ap.add_argument("--s3", required=True, help="the S3 fake's URL, e.g. moto_server's http://127.0.0.1:5000")
    ap.add_argument("--bin", default="build/cifar100")
    ap.add_argument("--image", help="podman image that runs the jobs and endpoints instead of the binary")
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    fake = Fake(a.s3, a.work, os.path.abspath(a.bin), a.image)
    port = fake.start()
    print(f"http://127.0.0.1:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
