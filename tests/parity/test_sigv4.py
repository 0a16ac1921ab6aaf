"""Our SigV4 signer against botocore's (Debian's python3-botocore, the signer of the AWS CLI and boto3) on 400
generated S3 requests: every method, keys and query values that need encoding (spaces, unicode, reserved
characters), multipart and listing queries, ranges and metadata headers, session tokens, empty and large bodies,
other regions. The canonical request and the signature must be identical."""
import hashlib
import json
import os
import random
import subprocess
import sys
import unittest
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TOOL = os.environ.get("S3_TOOL", "build/tests/s3_tool")
ALPHABET = "abcXYZ019-_.~ /+=&%?#:@!$'()*,;[]é中ключ"


def random_text(rng, n):
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def make_requests(n, seed=7):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        method = rng.choice(["GET", "PUT", "POST", "DELETE", "HEAD"])
        bucket = rng.choice(["cifar100-sagemaker-data", "b.with.dots", "x1"])
        host = rng.choice([f"{bucket}.s3.us-east-1.amazonaws.com", "127.0.0.1:4568", "s3.eu-west-1.amazonaws.com"])
        key = "/".join(random_text(rng, rng.randint(1, 12)) for _ in range(rng.randint(1, 3)))
        raw_path = ("/" + bucket if host[0].isdigit() or host.startswith("s3.") else "") + "/" + key
        query = rng.choice([[], [("uploads", "")], [("partNumber", str(rng.randint(1, 10000))),
                                                      ("uploadId", random_text(rng, 20))],
                            [("list-type", "2"), ("prefix", random_text(rng, 8)),
                             ("continuation-token", random_text(rng, 16))], [("uploadId", "a/b+c=")]])
        headers = {}
        if rng.random() < 0.3:
            headers["Range"] = f"bytes={rng.randint(0, 99)}-{rng.randint(100, 999)}"
        if rng.random() < 0.3:
            headers["Content-Type"] = rng.choice(["application/octet-stream", "text/plain;  charset=utf-8"])
        if rng.random() < 0.2:
            headers["x-amz-meta-note"] = "  two   spaces  "
        body = b"" if method in ("GET", "HEAD", "DELETE") else os.urandom(rng.choice([0, 1, 1000, 1 << 20]))
        payload = hashlib.sha256(body).hexdigest() if rng.random() < 0.8 else "UNSIGNED-PAYLOAD"
        out.append({"method": method, "host": host, "raw_path": raw_path, "query": query, "headers": headers,
                    "payload_sha256": payload, "key": "AKIAEXAMPLE" + str(i), "secret": random_text(rng, 40),
                    "token": random_text(rng, 30) if rng.random() < 0.4 else "",
                    "region": rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"]), "service": "s3",
                    "time": 1700000000 + rng.randint(0, 10 ** 8)})
    return out


def botocore_sign(r, ours):
    """botocore's canonical request and signature for the request as our client sends it."""
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in r["query"])
    url = f"https://{r['host']}{quote(r['raw_path'], safe='/~')}" + (f"?{qs}" if qs else "")
    headers = dict(r["headers"], Host=r["host"])
    headers.update({k: v for k, v in ours["headers"].items() if k != "Authorization"})
    req = AWSRequest(method=r["method"], url=url, headers=headers)
    req.context["timestamp"] = ours["headers"]["x-amz-date"]
    auth = S3SigV4Auth(Credentials(r["key"], r["secret"], r["token"] or None), "s3", r["region"])
    canonical = auth.canonical_request(req)
    return canonical, auth.signature(auth.string_to_sign(req, canonical), req)


class SigV4(unittest.TestCase):
    def test_same_as_botocore_on_400_requests(self):
        reqs = make_requests(400)
        lines = "\n".join(json.dumps(r) for r in reqs) + "\n"
        p = subprocess.run([TOOL, "sign"], input=lines, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        ours = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual(len(ours), len(reqs))
        for r, o in zip(reqs, ours):
            canonical, signature = botocore_sign(r, o)
            self.assertEqual(o["canonical_request"], canonical, json.dumps(r)[:300])
            self.assertEqual(o["signature"], signature, json.dumps(r)[:300])
            self.assertEqual("x-amz-security-token" in o["headers"], bool(r["token"]))
        print(f"{len(reqs)} requests: identical canonical requests and signatures")


if __name__ == "__main__":
    sys.exit(0 if unittest.main(verbosity=2, exit=False).result.wasSuccessful() else 1)
