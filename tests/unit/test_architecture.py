#!/usr/bin/env python3
"""The README's architecture table is the truth about the libraries: every CMake library of the project is in
it, each links exactly the project libraries the table says it uses, and no source file includes a header
from a folder outside what its library may use (the table's uses, followed transitively)."""
import glob
import os
import re
import sys
import unittest

SOURCE = os.environ.get("SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read(*parts):
    with open(os.path.join(SOURCE, *parts)) as f:
        return f.read()


def architecture_table(readme):
    """{library: (folder, {used libraries})} from the README's ```text block that starts with 'library'."""
    block = re.search(r"```text\n(library\s+folder\s+uses\n.*?)```", readme, re.S)
    if block is None:
        raise AssertionError("README.md has no ```text block starting 'library folder uses'")
    table = {}
    for line in block.group(1).splitlines()[1:]:
        fields = line.split()
        if not fields:
            continue
        name, folder, uses = fields[0], fields[1], fields[2:]
        table[name] = (folder, set() if uses == ["-"] else set(uses))
    return table


def cmake_libraries(cmake):
    """{target: {project libraries it links}} for the project's libraries and the engine, from CMakeLists.txt."""
    targets = set(re.findall(r"add_library\((cifar_\w+)", cmake)) | set(re.findall(r"add_executable\((cifar100-engine)", cmake))
    targets.discard("cifar_torch_pch")  # the shared precompiled header, not a library of the design
    links = {t: set() for t in targets}
    for target, body in re.findall(r"target_link_libraries\(([\w-]+)(.*?)\)", cmake, re.S):
        if target in links:
            links[target] |= {w for w in body.split() if w in targets}
    return links


def closure(table, name):
    seen, todo = set(), [name]
    while todo:
        for used in table[todo.pop()][1]:
            if used not in seen:
                seen.add(used)
                todo.append(used)
    return seen


def folder_key(folder):
    """'src/data' -> 'data', 'cli' -> 'cli': how #include lines name a folder."""
    return folder.split("/")[-1]


class Architecture(unittest.TestCase):
    def setUp(self):
        self.table = architecture_table(read("README.md"))
        self.links = cmake_libraries(read("CMakeLists.txt"))

    def test_every_library_is_in_the_table(self):
        self.assertGreater(len(self.links), 8)
        self.assertEqual(set(self.table), set(self.links), "README's architecture table against CMakeLists.txt")

    def test_each_library_links_what_the_table_says(self):
        for name, (_, uses) in self.table.items():
            self.assertEqual(self.links.get(name), uses, f"{name}: CMakeLists.txt links (left), the README says (right)")

    def test_includes_stay_inside_what_a_library_may_use(self):
        folders = {}
        for name, (folder, _) in self.table.items():
            allowed = {folder_key(folder)} | {folder_key(self.table[u][0]) for u in closure(self.table, name)}
            folders.setdefault(folder, set()).update(allowed)
        known = {folder_key(f) for f in folders}
        checked, wrong = 0, []
        for folder, allowed in folders.items():
            files = glob.glob(os.path.join(SOURCE, folder, "*.cpp")) + glob.glob(os.path.join(SOURCE, folder, "*.h"))
            self.assertTrue(files, f"no sources in {folder}")
            for path in files:
                with open(path) as f:
                    for n, line in enumerate(f, 1):
                        m = re.match(r'\s*#\s*include\s+"(\w+)/', line)
                        if m and m.group(1) in known:
                            checked += 1
                            if m.group(1) not in allowed:
                                wrong.append(f"{os.path.relpath(path, SOURCE)}:{n} includes {m.group(1)}/")
        self.assertGreater(checked, 100)
        self.assertEqual(wrong, [], "includes from a folder the library may not use (README's architecture table)")

    def test_a_wrong_table_is_caught(self):
        # The checks above can fail: a table that drops a use or adds one disagrees with CMakeLists.txt.
        table = dict(self.table)
        folder, uses = table["cifar_serve"]
        table["cifar_serve"] = (folder, uses - {"cifar_model"})
        self.assertNotEqual(self.links["cifar_serve"], table["cifar_serve"][1])
        self.assertNotIn("model", {folder_key(table[u][0]) for u in closure(table, "cifar_serve")})


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
