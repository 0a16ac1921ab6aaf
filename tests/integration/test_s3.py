"""S3 through the binary and tests/tools/s3_tool, against moto's S3 server behind a proxy that verifies every
SigV4 signature with botocore: multipart uploads and ranged reads, listing over 1,000 keys, missing objects, an
injected 503 followed by success, a multipart upload whose part fails (aborted: nothing left behind, asked of
moto), expired and expiring temporary credentials from the container endpoint and IMDSv2, and the binary's
s3:// options end to end (data upload, data_dir and archive from S3, the model artifact as a prefix and as
model.tar.gz, the eval report, the checkpoint mirror and resuming from it), with no credential ever in a log
or a saved file and no multipart upload left unfinished by any test. Runs with the project's venv
(.venv/bin/python, scripts/setup-python.sh): without moto it fails, it is never skipped."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, TempDirTest, read_json  # noqa: E402

try:
    import s3fakes  # moto, boto3, botocore
except ImportError as e:
    sys.exit(f"S3 test: {e}: run it with the project's venv, .venv/bin/python (scripts/setup-python.sh makes it)")

TOOL = os.environ.get("S3_TOOL", "build/tests/s3_tool")
KEY, SECRET = "AKIATESTSTATIC000001", "static-secret-never-logged-7f3a"
BUCKET = "cifar100-sagemaker-test"


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class S3Test(TempDirTest):
    @classmethod
    def setUpClass(cls):
        cls.keys = s3fakes.Keys()
        cls.keys.add_static(KEY, SECRET)
        cls.moto = s3fakes.MotoS3([BUCKET])
        cls.addClassCleanup(cls.moto.stop)  # also when setUpClass fails later on
        cls.proxy = s3fakes.VerifyingProxy(cls.moto.port, cls.keys)
        cls.addClassCleanup(cls.proxy.stop)

    def setUp(self):
        super().setUp()
        self.assertEqual(self.proxy.rejected, [], "a request failed signature verification")

    def tearDown(self):
        rejected, self.proxy.rejected[:] = list(self.proxy.rejected), []
        super().tearDown()
        self.assertEqual(rejected, [], "requests failed botocore's signature check")
        # Asked of moto itself: every multipart upload was completed or aborted (parts left behind cost money).
        self.assertEqual(self.moto.multipart_uploads(BUCKET), [], "multipart uploads left unfinished")

    def env(self, **extra):
        e = s3fakes.clean_aws_env({"AWS_ENDPOINT_URL_S3": self.proxy.url, "AWS_ACCESS_KEY_ID": KEY,
                                   "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_MAX_ATTEMPTS": "3",
                                   "XDG_CACHE_HOME": os.path.join(self.tmp, "cache")})
        e.update(extra)
        return e

    def tool(self, *args, env=None, ok=True):
        r = subprocess.run([TOOL, *args], env=env or self.env(), capture_output=True, text=True, timeout=300)
        if ok:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def cifar(self, args, env=None, ok=True, timeout=900):
        r = subprocess.run([BIN, *args], env=env or self.env(), capture_output=True, text=True, timeout=timeout)
        if ok:
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        for secret in (SECRET, "temp-secret-", "temp-token-"):
            self.assertNotIn(secret, r.stdout + r.stderr, "a credential reached the log")
        return r

    def random_file(self, name, size):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        return path


class Transfers(S3Test):
    def test_multipart_upload_and_ranged_download(self):
        src = self.random_file("big.bin", 13 * 1024 * 1024 + 12345)  # 3 parts of 5 MiB
        small = dict(CIFAR100_S3_PART_MB="5", CIFAR100_S3_MULTIPART_MB="6")
        n0 = len(self.proxy.log)
        self.tool("put", src, f"s3://{BUCKET}/t/big.bin", env=self.env(**small))
        calls = [(m, p) for m, p, s, _ in self.proxy.log[n0:]]
        self.assertEqual(sum(1 for m, p in calls if m == "PUT" and "partNumber=" in p), 3)
        self.assertTrue(any(m == "POST" and p.endswith("?uploads=") for m, p in calls))
        self.assertTrue(any(m == "POST" and "uploadId=" in p for m, p in calls))
        n1 = len(self.proxy.log)
        out = os.path.join(self.tmp, "back.bin")
        self.tool("get", f"s3://{BUCKET}/t/big.bin", out, env=self.env(**small))
        self.assertEqual(sha(out), sha(src))
        self.assertEqual(sum(1 for m, p, s, _ in self.proxy.log[n1:] if m == "GET"), 3)  # three ranged reads
        r = subprocess.run([TOOL, "range", f"s3://{BUCKET}/t/big.bin", "5242870", "20"], env=self.env(),
                           capture_output=True, timeout=60)
        with open(src, "rb") as f:
            f.seek(5242870)
            self.assertEqual(r.stdout, f.read(20))
        # Nothing half-written is left beside the downloaded file, nor unfinished in the bucket.
        self.assertFalse([n for n in os.listdir(self.tmp) if ".part-" in n])
        self.assertEqual(self.moto.multipart_uploads(BUCKET, "t/"), [])
        self.assertEqual(self.moto.keys(BUCKET, "t/"), ["t/big.bin"])

    def test_multipart_upload_with_a_failing_part(self):
        src = self.random_file("mp.bin", 13 * 1024 * 1024 + 777)  # 3 parts of 5 MiB
        small = dict(CIFAR100_S3_PART_MB="5", CIFAR100_S3_MULTIPART_MB="6")
        part2 = lambda m, p: m == "PUT" and "/mp/" in p and "partNumber=2" in p  # noqa: E731
        # Retried: the part is sent again and the object is whole.
        self.proxy.inject(part2, 503, "SlowDown")
        n0 = len(self.proxy.log)
        self.tool("put", src, f"s3://{BUCKET}/mp/retried.bin", env=self.env(**small))
        self.assertEqual([s for m, p, s, _ in self.proxy.log[n0:] if part2(m, p)], [503, 200])
        out = os.path.join(self.tmp, "mp-back.bin")
        self.tool("get", f"s3://{BUCKET}/mp/retried.bin", out)
        self.assertEqual(sha(out), sha(src))
        # Not retried: the upload fails with S3's code and the address, and is aborted; moto holds no upload,
        # no part and no object for the key.
        self.proxy.inject(part2, 503, "SlowDown")
        n1 = len(self.proxy.log)
        r = self.tool("put", src, f"s3://{BUCKET}/mp/failed.bin", env=self.env(AWS_MAX_ATTEMPTS="1", **small),
                      ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 503 SlowDown", r.stderr)
        self.assertIn(f"s3://{BUCKET}/mp/failed.bin", r.stderr)
        calls = [(m, p, s) for m, p, s, _ in self.proxy.log[n1:]]
        self.assertTrue(any(m == "DELETE" and "/mp/failed.bin?uploadId=" in p and s == 204 for m, p, s in calls),
                        calls)
        self.assertFalse(any(m == "POST" and "uploadId=" in p for m, p, s in calls), "completed despite the fault")
        self.assertEqual(self.moto.multipart_uploads(BUCKET, "mp/"), [])
        self.assertEqual(self.moto.keys(BUCKET, "mp/"), ["mp/retried.bin"])

    def test_listing_over_1000_keys(self):
        self.tool("put-many", f"s3://{BUCKET}/many", "1105")
        r = self.tool("ls", f"s3://{BUCKET}/many")
        names = [line.split()[1] for line in r.stdout.splitlines()]
        self.assertEqual(len(names), 1105)
        self.assertEqual(names[0], "k00000")
        self.assertEqual(names[-1], "k01104")
        self.assertTrue(any("continuation-token=" in p for m, p, s, _ in self.proxy.log))

    def test_unicode_keys_and_missing_objects(self):
        src = self.random_file("u.bin", 1000)
        key = f"s3://{BUCKET}/uni/é ü+=&%/ключ (1).bin"
        self.tool("put", src, key)
        out = os.path.join(self.tmp, "u2.bin")
        self.tool("get", key, out)
        self.assertEqual(sha(out), sha(src))
        r = self.tool("get", f"s3://{BUCKET}/uni/missing.bin", out, ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"s3://{BUCKET}/uni/missing.bin", r.stderr)
        self.assertIn("NoSuchKey", r.stderr)
        r = self.tool("ls", "s3://no-such-bucket-here/x", ok=False)
        self.assertIn("NoSuchBucket", r.stderr)
        self.assertIn("no-such-bucket-here", r.stderr)

    def test_injected_503_then_success(self):
        src = self.random_file("r.bin", 5000)
        self.proxy.inject(lambda m, p: m == "PUT" and "/retry/" in p, 503, "SlowDown", times=2)
        self.tool("put", src, f"s3://{BUCKET}/retry/r.bin")
        statuses = [s for m, p, s, _ in self.proxy.log if m == "PUT" and "/retry/" in p]
        self.assertEqual(statuses, [503, 503, 200])
        # Without retries the same fault is reported with S3's code and the address.
        self.proxy.inject(lambda m, p: m == "GET" and "/retry/" in p, 503, "SlowDown")
        r = self.tool("get", f"s3://{BUCKET}/retry/r.bin", os.path.join(self.tmp, "x"),
                      env=self.env(AWS_MAX_ATTEMPTS="1"), ok=False)
        self.assertIn("HTTP 503 SlowDown", r.stderr)
        self.assertIn(f"s3://{BUCKET}/retry/r.bin", r.stderr)

    def test_wrong_secret_is_a_clear_error(self):
        r = self.tool("ls", f"s3://{BUCKET}/x", env=self.env(AWS_SECRET_ACCESS_KEY="wrong-secret"), ok=False)
        self.assertIn("SignatureDoesNotMatch", r.stderr)
        self.assertIn("check the access key and secret", r.stderr)
        self.assertNotIn("wrong-secret", r.stderr)
        self.proxy.rejected[:] = []  # expected rejections


class TemporaryCredentials(S3Test):
    def setUp(self):
        super().setUp()
        self.creds = s3fakes.CredentialServer(self.keys, lifetime_s=3600)
        self.addCleanup(self.creds.stop)
        self.tool("put", self.random_file("c.bin", 10), f"s3://{BUCKET}/creds/c.bin")

    def container_env(self, **extra):
        e = self.env(AWS_CONTAINER_CREDENTIALS_FULL_URI=self.creds.url + "/container-credentials",
                     AWS_CONTAINER_AUTHORIZATION_TOKEN="container-auth-token", **extra)
        del e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"]
        return e

    def test_container_credentials_and_expired_token(self):
        r = self.tool("creds", env=self.container_env())
        self.assertIn("container credentials", r.stdout)
        # The service says the token expired (revoked early): the chain fetches new credentials and retries.
        self.keys.revoked.add(f"temp-token-{self.keys.counter + 1}-" + "x" * 40)  # the next one handed out
        n, n0 = len(self.creds.fetches), len(self.proxy.log)
        self.tool("get", f"s3://{BUCKET}/creds/c.bin", os.path.join(self.tmp, "c2"), env=self.container_env())
        self.assertEqual(len(self.creds.fetches) - n, 2)  # the revoked token, then a good one
        statuses = [s for m, p, s, t in self.proxy.log[n0:]]
        self.assertIn(400, statuses)
        self.assertEqual(statuses[-1], 200)

    def test_expiring_credentials_are_refreshed_before_they_expire(self):
        self.creds.lifetime_s = 4  # refreshed at half their lifetime, 2 s before expiry
        n0 = len(self.proxy.log)
        r = self.tool("watch", f"s3://{BUCKET}/creds/c.bin", "4", "1100", env=self.container_env())
        tokens = r.stdout.split()
        self.assertEqual(len(tokens), 4)
        self.assertGreaterEqual(len(set(tokens)), 2, "the credentials were never refreshed")
        self.assertNotIn(400, [s for m, p, s, t in self.proxy.log[n0:]])  # never used once expired

    def test_instance_metadata_v2(self):
        e = self.env(AWS_EC2_METADATA_DISABLED="false", AWS_EC2_METADATA_SERVICE_ENDPOINT=self.creds.url)
        del e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"]
        r = self.tool("creds", env=e)
        self.assertIn(f"instance metadata ({self.creds.url})", r.stdout)
        self.tool("get", f"s3://{BUCKET}/creds/c.bin", os.path.join(self.tmp, "c3"), env=e)
        self.assertEqual(self.creds.fetches[-1][0], "imds")
        # Nothing configured at all: a clear message that says where it looked.
        e2 = dict(e, AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:9")
        r = self.tool("creds", env=e2, ok=False)
        self.assertIn("no AWS credentials found", r.stderr)


class Binary(S3Test):
    TRAIN = ["--set", "depth=10", "--set", "width=1", "--set", "batch_size=64", "--set", "lr_reference_batch=64",
             "--set", "val_size=200", "--set", "warmup_epochs=0", "--set", "log_interval=5", "--set", "threads=2"]

    def test_data_upload_train_from_s3_model_and_report_to_s3(self):
        data = self.fake_data(train=1200, test=300)
        prefix = f"s3://{BUCKET}/cifar"
        r = self.cifar(["data", "upload", prefix, "--data-dir", data])
        self.assertIn(f"SageMaker channels 'train' = {prefix}/train/", r.stdout)
        listed = self.tool("ls", prefix).stdout.split()[1::2]
        self.assertEqual(sorted(listed), ["test/coarse_label_names.txt", "test/fine_label_names.txt", "test/test.bin",
                                          "train/coarse_label_names.txt", "train/fine_label_names.txt",
                                          "train/train.bin"])
        r = self.cifar(["data", "upload", prefix, "--data-dir", data])  # a second time uploads nothing
        self.assertEqual(r.stdout.count("is already there (same MD5)"), 6)

        out = os.path.join(self.tmp, "run")
        r = self.cifar(["train", "--out", out, "--data-dir", prefix, "--set", "epochs=2",
                        "--set", f"model_out=s3://{BUCKET}/models/run1/model.tar.gz",
                        "--set", f"checkpoint_mirror=s3://{BUCKET}/ckpt/run1", *self.TRAIN])
        self.assertIn(f"downloading {prefix}/train/train.bin", r.stdout)
        self.assertIn(f"model artifact stored at s3://{BUCKET}/models/run1/model.tar.gz", r.stdout)
        mirror = self.tool("ls", f"s3://{BUCKET}/ckpt/run1").stdout.split()[1::2]
        self.assertTrue(any(n.endswith("/SHA256SUMS") and n.startswith("ckpt-") for n in mirror), mirror)
        self.assertTrue(any(n.startswith("best-") for n in mirror), mirror)
        # eval straight from the model.tar.gz in the bucket, report and JSON into the bucket.
        r = self.cifar(["eval", "--model", f"s3://{BUCKET}/models/run1/model.tar.gz", "--data-dir", prefix,
                        "--report-dir", f"s3://{BUCKET}/reports/run1", "--json", f"s3://{BUCKET}/reports/run1.json"])
        report = self.tool("ls", f"s3://{BUCKET}/reports/run1").stdout.split()[1::2]
        self.assertEqual(sorted(report), ["confusion.csv", "confusion.png", "metrics.json", "per_class.csv"])
        got = os.path.join(self.tmp, "run1.json")
        self.tool("get", f"s3://{BUCKET}/reports/run1.json", got)
        self.assertAlmostEqual(read_json(got)["top1"], read_json(os.path.join(out, "results.json"))["test_top1"],
                               delta=0.01)
        # export to a prefix, then predict and eval read that prefix.
        self.cifar(["export", "--checkpoint", out, "--out", f"s3://{BUCKET}/models/exported"])
        objs = self.tool("ls", f"s3://{BUCKET}/models/exported").stdout.split()[1::2]
        self.assertEqual(sorted(objs), ["config.json", "model.pt", "model.safetensors"])
        self.cifar(["eval", "--model", f"s3://{BUCKET}/models/exported", "--data-dir", data])
        from PIL import Image
        png = os.path.join(self.tmp, "img.png")
        Image.new("RGB", (40, 30), (200, 30, 60)).save(png)
        self.tool("put", png, f"s3://{BUCKET}/images/img.png")
        r = self.cifar(["predict", "--model", f"s3://{BUCKET}/models/exported", "--json", f"s3://{BUCKET}/images/img.png",
                        f"s3://{BUCKET}/images/missing.png", png], ok=False)
        self.assertEqual(r.returncode, 1)  # one file failed, the others were predicted
        preds = json.loads(r.stdout)["predictions"]
        self.assertEqual(preds[0]["top_k"], preds[2]["top_k"])
        self.assertIn(f"s3://{BUCKET}/images/missing.png does not exist", preds[1]["error"])
        # Nothing secret in what was written.
        for root, _, files in os.walk(out):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    self.assertNotIn(SECRET.encode(), fh.read())

    def test_archive_from_s3_and_resume_from_the_mirror(self):
        archive = os.path.join(self.tmp, "cifar-100-binary.tar.gz")
        self.fake_data(name="arch", train=1200, test=300, archive=archive)
        self.tool("put", archive, f"s3://{BUCKET}/arch/cifar-100-binary.tar.gz")
        data_dir = os.path.join(self.tmp, "extracted")
        plain_args = ["--archive", f"s3://{BUCKET}/arch/cifar-100-binary.tar.gz", "--data-dir", data_dir,
                      "--set", "epochs=3", *self.TRAIN]
        common = plain_args + ["--set", f"checkpoint_mirror=s3://{BUCKET}/ckpt/run2"]
        # A run on one machine is stopped mid-training (SIGTERM: checkpoint, mirrored)...
        first = os.path.join(self.tmp, "first")
        p = subprocess.Popen([BIN, "train", "--out", first, *common], env=self.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        for line in p.stdout:
            if "progress: epoch 2/3 step 10/" in line:
                break
        p.send_signal(signal.SIGTERM)
        rest = p.stdout.read()
        p.stdout.close()
        self.assertEqual(p.wait(120), 0, rest)
        self.assertIn("mirrored to", rest)
        # ...and continued on another with nothing local: it starts from the mirror's newest checkpoint.
        second = os.path.join(self.tmp, "second")
        r = self.cifar(["train", "--out", second, *common])
        self.assertIn("copied from the mirror", r.stdout)
        self.assertIn("resuming from checkpoint", r.stdout)
        # The same as a run that was never interrupted.
        plain = os.path.join(self.tmp, "plain")
        self.cifar(["train", "--out", plain, *plain_args])
        a, b = read_json(os.path.join(second, "results.json")), read_json(os.path.join(plain, "results.json"))
        for k in ("test_top1", "test_loss", "best_epoch"):
            self.assertEqual(a[k], b[k], k)
        self.assertEqual(sha(os.path.join(second, "model", "model.safetensors")),
                         sha(os.path.join(plain, "model", "model.safetensors")))


def main():
    result = unittest.main(verbosity=2, exit=False).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
