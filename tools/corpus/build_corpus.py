#!/usr/bin/env python3
"""Builds the training corpus of the demo model from Debian packages only.

Prose: fortunes (fortune cookies), dict-gcide (GNU Collaborative International Dictionary of
English), dict-jargon / jargon-text (the Jargon File), dict-foldoc (Free On-line Dictionary of
Computing), python3.11-doc (the Python documentation, HTML -> text), debian-reference-en,
gnu-standards. Code: the Python 3.11 standard library and its test suite (libpython3.11-stdlib, -minimal,
-testsuite) and pure-Python packages (docutils, pygments, sphinx, jinja2, setuptools).

The packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a
scratch directory (nothing is installed). Documents are files (a dictionary is cut into
entries grouped by headword initial, fortunes by file); exact duplicates are dropped; the
train / validation / test split is by document, from a hash of its name, so it is stable
across runs. Writes OUT/{train,valid,test}.{prose,code}.txt and OUT/manifest.json (package
names and versions, document counts, bytes).

Usage: python3 tools/corpus/build_corpus.py OUT_DIR [--scratch DIR]
"""
import argparse
import gzip
import hashlib
import html.parser
import json
import os
import re
import subprocess
import sys
import tempfile

PROSE_PACKAGES = ["fortunes", "fortunes-min", "dict-gcide", "jargon-text", "dict-foldoc",
                  "python3.11-doc", "debian-reference-en", "gnu-standards"]
CODE_PACKAGES = ["libpython3.11-stdlib", "libpython3.11-minimal", "libpython3.11-testsuite", "python3-docutils",
                 "python3-pygments", "python3-sphinx", "python3-jinja2", "python3-setuptools"]
SPLITS = (("test", 5), ("valid", 5), ("train", 90))  # percent of documents
SEPARATOR = "\n\n"


def run(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def fetch(packages, scratch):
    """Downloads and unpacks each package; returns {name: version}."""
    versions = {}
    debs = os.path.join(scratch, "debs")
    os.makedirs(debs, exist_ok=True)
    for name in packages:
        before = set(os.listdir(debs))
        run(["apt-get", "download", name], cwd=debs)
        new = sorted(set(os.listdir(debs)) - before) or [f for f in os.listdir(debs) if f.startswith(name + "_")]
        deb = os.path.join(debs, new[0])
        versions[name] = run(["dpkg-deb", "-f", deb, "Version"]).strip()
        run(["dpkg-deb", "-x", deb, os.path.join(scratch, "root")])
    return versions


class TextOfHtml(html.parser.HTMLParser):
    SKIP = {"script", "style", "nav", "head"}
    BLOCK = {"p", "div", "li", "pre", "h1", "h2", "h3", "h4", "dt", "dd", "tr", "br", "section"}

    def __init__(self):
        super().__init__()
        self.out, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)

    def text(self):
        t = "".join(self.out)
        t = re.sub(r"[ \t]+\n", "\n", t)
        t = re.sub(r"\n{3,}", "\n\n", t)
        return t.strip()


def read(path):
    data = open(path, "rb").read()
    if path.endswith(".gz") or path.endswith(".dz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def prose_documents(root):
    """Yields (name, text) for every prose document under the unpacked tree."""
    share = os.path.join(root, "usr/share")
    for d in ("games/fortunes",):
        base = os.path.join(share, d)
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                if f.endswith(".dat") or f.endswith(".u8"):
                    continue
                p = os.path.join(dirpath, f)
                if os.path.islink(p):
                    continue
                # One fortune per '%' line; keep the file as one document.
                text = "\n\n".join(x.strip() for x in read(p).split("\n%\n") if x.strip())
                yield "fortunes/" + f, text
    dictd = os.path.join(share, "dictd")
    if os.path.isdir(dictd):
        for f in sorted(os.listdir(dictd)):
            if not f.endswith(".dict.dz"):
                continue
            text = read(os.path.join(dictd, f))
            # Cut into documents of ~64 KB at entry boundaries (blank lines).
            chunk, size, n = [], 0, 0
            for entry in text.split("\n\n"):
                chunk.append(entry)
                size += len(entry)
                if size > 65536:
                    yield f"dictd/{f}/{n}", "\n\n".join(chunk)
                    chunk, size, n = [], 0, n + 1
            if chunk:
                yield f"dictd/{f}/{n}", "\n\n".join(chunk)
    for sub in ("doc/python3.11-doc/html", "debian-reference", "doc/debian-reference-en", "jargon", "doc/jargon-text"):
        base = os.path.join(share, sub)
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                p = os.path.join(dirpath, f)
                if os.path.islink(p):
                    continue
                rel = os.path.relpath(p, share)
                if f.endswith((".html", ".html.gz", ".htm")):
                    parser = TextOfHtml()
                    parser.feed(read(p))
                    yield rel, parser.text()
                elif f.endswith((".txt", ".txt.gz")) or (sub == "jargon" and "." not in f):
                    yield rel, read(p)
    info = os.path.join(share, "info")
    if os.path.isdir(info):
        for f in sorted(os.listdir(info)):
            if f.startswith("standards") and f.endswith(".gz"):
                yield "info/" + f, re.sub(r"[\x00-\x08\x1f]", "", read(os.path.join(info, f)))


def code_documents(root):
    for lib in (os.path.join(root, "usr/lib/python3.11"), os.path.join(root, "usr/lib/python3/dist-packages")):
        for dirpath, dirs, files in os.walk(lib):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "site-packages", "dist-packages"))
            for f in sorted(files):
                p = os.path.join(dirpath, f)
                if f.endswith(".py") and not os.path.islink(p):
                    yield os.path.relpath(p, root), read(p)


def split_of(name):
    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100
    acc = 0
    for split, pct in SPLITS:
        acc += pct
        if h < acc:
            return split
    return "train"


def write(out, kind, documents):
    seen = set()
    files = {s: open(os.path.join(out, f"{s}.{kind}.txt"), "w", encoding="utf-8") for s, _ in SPLITS}
    stats = {s: {"documents": 0, "bytes": 0} for s, _ in SPLITS}
    dups = 0
    for name, text in documents:
        text = text.strip()
        if len(text) < 64:
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            dups += 1
            continue
        seen.add(digest)
        s = split_of(name)
        files[s].write(text + SEPARATOR)
        stats[s]["documents"] += 1
        stats[s]["bytes"] += len(text.encode())
    for f in files.values():
        f.close()
    stats["duplicates_dropped"] = dups
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--scratch", help="where packages are downloaded and unpacked (default: a temp dir)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    scratch = args.scratch or tempfile.mkdtemp(prefix="nemotron_corpus_")
    versions = fetch(PROSE_PACKAGES + CODE_PACKAGES, scratch)
    root = os.path.join(scratch, "root")
    manifest = {
        "packages": versions,
        "split_percent": dict(SPLITS),
        "prose": write(args.out, "prose", prose_documents(root)),
        "code": write(args.out, "code", code_documents(root)),
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    json.dump(manifest, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
