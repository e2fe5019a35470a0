"""The sdist is complete: a test file runs from an unpacked sdist with its fixtures, and it holds
the documents and the plugins' READMEs."""

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_test_file_runs_from_the_sdist(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the sdist is built from the tracked files")
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # what a commit would hold
    files = subprocess.run(listed, cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    src = tmp_path / "src"
    for name in filter(None, files):
        rel = Path(name.decode())
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    dist = tmp_path / "dist"
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_sdist(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", build, str(dist)], cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (sdist,) = dist.glob("msde_bench-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "unpacked", filter="data")
    for need in ("tests/conftest.py", "tests/__init__.py", "tests/fake_slurm/sbatch", "CONTRIBUTING.md",
                 "CITATION.cff", "CHANGELOG.md", "plugins/msde_scn/README.md", "msde_bench/py.typed"):
        assert need in names, f"the sdist lacks {need}"
    (top,) = (tmp_path / "unpacked").iterdir()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_protocol.py"],
                         cwd=top, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "passed" in run.stdout and "error" not in run.stdout.lower().split("passed")[-1]


def test_the_citation_and_the_changelog_name_the_packages_version():
    """CITATION.cff's version and the newest CHANGELOG entry are the package's version (0.8.0 shipped
    with CITATION.cff still saying 0.7.0)."""
    import re

    from msde_bench import __version__

    citation = re.search(r"^version: (\S+)$", (ROOT / "CITATION.cff").read_text(encoding="utf-8"), re.M)
    assert citation is not None and citation.group(1) == __version__
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert newest is not None and newest.group(1) == __version__
