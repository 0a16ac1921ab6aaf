"""The web page of `cifar100 serve` in a real browser (Debian's chromium, headless): the page loads from the
server, its self-test draws an image on a canvas and submits it through the same code path as a dropped
file, and the top-5 classes appear as rows with bars and percentages. Checked on the rendered DOM."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import TempDirTest  # noqa: E402
from test_serve import DUMP, Server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser(TempDirTest):
    def test_page_classifies_an_image(self):
        self.assertIsNotNone(CHROMIUM, "chromium is not installed (scripts/setup-debian.sh installs it)")
        subprocess.run([DUMP, "model", "10", "1", self.tmp], check=True, capture_output=True)
        s = Server(os.path.join(self.tmp, "model"))
        try:
            s.wait_ready()
            profile = tempfile.mkdtemp(prefix="cifar100-chromium-")
            r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                                "--dump-dom", f"http://127.0.0.1:{s.port}/?selftest"],
                               capture_output=True, text=True, timeout=120)
            shutil.rmtree(profile, ignore_errors=True)
            dom = r.stdout
            self.assertIn("<h1>cifar100</h1>", dom, r.stderr[-2000:])
            rows = re.findall(r'<div class="row"><span class="name">([^<]+)</span><span class="bar" '
                              r'style="width: (\d+)px;"></span><span class="prob">([0-9.]+)%</span></div>', dom)
            self.assertEqual(len(rows), 5, dom[-3000:])
            probs = [float(p) for _, _, p in rows]
            self.assertEqual(probs, sorted(probs, reverse=True))
            self.assertLessEqual(sum(probs), 100.5)
            with open(os.path.join(self.tmp, "model", "config.json")) as f:
                names = set(json.load(f)["class_names"])
            self.assertTrue(all(n in names for n, _, _ in rows), rows)  # real class names, from the artifact
            self.assertIn('id="status" class="">done<', dom)
            # The server logged the browser's request.
            self.assertTrue(any('"path":"/invocations"' in l and '"status":200' in l for l in s.lines), s.lines)
            print(f"\nbrowser: top-5 shown {[(n, p) for n, _, p in rows]}", file=sys.stderr)
        finally:
            self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
