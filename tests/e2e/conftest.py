"""Shared fixtures of the end-to-end tests: the dxhub binary, the corpus of
real DICOM files nobody here wrote, the oracles (pydicom, DCMTK), and a
scratch directory.

Environment (set by tests/run-all; defaults for a bare `python3 -m pytest tests/e2e`
from the repository root):
  DXHUB         the binary (default: build/dxhub)
  DXHUB_CORPUS  the corpus (default: ../shared/corpus beside the repository)
"""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

os.environ.setdefault("TCP_NODELAY", "1")  # DCMTK's tools stall on Nagle's algorithm without it


def _dxhub_path():
    return Path(os.environ.get("DXHUB") or REPO / "build" / "dxhub")


def _corpus_path():
    return Path(os.environ.get("DXHUB_CORPUS") or (REPO.parent / "shared" / "corpus")).resolve()


def corpus_dicom_files():
    """Every DICOM file of the corpus: all of dicom/ (recursively) and
    ecg/dicom/*, as (path, id relative to the corpus) sorted by id."""
    root = _corpus_path()
    files = []
    if (root / "dicom").is_dir():
        files += [p for p in (root / "dicom").rglob("*") if p.is_file()]
    if (root / "ecg" / "dicom").is_dir():
        files += [p for p in (root / "ecg" / "dicom").iterdir() if p.is_file()]
    return sorted(((p, p.relative_to(root).as_posix()) for p in files), key=lambda t: t[1])


def pytest_generate_tests(metafunc):
    """A test taking `dicom_file` runs once per corpus file, named by its
    path relative to the corpus (so a failure names the file)."""
    if "dicom_file" in metafunc.fixturenames:
        files = corpus_dicom_files()
        metafunc.parametrize("dicom_file", [p for p, _ in files], ids=[i for _, i in files])


@pytest.fixture(scope="session")
def dxhub():
    p = _dxhub_path()
    if not os.access(p, os.X_OK):
        pytest.fail(f"dxhub binary not found at {p} (run `make` first or set DXHUB)")
    return str(p)


@pytest.fixture(scope="session")
def corpus():
    root = _corpus_path()
    if not (root / "dicom").is_dir():
        pytest.fail(f"corpus not found at {root} (set DXHUB_CORPUS)")
    return root


@pytest.fixture(scope="session")
def corpus_files(corpus):
    """[(path, relative id)] of every corpus DICOM file."""
    return corpus_dicom_files()


@pytest.fixture
def tmp(tmp_path):
    """A fresh scratch directory (pathlib.Path), removed by pytest later."""
    return tmp_path


def rel(path):
    """A corpus file's id: its path relative to the corpus root."""
    return Path(path).resolve().relative_to(_corpus_path()).as_posix()


def run(args, timeout=60, **kw):
    """Run a process, capture bytes; never raises on a non-zero status."""
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def run_many(arg_lists, timeout=120, workers=None):
    """Run many independent processes, a few at a time (their cost is mostly
    start-up latency), and return their CompletedProcess in the same order."""
    from concurrent.futures import ThreadPoolExecutor
    workers = workers or max(4, 2 * (os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda a: run(a, timeout=timeout), arg_lists))


class PerFile:
    """One file's share of a run over many files: exit status 0 or 2 as the
    file's own run would give, its output, its stderr line(s)."""

    def __init__(self, stdout, stderr):
        self.stdout, self.stderr = stdout, stderr
        self.returncode = 2 if stderr else 0


def split_dcmdump(r, files):
    """Split `dcmdump +F` over many files at its "# dcmdump (k/n): path"
    headers.  A file failed when dcmdump's stderr has an error line naming it
    ("E: ... reading file: PATH") or its section shows no data set."""
    out = r.stdout.decode("utf-8", "replace").splitlines(keepends=True)
    errors = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.startswith("E:")]
    sections, cur, n = {}, None, len(files)
    heads = {f"# dcmdump ({k + 1}/{n}): {p}": p for k, p in enumerate(files)}
    for line in out:
        if line.rstrip("\n") in heads:
            cur = heads[line.rstrip("\n")]
            sections[cur] = ""
        elif cur is not None:
            sections[cur] += line
    res = {}
    for p in files:
        text = sections.get(p, "")
        err = [ln for ln in errors if ln.endswith(f"reading file: {p}")]
        if not err and "# Dicom-Data-Set" not in text:
            err = ["dcmdump shows no data set"]
        res[p] = PerFile(text.encode("utf-8"), "\n".join(err).encode("utf-8"))
    return res
