"""scripts/deploy.sh end to end against local fakes: moto's S3 server and tests/deploy/fake_aws.py for SageMaker,
SageMaker Runtime, CloudWatch Logs, IAM, STS and ECR (every request checked against botocore's service model),
with the real AWS CLI (/usr/bin/aws) and a real training job on a small subset of the real CIFAR-100:
  - shellcheck passes on scripts/*.sh; usage errors exit 2; a bucket without "sagemaker", an unknown instance
    type and an invalid job name are refused before any request;
  - --dry-run prints the CreateTrainingJob JSON (string hyperparameters, spot, metric definitions,
    checkpoints), which the model accepts, and sends nothing; so for setup;
  - setup creates the bucket, uploads the archive once (no multipart upload left unfinished), creates the role
    and repository, and a second run changes nothing;
  - train starts a managed spot job that the fake runs with `cifar100 train` (or the image with podman):
    SIGTERM mid-training (exit 0, checkpoint), checkpoints synced to S3 and into a fresh /opt/ml, a resumed
    run, model.tar.gz uploaded; follow shows every transition (Interrupted included), metrics and log lines
    and exits 0;
  - deploy creates the model, config and endpoint (a real `cifar100 serve` on model.tar.gz) and tests it;
    invoke gives the top 5 of a real test image (PNG and JPEG) as `cifar100 predict` does on the same model
    (both in float32);
  - errors from the service (ValidationException) are reported with operation and message; stop and Ctrl-C
    in follow; cleanup deletes the endpoint, config, model and bucket.
Runs with the project's venv (.venv/bin/python, scripts/setup-python.sh: moto, boto3) and fails without moto.
Needs the AWS CLI, jq and the real archive: exits 77 (skipped) without them unless CIFAR100_REQUIRE_REAL=1."""
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(HERE, "..", "integration"))
try:
    from s3fakes import MotoS3  # moto's S3 server, as tests/integration/test_s3.py runs it
except ImportError as e:
    sys.exit(f"deploy test: {e}: run it with the project's venv, .venv/bin/python (scripts/setup-python.sh makes it)")

SOURCE = os.path.abspath(os.environ.get("SOURCE_DIR") or os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("CIFAR100_BIN") or os.path.join(SOURCE, "build", "cifar100"))
DEPLOY = os.path.join(SOURCE, "scripts", "deploy.sh")
AWS = "/usr/bin/aws"
ARCHIVE = os.environ.get("CIFAR100_ARCHIVE") or os.path.join(SOURCE, "..", "shared", "data", "cifar-100-binary.tar.gz")
IMAGE = "localhost/cifar100:test-cpu"  # built by container.image (tests/container/test_image.py)
# The precision of the endpoints and of the `predict` their answers are compared with.
PREDICT_PRECISION = "fp32"
RECORD = 3074
BUCKET = "cifar100-sagemaker-e2e"
PREFIX = "cifar100"
JOB_SETS = ["depth=10", "width=1", "epochs=2", "val_size=500", "train_limit=3000", "log_interval=5"]
NAME_RX = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def missing_prerequisites():
    missing = []
    if not os.access(AWS, os.X_OK):
        missing.append(f"the AWS CLI ({AWS}; apt-get install awscli)")
    if not shutil.which("jq"):
        missing.append("jq (apt-get install jq)")
    if not os.path.isfile(ARCHIVE):
        missing.append(f"the real archive ({ARCHIVE}; set CIFAR100_ARCHIVE)")
    if not os.access(BIN, os.X_OK):
        missing.append(f"the cifar100 binary ({BIN})")
    try:
        import botocore.loaders
        botocore.loaders.Loader().load_service_model("sagemaker", "service-2")
    except ImportError:
        missing.append("python3-botocore")
    return missing


def small_archive(dest, n_train=4000, n_test=1000):
    """The official layout and label files with the first records of the real train.bin and test.bin."""
    with tarfile.open(ARCHIVE, "r:gz") as src, tarfile.open(dest, "w:gz", compresslevel=1) as out:
        for m in src.getmembers():
            if m.isdir():
                out.addfile(m)
                continue
            limit = {"train.bin": n_train, "test.bin": n_test}.get(os.path.basename(m.name))
            data = src.extractfile(m).read(limit * RECORD if limit else -1)
            ti = tarfile.TarInfo(m.name)
            ti.size, ti.mtime, ti.mode = len(data), m.mtime, m.mode
            out.addfile(ti, io.BytesIO(data))
            if os.path.basename(m.name) == "test.bin":
                test_bin = data
    return test_bin


HP_STUB = r'''
import json, os, sys
args, config, sets = sys.argv[1:], None, []
while args:
    a = args.pop(0)
    if a in ("-c", "--config"): config = args.pop(0)
    elif a in ("-s", "--set"): sets.append(args.pop(0))
    elif a.startswith("--config="): config = a.split("=", 1)[1]
    elif a.startswith("--set="): sets.append(a.split("=", 1)[1])
    else: sys.exit(f"stub: unknown argument {a}")
out = {}
if config and os.path.isfile(config):
    import yaml
    for k, v in (yaml.safe_load(open(config)) or {}).items():
        out[k] = str(v).lower() if isinstance(v, bool) else str(v)
elif config:
    out["config"] = config
for s in sets:
    k, v = s.split("=", 1)
    out[k] = v
print(json.dumps(out))
'''


class Deploy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from fake_aws import Fake, S3_KEY, S3_SECRET
        cls.t0 = time.time()
        cls.tmp = tempfile.mkdtemp(prefix="cifar100-deploy-")
        cls.archive = os.path.join(cls.tmp, "cifar-100-binary.tar.gz")
        test_bin = small_archive(cls.archive)
        cls.make_images(test_bin)

        # `cifar100 sagemaker hyperparameters` (string hyperparameters of a preset): stubbed until the binary has it.
        cls.deploy_bin = BIN
        r = subprocess.run([BIN, "sagemaker", "hyperparameters", "--config", "quick-cpu"], capture_output=True,
                           text=True, timeout=60)
        try:
            ok = r.returncode == 0 and isinstance(json.loads(r.stdout), dict)
        except ValueError:
            ok = False
        cls.hp_stubbed = not ok
        if cls.hp_stubbed:
            print("NOTE: `cifar100 sagemaker hyperparameters` is missing: using a stub", flush=True)
            stub_dir = os.path.join(cls.tmp, "stub")
            os.makedirs(stub_dir)
            with open(os.path.join(stub_dir, "hp.py"), "w") as f:
                f.write(HP_STUB)
            cls.deploy_bin = os.path.join(stub_dir, "cifar100")
            with open(cls.deploy_bin, "w") as f:
                f.write(f'#!/bin/sh\nif [ "$1" = sagemaker ] && [ "$2" = hyperparameters ]; then shift 2; '
                        f'exec /usr/bin/python3 {stub_dir}/hp.py "$@"; fi\nexec {BIN} "$@"\n')
            os.chmod(cls.deploy_bin, 0o755)

        # moto's S3 server on a loopback port of its own, with no bucket: `setup` creates it.
        cls.moto = MotoS3([])
        cls.addClassCleanup(cls.moto.stop)  # also when setUpClass fails later on
        cls.s3_url = cls.moto.url

        # The fake AWS APIs; the image with podman when it exists, else the binary.
        image = None
        podman_env = dict(os.environ)
        if shutil.which("podman"):
            conf = os.path.join(cls.tmp, "containers.conf")
            with open(conf, "w") as f:
                f.write('[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n')
            podman_env.setdefault("CONTAINERS_CONF", conf)
            if subprocess.run(["podman", "image", "exists", IMAGE], env=podman_env).returncode == 0:
                image = IMAGE
        print(f"jobs and endpoints run with {'podman ' + image if image else BIN}", flush=True)
        work = os.path.join(cls.tmp, "instances")
        os.makedirs(work)
        # The endpoints serve in float32, as the test's `predict` does (PREDICT_PRECISION): the image may hold
        # another LibTorch than the host binary, and precision=auto picks bf16 on CPUs with native bf16, whose
        # rounding differs between LibTorch versions.
        cls.fake = Fake(cls.s3_url, work, BIN, image=image, podman_env=podman_env,
                        endpoint_env={"CIFAR100_PRECISION": PREDICT_PRECISION})
        cls.fake_url = f"http://127.0.0.1:{cls.fake.start()}"
        cls.s3 = cls.fake.s3.client

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CIFAR100_", "SAGEMAKER_", "SM_"))}
        env.update({
            "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": cls.aws_config(),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(cls.tmp, "aws-credentials"),
            "AWS_ENDPOINT_URL_S3": cls.s3_url,
            "AWS_CLI": AWS, "CIFAR100_BIN": cls.deploy_bin, "CIFAR100_ARCHIVE": cls.archive,
            "XDG_CACHE_HOME": os.path.join(cls.tmp, "cache"), "HOME": os.path.join(cls.tmp, "home"),
        })
        for svc in ("SAGEMAKER", "SAGEMAKER_RUNTIME", "IAM", "STS", "ECR", "CLOUDWATCH_LOGS"):
            env[f"AWS_ENDPOINT_URL_{svc}"] = cls.fake_url
        os.makedirs(env["HOME"])
        cls.env = env
        cls.job = "cifar100-e2e-" + time.strftime("%H%M%S", time.gmtime())
        cls.endpoint = "cifar100-e2e"

    @classmethod
    def tearDownClass(cls):
        try:
            cls.fake.stop()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)
        print(f"deploy test: {time.time() - cls.t0:.0f} s", flush=True)

    @classmethod
    def aws_config(cls):
        """An empty profile, so that no configuration of this machine's reaches the CLI: `aws s3` uses its
        defaults (10 concurrent requests), as it would for a user."""
        path = os.path.join(cls.tmp, "aws-config")
        with open(path, "w") as f:
            f.write("[default]\n")
        return path

    def setUp(self):
        self.started = time.time()

    def tearDown(self):
        print(f"({time.time() - self.started:.0f} s)", end=" ", flush=True)

    @classmethod
    def make_images(cls, test_bin):
        from PIL import Image
        import numpy as np
        cls.images = []
        for i, ext in ((0, "png"), (1, "jpg")):
            rec = np.frombuffer(test_bin[i * RECORD + 2:(i + 1) * RECORD], dtype=np.uint8)
            img = Image.fromarray(rec.reshape(3, 32, 32).transpose(1, 2, 0))
            path = os.path.join(cls.tmp, f"test-{i}.{ext}")
            img.save(path, "PNG" if ext == "png" else "JPEG", quality=95)
            cls.images.append(path)

    # ---- helpers ----------------------------------------------------------------------------------------------
    def deploy(self, *args, timeout=300, env=None, stdin=subprocess.DEVNULL):
        e = dict(self.env, **(env or {}))
        return subprocess.run([DEPLOY, *args], capture_output=True, text=True, timeout=timeout, env=e, stdin=stdin)

    def ok(self, r):
        self.assertEqual(r.returncode, 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-6000:]}\nstderr:\n{r.stderr[-4000:]}")
        return r.stdout

    def requests(self):
        return len(self.fake.requests)

    def s3_keys(self, prefix=""):
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]

    def multipart_uploads(self):
        return [(u["Key"], u["Initiated"]) for u in self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]

    def assertNoRequests(self, before):
        self.assertEqual(self.requests(), before, f"requests reached the fake: {self.fake.requests[before:]}")

    # ---- tests, in order ----------------------------------------------------------------------------------------
    def test_0_shellcheck(self):
        if not shutil.which("shellcheck"):
            if os.environ.get("CIFAR100_REQUIRE_REAL") == "1":
                self.fail("shellcheck is not installed")
            self.skipTest("shellcheck is not installed")
        scripts = sorted(os.path.join(SOURCE, "scripts", f) for f in os.listdir(os.path.join(SOURCE, "scripts"))
                         if f.endswith(".sh"))
        r = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_1_usage_and_local_refusals(self):
        before = self.requests()
        r = self.deploy()
        self.assertEqual(r.returncode, 2)
        self.assertIn("Usage: deploy.sh", r.stderr)
        r = self.deploy("launch")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'launch'", r.stderr)
        self.assertIn("Usage:", r.stderr)
        for cmd in ("setup", "train", "follow", "deploy", "invoke", "stop", "cleanup"):
            r = self.deploy(cmd, "--help")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"Usage: deploy.sh {cmd}", r.stdout)
            r = self.deploy(cmd, "--bogus")
            self.assertEqual(r.returncode, 2, cmd)
            self.assertIn("unknown option '--bogus'", r.stderr)
            self.assertIn(f"Usage: deploy.sh {cmd}", r.stderr)
        self.assertIn("CIFAR100_BUCKET", self.deploy("--help").stdout)
        r = self.deploy("train", "--region")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--region needs a value", r.stderr)

        r = self.deploy("setup", "--bucket", "cifar100-data", "--no-push")
        self.assertEqual(r.returncode, 2)
        self.assertIn('must contain "sagemaker"', r.stderr)
        r = self.deploy("train", "--bucket", "my-models", "--yes")
        self.assertEqual(r.returncode, 2)
        self.assertIn('must contain "sagemaker"', r.stderr)
        r = self.deploy("train", "--instance-count", "0", "--yes")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--instance-count must be 1-100, not '0'", r.stderr)
        r = self.deploy("train", "--instance-type", "ml.trn1.2xlarge", "--yes")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown instance type 'ml.trn1.2xlarge'", r.stderr)
        for t in ("ml.p3.2xlarge", "ml.p3.8xlarge", "ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g6.xlarge", "ml.p4d.24xlarge",
                  "ml.p5.48xlarge", "ml.c5.xlarge", "ml.c5.2xlarge", "ml.c5.4xlarge", "ml.c5.9xlarge"):
            self.assertIn(t, r.stderr)
        # The table says which GPUs the CUDA image runs: CUDA 13 has nothing for Volta (compute capability 7.0).
        self.assertRegex(r.stderr, r"ml\.p3\.2xlarge .* no \(7\.0\)")
        self.assertRegex(r.stderr, r"ml\.g4dn\.xlarge .* yes \(7\.5\)")
        r = self.deploy("deploy", "some-job", "--instance-type", "ml.m5.large")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown instance type", r.stderr)
        # A V100 instance is refused before any request, with types that work instead.
        for cmd in (["train", "--yes"], ["deploy", "some-job"]):
            for t in ("ml.p3.2xlarge", "ml.p3.8xlarge"):
                r = self.deploy(*cmd, "--instance-type", t)
                self.assertEqual(r.returncode, 2, (cmd, t))
                self.assertIn(f"the GPUs of {t}", r.stderr)
                self.assertIn("compute capability 7.0", r.stderr)
                self.assertIn("cannot run the cifar100 CUDA image", r.stderr)
                self.assertIn("ml.g4dn.xlarge", r.stderr)
        for bad in ("bad_name", "-lead", "trail-", "x" * 64, "dots.in.name"):
            r = self.deploy("train", "--job-name", bad, "--yes", "--bucket", BUCKET)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("invalid job name", r.stderr)
        r = self.deploy("train", "--no-spot", "--max-runtime", "0", "--yes")
        self.assertEqual(r.returncode, 2)
        r = self.deploy("train", "--max-runtime", "3600", "--max-wait", "1800", "--yes")
        self.assertEqual(r.returncode, 2)
        self.assertIn(">= --max-runtime", r.stderr)
        self.assertNoRequests(before)

    def expected_hp(self, config, sets):
        args = [self.deploy_bin, "sagemaker", "hyperparameters", "--config", config]
        for s in sets:
            args += ["--set", s]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def metric_definitions(self):
        r = subprocess.run([BIN, "sagemaker", "metric-definitions"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    @staticmethod
    def request_json(out, operation):
        """The JSON printed after the dry run's `+ aws ... OPERATION ...` line."""
        m = re.search(rf"^\+ \S*aws \S+ {operation} .*$", out, re.M)
        assert m, f"no {operation} request in:\n{out}"
        return json.JSONDecoder().raw_decode(out[m.end():].lstrip())[0], m.group(0)

    def test_2_dry_run(self):
        before = self.requests()
        env = {"AWS_ENDPOINT_URL_S3": self.fake_url}  # an S3 request would reach the counting fake too
        role = "arn:aws:iam::123456789012:role/cifar100-sagemaker"
        image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cifar100:cuda"
        r = self.deploy("--dry-run", "train", "--bucket", BUCKET, "--role-arn", role, "--image", image,
                        "--job-name", "cifar100-dry-1", "--instance-type", "ml.g4dn.xlarge", "--max-runtime", "7200",
                        "--config", "quick-cpu", *sum([["--set", s] for s in JOB_SETS], []), env=env)
        out = self.ok(r)
        got, line = self.request_json(out, "create-training-job")
        self.assertIn("--cli-input-json file://", line)
        self.assertIn(f"--endpoint-url {self.fake_url}", line)
        self.assertIn("--region us-east-1", line)
        hp = self.expected_hp("quick-cpu", JOB_SETS)
        for s in JOB_SETS:
            k, v = s.split("=")
            self.assertEqual(hp.get(k), v)
        data = f"s3://{BUCKET}/{PREFIX}/data/cifar-100-binary.tar.gz"
        expected = {
            "TrainingJobName": "cifar100-dry-1",
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File",
                                       "MetricDefinitions": self.metric_definitions()},
            "RoleArn": role,
            "HyperParameters": hp,
            "InputDataConfig": [{"ChannelName": "training", "InputMode": "File", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": data, "S3DataDistributionType": "FullyReplicated"}}}],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{PREFIX}/output"},
            "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400},
            "EnableManagedSpotTraining": True,
            "CheckpointConfig": {"S3Uri": f"s3://{BUCKET}/{PREFIX}/checkpoints/cifar100-dry-1",
                                 "LocalPath": "/opt/ml/checkpoints"},
            "Tags": [{"Key": "project", "Value": "cifar100"}],
        }
        self.assertEqual(got, expected)
        self.assertTrue(all(isinstance(v, str) for v in got["HyperParameters"].values()))
        sm = self.fake.models["sagemaker"]
        self.assertEqual(sm.validate("CreateTrainingJobRequest", got), [])
        # The cost estimate: 2 h of ml.g4dn.xlarge at $0.736 on demand; spot at the assumed 70% discount.
        self.assertIn("on-demand:    $1.47", out)
        self.assertIn("managed spot: ~$0.44", out)
        self.assertIn("ASSUMING a 70% spot discount", out)
        self.assertIn(f"+ {AWS} s3api head-object --bucket {BUCKET}", out)

        # On demand, a generated name.
        r = self.deploy("--dry-run", "train", "--no-spot", "--bucket", BUCKET, "--role-arn", role, "--image", image,
                        "--config", os.path.join(SOURCE, "configs", "quick-cpu.yaml"), "--hours", "0.5", env=env)
        out = self.ok(r)
        got, _ = self.request_json(out, "create-training-job")
        self.assertEqual(got["StoppingCondition"], {"MaxRuntimeInSeconds": 86400})
        self.assertFalse(got["EnableManagedSpotTraining"])
        self.assertRegex(got["TrainingJobName"], r"^cifar100-quick-cpu-\d{8}-\d{6}$")
        self.assertTrue(NAME_RX.fullmatch(got["TrainingJobName"]))
        self.assertEqual(got["ResourceConfig"]["InstanceType"], "ml.c5.2xlarge")
        self.assertIn("on-demand:    $0.20", out)
        self.assertEqual(sm.validate("CreateTrainingJobRequest", got), [])

        # Without --image, a GPU instance gets the CUDA image and a CPU instance the CPU image (setup's ECR repository).
        for itype, tag in (("ml.g5.xlarge", "cuda"), ("ml.c5.xlarge", "cpu")):
            r = self.deploy("--dry-run", "train", "--bucket", BUCKET, "--role-arn", role, "--config", "quick-cpu",
                            "--instance-type", itype, "--hours", "0.5", env=env)
            got, _ = self.request_json(self.ok(r), "create-training-job")
            self.assertEqual(got["AlgorithmSpecification"]["TrainingImage"],
                             f"123456789012.dkr.ecr.us-east-1.amazonaws.com/cifar100:{tag}", itype)
        r = self.deploy("--dry-run", "deploy", "some-job", "--bucket", BUCKET, "--role-arn", role,
                        "--instance-type", "ml.g4dn.xlarge", env=env)
        model, _ = self.request_json(self.ok(r), "create-model")
        self.assertEqual(model["PrimaryContainer"]["Image"], "123456789012.dkr.ecr.us-east-1.amazonaws.com/cifar100:cuda")

        # Several instances: one data-parallel job; the estimate counts every instance.
        r = self.deploy("--dry-run", "train", "--no-spot", "--bucket", BUCKET, "--role-arn", role, "--image", image,
                        "--config", "quick-cpu", "--instance-count", "3", "--hours", "0.5", env=env)
        out = self.ok(r)
        got, _ = self.request_json(out, "create-training-job")
        self.assertEqual(got["ResourceConfig"]["InstanceCount"], 3)
        self.assertIn("cost estimate, 3 x ml.c5.2xlarge", out)
        self.assertIn("on-demand:    $0.61", out)
        self.assertEqual(sm.validate("CreateTrainingJobRequest", got), [])

        # setup, deploy and cleanup print what they would create, and send nothing either.
        r = self.deploy("--dry-run", "setup", "--bucket", BUCKET, "--no-push", env=env)
        out = self.ok(r)
        self.assertIn(f"s3api create-bucket --bucket {BUCKET}", out)
        self.assertIn(f"s3 cp {self.archive} s3://{BUCKET}/{PREFIX}/data/cifar-100-binary.tar.gz", out)
        trust, _ = self.request_json(out, "create-role")
        self.assertEqual(trust["Statement"][0]["Principal"], {"Service": "sagemaker.amazonaws.com"})
        policy, _ = self.request_json(out, "put-role-policy")
        self.assertIn(f"arn:aws:s3:::{BUCKET}/{PREFIX}/*", json.dumps(policy))
        self.assertIn("ecr create-repository --repository-name cifar100", out)
        r = self.deploy("--dry-run", "deploy", "some-job", "--bucket", BUCKET, "--role-arn", role, env=env)
        out = self.ok(r)
        model, _ = self.request_json(out, "create-model")
        self.assertEqual(model["PrimaryContainer"]["ModelDataUrl"],
                         f"s3://{BUCKET}/{PREFIX}/output/some-job/output/model.tar.gz")
        self.assertEqual(sm.validate("CreateModelInput", model), [])
        config, _ = self.request_json(out, "create-endpoint-config")
        self.assertEqual(config["ProductionVariants"][0]["InstanceType"], "ml.c5.xlarge")
        self.assertEqual(sm.validate("CreateEndpointConfigInput", config), [])
        self.ok(self.deploy("--dry-run", "--yes", "cleanup", "--bucket", BUCKET, env=env))
        self.assertNoRequests(before)

    def test_3_setup(self):
        out = self.ok(self.deploy("setup", "--bucket", BUCKET, "--no-push"))
        self.assertIn("bucket created", out)
        self.assertIn("uploading", out)
        self.assertIn("role created: arn:aws:iam::123456789012:role/cifar100-sagemaker", out)
        key = f"{PREFIX}/data/cifar-100-binary.tar.gz"
        head = self.s3.head_object(Bucket=BUCKET, Key=key)
        self.assertEqual(head["ContentLength"], os.path.getsize(self.archive))
        # 14 MB, over the CLI's 8 MiB threshold: a multipart upload (ETag "MD5-PARTS"), completed, none left open.
        self.assertRegex(head["ETag"], r'^"[0-9a-f]{32}-[0-9]+"$')
        self.assertEqual(self.multipart_uploads(), [])
        role = self.fake.roles["cifar100-sagemaker"]
        trust = json.loads(role["AssumeRolePolicyDocument"])
        self.assertEqual(trust["Statement"][0]["Principal"], {"Service": "sagemaker.amazonaws.com"})
        policy = json.loads(self.fake.role_policies[("cifar100-sagemaker", f"cifar100-access-{BUCKET}")])
        resources = json.dumps(policy)
        self.assertIn(f"arn:aws:s3:::{BUCKET}/{PREFIX}/*", resources)
        self.assertIn("arn:aws:ecr:us-east-1:123456789012:repository/cifar100", resources)
        self.assertIn("cifar100", self.fake.repos)
        # Again, now pushing with a stand-in for docker that records what it is asked: everything is found,
        # nothing uploaded or created twice; the ECR password reaches `login` on stdin.
        engine = os.path.join(self.tmp, "engine")
        calls = os.path.join(self.tmp, "engine.calls")
        with open(engine, "w") as f:
            f.write(f'#!/bin/sh\necho "$*" >> {calls}\n'
                    f'if [ "$1" = login ]; then echo "stdin: $(cat)" >> {calls}; fi\n')
        os.chmod(engine, 0o755)
        before = len(self.fake.requests)
        out = self.ok(self.deploy("setup", "--bucket", BUCKET, env={"ENGINE": engine}))
        self.assertIn("bucket exists", out)
        self.assertIn("same size): not uploaded again", out)
        self.assertIn("role exists", out)
        self.assertIn("ECR repository cifar100 exists", out)
        ops = [op for _, op in self.fake.requests[before:]]
        self.assertNotIn("CreateRole", ops)
        self.assertNotIn("CreateRepository", ops)
        self.assertIn("GetAuthorizationToken", ops)
        registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        with open(calls) as f:
            self.assertEqual(f.read().splitlines(), [
                "image inspect cifar100:cpu",
                f"login --username AWS --password-stdin {registry}", "stdin: fake-password",
                f"tag cifar100:cpu {registry}/cifar100:cpu", f"push {registry}/cifar100:cpu"])
        self.assertIn(f"pushed {registry}/cifar100:cpu", out)

    def test_4_train_and_follow(self):
        args = ["train", "--yes", "--bucket", BUCKET, "--job-name", self.job, "--instance-type", "ml.c5.xlarge",
                "--max-runtime", "3600", "--hours", "0.25", "--config", "quick-cpu"]
        for s in JOB_SETS:
            args += ["--set", s]
        out = self.ok(self.deploy(*args))
        self.assertIn(f"started arn:aws:sagemaker:us-east-1:123456789012:training-job/{self.job}", out)
        self.assertIn("on-demand:    $0.05", out)
        job = self.fake.jobs[self.job]
        self.assertTrue(job["EnableManagedSpotTraining"])
        self.assertEqual(job["StoppingCondition"], {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200})
        self.assertTrue(all(isinstance(v, str) for v in job["HyperParameters"].values()))

        r = self.deploy("follow", self.job, "--poll", "1", timeout=600)
        out = self.ok(r)
        if os.environ.get("DEPLOY_TEST_SHOW") == "1":
            print("\n" + out, flush=True)
        facts = job["_fake"]
        self.assertEqual(job["TrainingJobStatus"], "Completed", job.get("FailureReason"))
        # The spot interruption: SIGTERM mid-training, exit 0, a checkpoint, synced to S3 and back, resumed.
        first, second = facts["attempts"]
        self.assertIn("progress: epoch 1/", first["interrupted"])
        self.assertEqual(first["exit_code"], 0)
        self.assertTrue(first["stopped_by_sigterm"])
        self.assertFalse(first.get("sigkilled"))
        self.assertTrue(any(c.startswith("ckpt-") for c in first["checkpoints_after"]), first["checkpoints_after"])
        self.assertEqual(first["checkpoints_restored"], [])
        self.assertTrue(any("/ckpt-" in k for k in facts["checkpoints_synced"]), facts["checkpoints_synced"])
        self.assertTrue(any(k.startswith("ckpt-") and k.endswith("SHA256SUMS") for k in second["checkpoints_restored"]),
                        second["checkpoints_restored"])
        self.assertIsNotNone(second["resumed"], "the second run did not resume from the checkpoint")
        self.assertIn("resuming at epoch 1", second["resumed"])
        self.assertEqual(second["exit_code"], 0)
        ckpt_keys = self.s3_keys(f"{PREFIX}/checkpoints/{self.job}/")
        self.assertTrue(any(k.endswith("state.safetensors") for k in ckpt_keys), ckpt_keys)
        self.assertIn(f"{PREFIX}/output/{self.job}/output/model.tar.gz", self.s3_keys(f"{PREFIX}/output/"))
        # What follow showed: the transitions in order, metrics, both attempts' log lines, the model.
        shown = re.findall(r"^  \S+  (\w+)", out, re.M)
        self.assertEqual(shown, ["Starting", "Downloading", "Training", "Interrupted", "Starting", "Downloading",
                                 "Training", "Uploading", "Completed"])
        self.assertIn("job " + self.job + ": InProgress / ", out)
        self.assertRegex(out, r"metrics: .*val_top1=0\.\d+")
        self.assertRegex(out, r"metrics: .*test_top1=0\.\d+")
        self.assertRegex(out, r"\[algo-1-\d+\] .*stopped by SIGTERM at epoch 1")
        self.assertRegex(out, r"\[algo-1-\d+\] .*resuming at epoch 1")
        self.assertRegex(out, r"\[algo-1-\d+\] .*INFO  epoch=2; ")
        self.assertRegex(out, r"\[algo-1-\d+\] .*test_loss=")
        streams = sorted(n for n in self.fake.streams if n.startswith(self.job + "/"))
        self.assertEqual(len(streams), 2)
        n_lines = sum(len(self.fake.streams[s]) for s in streams)
        self.assertEqual(len(re.findall(r"^\[algo-1-\d+\] ", out, re.M)), n_lines, "every log line once")
        self.assertIn(f"model s3://{BUCKET}/{PREFIX}/output/{self.job}/output/model.tar.gz", out)
        # follow on a finished job: the same end, exit 0.
        self.ok(self.deploy("follow", self.job, "--poll", "1", "--no-logs"))

    def test_5_service_errors(self):
        # A job name with an underscore sent as is: the service's model refuses it; the script reports it.
        r = self.deploy("stop", "bad_name", "--yes")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"deploy\.sh: sagemaker stop-training-job failed: ValidationException: 1 validation "
                                   r"error detected: Value 'bad_name' at 'trainingJobName' failed to satisfy constraint: "
                                   r"Member must satisfy regular expression pattern")
        r = self.deploy("follow", "cifar100-no-such-job", "--poll", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("deploy.sh: sagemaker describe-training-job failed: ValidationException: Requested resource not "
                      "found.", r.stderr)
        # An invalid CreateTrainingJob (S3Uri pattern), sent by the CLI and refused by the model.
        r = self.deploy("train", "--yes", "--bucket", BUCKET, "--job-name", "cifar100-bad-uri", "--data-s3",
                        "ftp://example.com/data.tar.gz", "--config", "quick-cpu")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"deploy\.sh: sagemaker create-training-job failed: ValidationException: .*"
                                   r"'inputDataConfig\.1\.member\.dataSource\.s3DataSource\.s3Uri'")
        self.assertNotIn("cifar100-bad-uri", self.fake.jobs)
        # Stopping a finished job: refused by the fake service.
        r = self.deploy("stop", self.job, "--yes")
        self.assertEqual(r.returncode, 1)
        self.assertIn("deploy.sh: sagemaker stop-training-job failed: ValidationException: The request was rejected "
                      "because the training job is in status Completed.", r.stderr)
        # Without --yes and no answer on stdin: nothing is sent.
        before = self.requests()
        r = self.deploy("stop", self.job)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cancelled", r.stderr)
        self.assertNoRequests(before)
        # The training data missing: train stops before CreateTrainingJob.
        r = self.deploy("train", "--yes", "--bucket", BUCKET, "--prefix", "elsewhere", "--config", "quick-cpu")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no training data at s3://", r.stderr)

    def predict(self, model_dir, image):
        r = subprocess.run([BIN, "predict", "--model", model_dir, "--json", "--precision", PREDICT_PRECISION, image],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["predictions"][0]["top_k"]

    @staticmethod
    def parse_top5(out):
        tables, current = {}, None
        for line in out.splitlines():
            m = re.match(r"^(\S+) \((image/\w+)\):$", line)
            if m:
                current = tables.setdefault(m.group(1), [])
                continue
            m = re.match(r"^\s+(\d+)\s+(\d+)\s+(\S+)\s+([0-9.]+)$", line)
            if m and current is not None:
                current.append((int(m.group(2)), m.group(3), float(m.group(4))))
        return tables

    def test_6_deploy_and_invoke(self):
        r = self.deploy("deploy", self.job, "--endpoint-name", self.endpoint, "--poll", "1", timeout=400)
        out = self.ok(r)
        self.assertIn(f"endpoint {self.endpoint}: Creating", out)
        self.assertIn(f"endpoint {self.endpoint}: InService", out)
        self.assertEqual(self.fake.sm_models[self.job]["PrimaryContainer"]["ModelDataUrl"],
                         f"s3://{BUCKET}/{PREFIX}/output/{self.job}/output/model.tar.gz")
        self.assertEqual(self.fake.configs[self.job]["ProductionVariants"][0]["InstanceType"], "ml.c5.xlarge")
        tables = self.parse_top5(out)
        self.assertEqual(len(tables), 1, out)  # the test image of `data preview`
        self.assertEqual(len(next(iter(tables.values()))), 5)

        model_dir = os.path.join(self.tmp, "model-from-s3")
        os.makedirs(model_dir)
        data = self.s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/output/{self.job}/output/model.tar.gz")["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            self.assertEqual(sorted(tar.getnames()), ["config.json", "model.pt", "model.safetensors"])
            tar.extractall(model_dir)
        r = self.deploy("invoke", self.endpoint, *self.images)
        out = self.ok(r)
        tables = self.parse_top5(out)
        self.assertEqual(sorted(tables), sorted(self.images), out)
        self.assertIn("(image/png)", out)
        self.assertIn("(image/jpeg)", out)
        for image in self.images:
            want = self.predict(model_dir, image)
            got = tables[image]
            self.assertEqual([(c, n) for c, n, _ in got], [(p["class"], p["name"]) for p in want], image)
            for (_, _, p), w in zip(got, want):  # the table's 4 decimals (5e-5) and float32 rounding
                self.assertAlmostEqual(p, w["probability"], delta=6e-5)
        # A file that is not an image fails alone; the others are still answered.
        junk = os.path.join(self.tmp, "junk.png")
        with open(junk, "w") as f:
            f.write("not an image")
        r = self.deploy("invoke", self.endpoint, junk, self.images[0])
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a PNG or JPEG", r.stderr)
        self.assertIn(self.images[0], r.stdout)
        # An endpoint that does not exist: the runtime's error, reported.
        r = self.deploy("invoke", "no-such-endpoint", self.images[0])
        self.assertEqual(r.returncode, 1)
        self.assertIn("deploy.sh: sagemaker-runtime invoke-endpoint failed: ValidationException: Endpoint "
                      "no-such-endpoint of account", r.stderr)
        # deploy again onto the same endpoint name: refused before creating anything.
        r = self.deploy("deploy", self.job, "--endpoint-name", self.endpoint)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"endpoint {self.endpoint} exists already (InService)", r.stderr)

    def test_7_stop_and_interrupted_follow(self):
        job = self.job + "-stop"
        args = ["train", "--yes", "--no-spot", "--bucket", BUCKET, "--job-name", job, "--config", "quick-cpu"]
        for s in JOB_SETS:
            args += ["--set", s if not s.startswith("epochs=") else "epochs=20"]
        self.ok(self.deploy(*args))
        # Ctrl-C in follow ends the following, not the job.
        p = subprocess.Popen([DEPLOY, "follow", job, "--poll", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=self.env)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
        reader.start()
        deadline = time.time() + 120
        while time.time() < deadline and not any("progress: epoch 1/" in ln for ln in lines):
            time.sleep(0.2)
        self.assertTrue(any("progress: epoch 1/" in ln for ln in lines), "".join(lines))
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
        reader.join(timeout=10)
        err = p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        self.assertEqual(rc, 130, err)
        self.assertIn(f"stopped following {job}; the job goes on", err)
        self.assertEqual(self.fake.jobs[job]["TrainingJobStatus"], "InProgress")
        # stop: SIGTERM to the container, a checkpoint, Stopped; follow exits 1.
        out = self.ok(self.deploy("stop", job, "--yes"))
        self.assertIn(f"stopping {job}", out)
        r = self.deploy("follow", job, "--poll", "0.5", timeout=300)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(f"job {job} was stopped", r.stdout)
        self.assertIn("Stopping", r.stdout)
        attempt = self.fake.jobs[job]["_fake"]["attempts"][0]
        self.assertEqual(attempt["exit_code"], 0)
        self.assertTrue(attempt["stopped_by_sigterm"])
        self.assertEqual(self.fake.jobs[job]["TrainingJobStatus"], "Stopped")

    def test_8_cleanup(self):
        ep = self.fake.endpoints[self.endpoint]
        proc = ep["_proc"]
        r = self.deploy("cleanup", "--endpoint-name", self.endpoint, "--bucket", BUCKET)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"bucket {BUCKET} kept", r.stdout)  # no --yes and no answer: the bucket stays
        self.assertNotIn(self.endpoint, self.fake.endpoints)
        self.assertNotIn(self.job, self.fake.configs)
        self.assertNotIn(self.job, self.fake.sm_models)
        self.assertIsNotNone(proc.poll(), "the endpoint's server still runs")
        self.assertTrue(self.s3_keys())
        self.assertEqual(self.multipart_uploads(), [])  # nothing unfinished from setup, jobs and checkpoint syncs
        out = self.ok(self.deploy("cleanup", "--yes", "--endpoint-name", self.endpoint, "--bucket", BUCKET))
        self.assertIn(f"no endpoint {self.endpoint}", out)
        self.assertIn(f"deleted bucket {BUCKET}", out)
        self.assertNotIn(BUCKET, [b["Name"] for b in self.s3.list_buckets().get("Buckets", [])])

    def test_9_fake_saw_only_valid_requests(self):
        self.assertEqual(self.fake.errors, [])
        rejected = {(s, op, code) for s, op, code, _ in self.fake.rejected}
        allowed = {("sagemaker", "StopTrainingJob", "ValidationException"),
                   ("sagemaker", "DescribeTrainingJob", "ValidationException"),
                   ("sagemaker", "CreateTrainingJob", "ValidationException"),
                   ("sagemaker", "DescribeEndpoint", "ValidationException"),
                   ("sagemaker-runtime", "InvokeEndpoint", "ValidationException"),
                   ("iam", "GetRole", "NoSuchEntity"), ("ecr", "DescribeRepositories", "RepositoryNotFoundException"),
                   ("logs", "DescribeLogStreams", "ResourceNotFoundException")}
        self.assertLessEqual(rejected, allowed, self.fake.rejected)
        used = {(s, op) for s, op in self.fake.requests}
        for needed in (("sts", "GetCallerIdentity"), ("iam", "CreateRole"), ("iam", "PutRolePolicy"),
                       ("ecr", "CreateRepository"), ("ecr", "GetAuthorizationToken"), ("sagemaker", "CreateTrainingJob"),
                       ("sagemaker", "DescribeTrainingJob"), ("sagemaker", "StopTrainingJob"),
                       ("logs", "GetLogEvents"), ("sagemaker", "CreateModel"), ("sagemaker", "CreateEndpointConfig"),
                       ("sagemaker", "CreateEndpoint"), ("sagemaker-runtime", "InvokeEndpoint"),
                       ("sagemaker", "DeleteEndpoint"), ("sagemaker", "DeleteEndpointConfig"),
                       ("sagemaker", "DeleteModel")):
            self.assertIn(needed, used)
        print(f"requests: {len(self.fake.requests)} to the fake, checked against botocore's models; patterns the fake "
              f"could not translate (not checked): {sorted(self.fake.models['sagemaker'].unchecked_patterns)}",
              flush=True)


if __name__ == "__main__":
    missing = missing_prerequisites()
    if missing:
        print("skipped: missing " + "; ".join(missing), flush=True)
        sys.exit(1 if os.environ.get("CIFAR100_REQUIRE_REAL") == "1" else 77)
    unittest.main(verbosity=2, failfast=False)
