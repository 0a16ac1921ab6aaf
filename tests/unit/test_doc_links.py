#!/usr/bin/env python3
"""Every relative link in README.md and docs/*.md reaches a file of the repository, and every #anchor a
heading of that file (GitHub's slugs), so moving a section cannot leave a dead link behind."""
import glob
import os
import re
import sys
import unittest

SOURCE = os.path.abspath(os.environ.get("SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    with open(path) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # '#' lines in code blocks are not headings
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, re.M)}


def links(path):
    with open(path) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


class DocLinks(unittest.TestCase):
    def test_slugs_follow_github(self):
        self.assertEqual(slug("The two builds: LibTorch 2.15 with CUDA (default) and Debian's 1.13"),
                         "the-two-builds-libtorch-215-with-cuda-default-and-debians-113")
        self.assertEqual(slug("`cifar100 push` and `cifar100 pull`"), "cifar100-push-and-cifar100-pull")

    def test_every_relative_link_resolves(self):
        pages = [os.path.join(SOURCE, "README.md")] + sorted(glob.glob(os.path.join(SOURCE, "docs", "*.md")))
        self.assertGreater(len(pages), 10)
        checked, dead = 0, []
        for page in pages:
            for target in links(page):
                if re.match(r"[a-z]+:", target):
                    continue  # http:, https:, mailto:
                name, _, anchor = target.partition("#")
                path = os.path.normpath(os.path.join(os.path.dirname(page), name)) if name else page
                where = f"{os.path.relpath(page, SOURCE)}: ({target})"
                checked += 1
                if not os.path.exists(path):
                    dead.append(f"{where}: no file {os.path.relpath(path, SOURCE)}")
                elif anchor and (not path.endswith(".md") or anchor not in anchors(path)):
                    dead.append(f"{where}: no heading '{anchor}' in {os.path.relpath(path, SOURCE)}")
        self.assertGreater(checked, 30)
        self.assertEqual(dead, [])


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
