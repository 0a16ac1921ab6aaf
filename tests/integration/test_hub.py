"""`cifar100 push` and `cifar100 pull` against a fake Hugging Face Hub (hubfake.py) on loopback: a push is
create repo (409 is fine), branch when needed, preupload, LFS batch + PUT + verify, then ONE NDJSON commit of
README.md (model card), config.json, model.safetensors, model.pt (+ confusion.png); a pull brings the files
back byte-identical, checks LFS files against X-Linked-Etag (sha256) and gives an artifact that predicts as
the original. Errors: 401 (bad token), 403 (foreign repo), 404 (missing repo), a model dir that is not an
artifact (no request at all); retries: 500s on commit, an interrupted LFS upload; tokens from HF_TOKEN, from
$HF_HOME/token and from $HF_TOKEN_PATH; no token ever reaches the storage/CDN server."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, TempDirTest, read_json, run  # noqa: E402
import hubfake  # noqa: E402

TINY = ["--set", "depth=10", "--set", "width=1", "--set", "batch_size=64", "--set", "lr=0.1",
        "--set", "lr_reference_batch=64", "--set", "warmup_epochs=0", "--set", "val_size=100",
        "--set", "eval_batch_size=100", "--set", "log_interval=0", "--set", "threads=2", "--set", "epochs=1",
        "--set", "mixup_alpha=0", "--set", "dropout=0"]
ALICE = "hf_alice_write_0123456789abcdef"
ALICE_READ = "hf_alice_read_0123456789abcdef"
BOB = "hf_bob_write_0123456789abcdef"
ARTIFACT = ["README.md", "config.json", "model.safetensors", "model.pt"]
PULLED_OK = set(ARTIFACT) | {"confusion.png"}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Hub(TempDirTest):
    @classmethod
    def setUpClass(cls):
        # One tiny training run shared by every test (read-only for them).
        cls.shared = tempfile.mkdtemp(prefix="cifar100-hub-")
        t = TempDirTest()
        t.tmp = cls.shared
        cls.data = t.fake_data(train=600, test=200, classes=10)
        cls.run_dir = os.path.join(cls.shared, "run")
        r = run(["train", "--data-dir", cls.data, "--out", cls.run_dir] + TINY)
        assert r.returncode == 0, r.stdout + r.stderr
        # The artifact on its own (outside its run directory, so without the run's report).
        cls.model = os.path.join(cls.shared, "plain")
        shutil.copytree(os.path.join(cls.run_dir, "model"), cls.model)
        cls.config = read_json(os.path.join(cls.model, "config.json"))
        # The same artifact with its evaluation report's heat map (training writes run/report/confusion.png).
        cls.reported = os.path.join(cls.shared, "reported")
        shutil.copytree(cls.model, cls.reported)
        shutil.copy(os.path.join(cls.run_dir, "report", "confusion.png"), cls.reported)
        rng = np.random.default_rng(7)
        cls.images = []
        for i in range(4):
            p = os.path.join(cls.shared, f"img{i}.png")
            Image.fromarray(rng.integers(0, 256, (32 + 8 * i, 32 + 8 * i, 3), dtype=np.uint8)).save(p)
            cls.images.append(p)
        r = run(["predict", "--model", cls.model, "--json", "--top-k", "3"] + cls.images)
        assert r.returncode == 0, r.stderr
        cls.predictions = json.loads(r.stdout)["predictions"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.shared, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.hub = hubfake.HubFake()
        self.hub.add_user("alice", ALICE, orgs={"acme": "write"})
        self.hub.add_token(ALICE_READ, "alice", role="read")
        self.hub.add_user("bob", BOB)
        self.hub.seed_repo("bob/theirs", files={"README.md": b"# Bob's model\n"})
        self.home = os.path.join(self.tmp, "home")
        os.makedirs(self.home)

    def tearDown(self):
        bugs = [r for r in self.hub.requests if "exception" in r]
        self.hub.stop()
        super().tearDown()
        self.assertEqual(bugs, [], "hubfake raised while answering")

    # ----- helpers -----------------------------------------------------------------------------------------
    def env(self, token=ALICE, **extra):
        e = dict(os.environ)
        for k in ("CIFAR100_ARCHIVE", "CIFAR100_DATA_DIR", "CIFAR100_DEVICE", "CIFAR100_THREADS", "CIFAR100_PRECISION",
                  "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE",
                  "XDG_CACHE_HOME", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            e.pop(k, None)
        e.update({"HF_ENDPOINT": self.hub.url, "HOME": self.home, "NO_PROXY": "127.0.0.1,localhost",
                  "no_proxy": "127.0.0.1,localhost"})
        if token is not None:
            e["HF_TOKEN"] = token
        e.update(extra)
        return e

    def cifar(self, args, env=None, ok=True, timeout=180):
        r = subprocess.run([BIN] + args, env=env or self.env(), capture_output=True, text=True, timeout=timeout)
        if ok:
            self.assertEqual(r.returncode, 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
        for secret in (ALICE, ALICE_READ, BOB):
            self.assertNotIn(secret, r.stdout + r.stderr, "a token reached the output")
        return r

    def push(self, repo, *extra, model=None, **kw):
        return self.cifar(["push", "--model", model or self.model, "--repo", repo, *extra], **kw)

    def pull(self, repo, out, *extra, **kw):
        return self.cifar(["pull", repo, "--out", out, *extra], **kw)

    def assertStorageNeverSawAToken(self):
        for r in self.hub.requests:
            if r["server"] == "storage":
                self.assertNotIn("authorization", r["headers"], f"{r['method']} {r['path']} carried a token")

    def assertAllHubRequestsAuthorized(self, token=ALICE):
        for r in self.hub.requests:
            if r["server"] == "hub" and r["route"] != "lfs_complete":
                self.assertEqual(r["headers"].get("authorization"), f"Bearer {token}", f"{r['method']} {r['path']}")

    def assertNothingHappened(self, r, *names):
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for n in names:
            self.assertIn(n, r.stderr)

    def assertPushedArtifact(self, repo, rev="main", model=None, extra=()):
        """The branch head is one commit holding exactly the artifact's files, LFS ones as lfsFile lines."""
        model = model or self.model
        head = self.hub.commit(repo, self.hub.head(repo, rev))
        expected = sorted(ARTIFACT + list(extra))
        self.assertEqual(head.paths, expected)
        kinds = {op["path"]: op["key"] for op in head.ops}
        self.assertEqual(kinds["README.md"], "file")
        self.assertEqual(kinds["config.json"], "file")
        for name in ("model.safetensors", "model.pt") + tuple(extra):
            self.assertEqual(kinds[name], "lfsFile", name)
        files = self.hub.files(repo, rev)
        for name in expected:
            if name != "README.md":
                self.assertEqual(files[name], read(os.path.join(model, name)), name)
        return head

    def card(self, repo, rev="main"):
        text = self.hub.files(repo, rev)["README.md"].decode("utf-8")
        self.assertTrue(text.startswith("---\n"), text[:200])
        end = text.index("\n---", 4)
        return yaml.safe_load(text[4:end]), text

    def predict(self, model):
        r = run(["predict", "--model", model, "--json", "--top-k", "3"] + self.images)
        self.assertOk(r)
        return json.loads(r.stdout)["predictions"]

    # ----- tests -------------------------------------------------------------------------------------------
    def test_push_then_pull_round_trip(self):
        r = self.push("alice/wrn-10-1", "--message", "First upload")
        head = self.hub.head("alice/wrn-10-1")
        self.assertIn(f"{self.hub.url}/alice/wrn-10-1/commit/{head}", r.stdout)
        commit = self.assertPushedArtifact("alice/wrn-10-1")
        self.assertEqual(commit.title, "First upload")
        self.assertEqual([c.title for c in self.hub.commits("alice/wrn-10-1")], ["First upload", "initial commit"])
        # The protocol, in order: create, preupload, LFS batch, one PUT + verify per LFS object, one commit.
        routes = [x for x in self.hub.routes() if x not in ("whoami", "repo_info", "refs", "validate_yaml")]
        self.assertEqual(routes[0], "create", routes)
        self.assertEqual(routes[-1], "commit", routes)
        self.assertEqual(routes.count("commit"), 1, routes)
        self.assertLess(routes.index("preupload"), routes.index("lfs_batch"), routes)
        self.assertLess(routes.index("lfs_batch"), routes.index("lfs_put"), routes)
        self.assertEqual(routes.count("lfs_put"), 2, routes)
        self.assertEqual(routes.count("lfs_verify"), 2, routes)
        self.assertEqual(self.hub.repo("alice/wrn-10-1").verified,
                         {sha256(os.path.join(self.model, n)) for n in ("model.safetensors", "model.pt")})
        batch = next(x for x in self.hub.requests if x["route"] == "lfs_batch")
        self.assertIn("application/vnd.git-lfs+json", batch["headers"].get("accept", ""))
        self.assertIn("application/vnd.git-lfs+json", batch["headers"].get("content-type", ""))
        doc = json.loads(batch["body"])
        self.assertEqual(doc["operation"], "upload")
        self.assertIn("basic", doc["transfers"])
        self.assertEqual(doc.get("ref"), {"name": "main"})
        self.assertEqual(sorted(o["oid"] for o in doc["objects"]),
                         sorted(sha256(os.path.join(self.model, n)) for n in ("model.safetensors", "model.pt")))
        pre = json.loads(next(x for x in self.hub.requests if x["route"] == "preupload")["body"])
        self.assertEqual(sorted(f["path"] for f in pre["files"]), sorted(ARTIFACT))
        commit_req = next(x for x in self.hub.requests if x["route"] == "commit")
        self.assertEqual(commit_req["headers"]["content-type"].split(";")[0], "application/x-ndjson")
        self.assertAllHubRequestsAuthorized()
        self.assertStorageNeverSawAToken()

        # The model card: YAML front matter with a model-index holding the artifact's test accuracy.
        meta, text = self.card("alice/wrn-10-1")
        self.assertIsInstance(meta.get("library_name"), str)
        self.assertIn(meta.get("license"), hubfake.LICENSES)
        self.assertIsInstance(meta.get("tags"), list)
        results = meta["model-index"][0]["results"][0]
        self.assertIsInstance(meta["model-index"][0]["name"], str)
        self.assertEqual(results["task"]["type"], "image-classification")
        self.assertEqual(results["dataset"]["type"], "cifar100")
        self.assertEqual(results["dataset"]["name"], "CIFAR-100")
        self.assertEqual(results["dataset"]["split"], "test")
        acc = [m for m in results["metrics"] if m["type"] == "accuracy"]
        self.assertEqual(len(acc), 1, results["metrics"])
        self.assertAlmostEqual(float(acc[0]["value"]), self.config["training"]["metrics"]["test_top1"], delta=5e-5)
        self.assertIn("WRN-10-1", text)

        # Pull: the files come back byte-identical, LFS ones through the CDN redirect, nothing else is left.
        self.hub.clear_log()
        out = os.path.join(self.tmp, "pulled")
        self.pull("alice/wrn-10-1", out)
        listing = set(os.listdir(out))
        self.assertTrue(set(ARTIFACT) <= listing, listing)
        self.assertTrue(listing <= PULLED_OK, f"unexpected files (temporary files left?): {listing - PULLED_OK}")
        for name in ("config.json", "model.safetensors", "model.pt"):
            self.assertEqual(read(os.path.join(out, name)), read(os.path.join(self.model, name)), name)
        self.assertEqual(read(os.path.join(out, "README.md")), self.hub.files("alice/wrn-10-1")["README.md"])
        self.assertGreaterEqual(self.hub.count("cdn"), 2)  # the LFS files were fetched after the 302
        self.assertAllHubRequestsAuthorized()
        self.assertStorageNeverSawAToken()
        # ...and the pulled artifact predicts exactly as the original.
        self.assertEqual(self.predict(out), self.predictions)

    def test_second_push_to_an_existing_repo_makes_a_second_commit(self):
        self.push("alice/wrn", "--message", "one")
        self.hub.clear_log()
        self.push("alice/wrn", "--message", "two")
        create = [x for x in self.hub.requests if x["route"] == "create"]
        self.assertEqual([x["status"] for x in create], [409])
        self.assertEqual([c.title for c in self.hub.commits("alice/wrn")], ["two", "one", "initial commit"])
        self.assertPushedArtifact("alice/wrn")
        # The LFS objects are already stored: the batch answer has no actions, so nothing is uploaded again.
        self.assertEqual(self.hub.count("lfs_put"), 0, self.hub.routes())

    def test_revision_creates_the_branch_and_pull_revision_gets_it(self):
        self.push("alice/wrn", "--revision", "exp", "--message", "on a branch")
        branch = [x for x in self.hub.requests if x["route"] == "branch"]
        self.assertEqual([x["status"] for x in branch], [200])
        self.assertEqual([c.title for c in self.hub.commits("alice/wrn", "main")], ["initial commit"])
        self.assertPushedArtifact("alice/wrn", rev="exp")
        for name in ("preupload", "commit"):
            self.assertTrue(next(x for x in self.hub.requests if x["route"] == name)["path"].endswith(f"/{name}/exp"))
        out = os.path.join(self.tmp, "exp")
        self.pull("alice/wrn", out, "--revision", "exp")
        self.assertEqual(read(os.path.join(out, "model.safetensors")), read(os.path.join(self.model, "model.safetensors")))
        # main holds no artifact: pulling it fails.
        r = self.pull("alice/wrn", os.path.join(self.tmp, "main"), ok=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        # Pushing to the branch again: it exists now, so no new branch is needed (409 would be fine too).
        self.hub.clear_log()
        self.push("alice/wrn", "--revision", "exp", "--message", "again")
        self.assertTrue(all(x["status"] == 409 for x in self.hub.requests if x["route"] == "branch"))
        self.assertEqual([c.title for c in self.hub.commits("alice/wrn", "exp")][:2], ["again", "on a branch"])

    def test_revision_with_a_slash_is_url_encoded(self):
        self.push("alice/wrn", "--revision", "exp/v2")
        self.assertPushedArtifact("alice/wrn", rev="exp/v2")
        self.assertTrue(any(x["path"].endswith("/commit/exp%2Fv2") for x in self.hub.requests if x["route"] == "commit"))
        out = os.path.join(self.tmp, "v2")
        self.pull("alice/wrn", out, "--revision", "exp/v2")
        self.assertEqual(read(os.path.join(out, "model.pt")), read(os.path.join(self.model, "model.pt")))

    def test_report_artifact_includes_the_confusion_png(self):
        self.push("alice/reported", model=self.reported)
        self.assertPushedArtifact("alice/reported", model=self.reported, extra=("confusion.png",))

    def test_a_runs_model_brings_the_runs_confusion_png(self):
        # --model RUN (or RUN/model): the heat map comes from RUN/report/ and the card shows it.
        self.push("alice/from-run", model=self.run_dir)
        head = self.hub.commit("alice/from-run", self.hub.head("alice/from-run"))
        self.assertEqual(head.paths, sorted(ARTIFACT + ["confusion.png"]))
        files = self.hub.files("alice/from-run")
        self.assertEqual(files["confusion.png"], read(os.path.join(self.run_dir, "report", "confusion.png")))
        self.assertIn("](confusion.png)", files["README.md"].decode())
        self.push("alice/plain")
        self.assertNotIn("confusion.png", self.hub.files("alice/plain")["README.md"].decode())

    def test_private_is_sent_in_the_create_request(self):
        self.push("alice/secret", "--private")
        body = json.loads(next(x for x in self.hub.requests if x["route"] == "create")["body"])
        self.assertTrue(body.get("private") is True or body.get("visibility") == "private", body)
        self.assertEqual(body.get("type", "model"), "model")
        self.assertEqual((body["name"], body.get("organization")), ("secret", "alice"))
        self.assertTrue(self.hub.repo("alice/secret").private)
        # Its owner pulls it; another user cannot see it (the Hub answers 404, not 403).
        self.pull("alice/secret", os.path.join(self.tmp, "mine"))
        r = self.pull("alice/secret", os.path.join(self.tmp, "theirs"), env=self.env(token=BOB), ok=False)
        self.assertNothingHappened(r, "alice/secret")
        # Without --private nothing asks for a private repo.
        self.hub.clear_log()
        self.push("alice/public")
        body = json.loads(next(x for x in self.hub.requests if x["route"] == "create")["body"])
        self.assertFalse(body.get("private", False) or body.get("visibility") == "private", body)

    def test_bad_token_is_401_and_names_hf_token(self):
        r = self.push("alice/wrn", env=self.env(token="hf_not_a_real_token"), ok=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, re.compile("token", re.I))
        self.assertIn("HF_TOKEN", r.stderr)
        self.assertIsNone(self.hub.repo("alice/wrn"))
        self.assertEqual(self.hub.count("lfs_put") + self.hub.count("commit"), 0, self.hub.routes())
        self.assertTrue(all(x["status"] == 401 for x in self.hub.requests), self.hub.routes())
        self.assertLessEqual(len(self.hub.requests), 2, "a 401 is not retried")

    def test_foreign_repo_is_403_and_names_the_repo(self):
        before = self.hub.head("bob/theirs")
        r = self.push("bob/theirs", ok=False)
        self.assertNothingHappened(r, "bob/theirs")
        self.assertRegex(r.stderr, re.compile("write", re.I))
        self.assertEqual(self.hub.head("bob/theirs"), before)
        self.assertEqual(self.hub.count("lfs_put") + self.hub.count("commit"), 0, self.hub.routes())
        self.assertEqual(self.hub.lfs_objects("bob/theirs"), {})
        # A read-only token of the namespace's owner cannot write either.
        r = self.push("alice/wrn", env=self.env(token=ALICE_READ), ok=False)
        self.assertNothingHappened(r, "alice/wrn")

    def test_pull_of_a_missing_repo_is_404_and_names_it(self):
        out = os.path.join(self.tmp, "nothing")
        r = self.pull("alice/nope", out, ok=False)
        self.assertNothingHappened(r, "alice/nope")
        self.assertTrue(not os.path.exists(out) or os.listdir(out) == [], "a failed pull left files")
        # A missing revision of an existing repo also fails and names it.
        self.push("alice/wrn")
        r = self.pull("alice/wrn", out, "--revision", "no-such-branch", ok=False)
        self.assertNothingHappened(r, "no-such-branch")

    def test_pull_rejects_a_download_that_does_not_match_its_sha256(self):
        self.push("alice/wrn")
        self.hub.corrupt_object("alice/wrn", sha256(os.path.join(self.model, "model.safetensors")))
        out = os.path.join(self.tmp, "corrupt")
        r = self.pull("alice/wrn", out, ok=False)
        self.assertNothingHappened(r, "model.safetensors")
        self.assertTrue(not os.path.exists(out) or os.listdir(out) == [], "a failed pull left files")

    def test_500_twice_on_commit_then_success(self):
        fault = self.hub.fail("commit", 500, times=2)
        t0 = time.time()
        self.push("alice/wrn")
        self.assertEqual((fault.attempts, fault.hits), (3, 2))
        self.assertEqual(len(self.hub.commits("alice/wrn")), 2)  # initial + exactly one
        self.assertPushedArtifact("alice/wrn")
        self.assertLess(time.time() - t0, 60)

    def test_persistent_500_gives_up_after_three_attempts(self):
        fault = self.hub.fail("commit", 500, times=100)
        r = self.push("alice/wrn", ok=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(fault.attempts, 3)
        self.assertIn("500", r.stderr)
        self.assertEqual(len(self.hub.commits("alice/wrn")), 1)

    def test_interrupted_lfs_upload_is_retried(self):
        drop = self.hub.drop("lfs_put", times=1, after=0.5)
        self.push("alice/wrn")
        self.assertEqual(drop.hits, 1)
        self.assertGreaterEqual(drop.attempts, 3)  # the dropped PUT, its retry, the other object's PUT
        puts = [x for x in self.hub.requests if x["route"] == "lfs_put"]
        self.assertEqual(sum(x["dropped"] for x in puts), 1)
        self.assertEqual(sorted(x["status"] for x in puts if not x["dropped"]), [200, 200])
        stored = self.hub.lfs_objects("alice/wrn")
        for name in ("model.safetensors", "model.pt"):
            data = read(os.path.join(self.model, name))
            self.assertEqual(stored[hashlib.sha256(data).hexdigest()], data, name)
        self.assertPushedArtifact("alice/wrn")

    def test_a_dir_that_is_not_an_artifact_makes_no_request(self):
        missing = os.path.join(self.tmp, "missing")
        r = self.push("alice/wrn", model=missing, ok=False)
        self.assertNothingHappened(r, missing)
        half = os.path.join(self.tmp, "half")
        os.makedirs(half)
        shutil.copy(os.path.join(self.model, "config.json"), half)
        r = self.push("alice/wrn", model=half, ok=False)
        self.assertNothingHappened(r, half)
        self.assertEqual(self.hub.requests, [])

    def test_token_from_hf_home_then_hf_token_path(self):
        hf_home = os.path.join(self.tmp, "hf")
        os.makedirs(hf_home)
        with open(os.path.join(hf_home, "token"), "w") as f:
            f.write(ALICE + "\n")
        self.push("alice/wrn", env=self.env(token=None, HF_HOME=hf_home))
        self.assertAllHubRequestsAuthorized()
        # HF_TOKEN takes precedence over the file.
        r = self.push("alice/wrn", env=self.env(token="hf_bogus", HF_HOME=hf_home), ok=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        # HF_TOKEN_PATH names the file directly.
        path = os.path.join(self.tmp, "elsewhere", "my-token")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write(f"  {ALICE}\n")
        self.hub.clear_log()
        out = os.path.join(self.tmp, "via-path")
        self.pull("alice/wrn", out, env=self.env(token=None, HF_TOKEN_PATH=path, HF_HOME=os.path.join(self.tmp, "empty")))
        self.assertAllHubRequestsAuthorized()
        self.assertEqual(read(os.path.join(out, "model.pt")), read(os.path.join(self.model, "model.pt")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
