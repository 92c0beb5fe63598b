"""The C extensions built with AddressSanitizer and UndefinedBehaviorSanitizer, and Python run on them.

Why one place: the tests of each C file (tests/test_native_tracker.py, test_lone_kernels.py,
test_json_records.py) prove it clean the same way: rebuild it with -fsanitize=address,undefined
into the test's temporary directory, load that build in a separate interpreter (the sanitizer
runtimes preloaded: the interpreter itself is not built with them) in place of the in-place
extension, run real work on it and find no sanitizer report. Where gcc or its runtimes are
missing, or the build fails, the test skips and says why. Nothing outlives the test: the builds
are in its tmp_path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONNTRACK = ["dsrdiag/track/_conntrack.c", "dsrdiag/track/_smtpfollow.c", "dsrdiag/track/_storepack.c",
             "dsrdiag/track/_factsobserve.c", "dsrdiag/track/_selection.c"]
"""The sources of the _conntrack extension (setup.py's list): the tests that rebuild it name these."""

FLAGS = ("-shared", "-fPIC", "-std=c99", "-O1", "-g", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined")
"""Undefined behaviour is fatal (no recovery): the first report ends the run."""


class Sanitized(NamedTuple):
    """Sanitized builds in `folder`, one per module (dotted name -> file name), and the runtimes to preload."""

    folder: Path
    modules: dict[str, str]
    runtimes: list[str]


def build(folder: Path, extensions: dict[str, list[str]]) -> Sanitized:
    """Build each extension (its dotted module name -> its C sources, relative to the repository)
    with the sanitizers into `folder`; skip the test when that cannot be done here."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc: the sanitized build needs it")
    runtimes = [subprocess.run([gcc, f"-print-file-name={lib}"], capture_output=True, text=True, timeout=60).stdout.strip()
                for lib in ("libasan.so", "libubsan.so")]
    if not all(Path(r).is_absolute() and Path(r).exists() for r in runtimes):
        pytest.skip("gcc has no ASan/UBSan runtime here")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    modules = {}
    for dotted, sources in extensions.items():
        name = dotted.rpartition(".")[2]
        built = subprocess.run([gcc, *FLAGS, f"-I{sysconfig.get_paths()['include']}", *(str(ROOT / s) for s in sources),
                                "-o", str(folder / (name + suffix))], capture_output=True, text=True, timeout=300)
        if built.returncode != 0:
            pytest.skip(f"the sanitized build of {name} failed: {built.stderr[-300:]}")
        modules[dotted] = name
    return Sanitized(folder, modules, runtimes)


def run(s: Sanitized, code: str, *args: str, timeout: float, malloc: bool = False) -> subprocess.CompletedProcess:
    """Run `code` (its sys.argv[1:] = args) in a separate interpreter in which the sanitized builds
    stand in for the extensions, and which first prints where each was loaded from. `malloc`: every
    allocation of the interpreter through ASan's malloc (PYTHONMALLOC=malloc), so that an overrun of
    a Python object is seen too, at a cost in time."""
    preamble = [f"import sys\nsys.path.insert(0, {str(s.folder)!r})"]
    for dotted, name in s.modules.items():
        preamble.append(f"import {name}\nsys.modules[{dotted!r}] = {name}\nprint('sanitized:', {name}.__file__)")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LD_PRELOAD": ":".join(s.runtimes),
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    if malloc:
        env["PYTHONMALLOC"] = "malloc"
    return subprocess.run([sys.executable, "-c", "\n".join(preamble) + "\n" + code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT))


def run_module_tests(s: Sanitized, test_file: str, basetemp: Path, *, timeout: float,
                     malloc: bool = False) -> subprocess.CompletedProcess:
    """Run every test of `test_file` but the sanitizer ones on the sanitized builds; assert that they
    all pass, on those builds, with no sanitizer report."""
    code = ("import pytest\nsys.exit(pytest.main(['-p', 'no:cacheprovider', '-q', '-x', sys.argv[1], '-k', 'not sanitizer',"
            " '--basetemp', sys.argv[2]]))")
    p = run(s, code, test_file, str(basetemp), timeout=timeout, malloc=malloc)
    assert " passed" in p.stdout, (p.stdout[-2000:], p.stderr[-3000:])
    assert_clean(s, p)
    return p


def assert_clean(s: Sanitized, p: subprocess.CompletedProcess) -> None:
    """The sanitized run ended well, on the sanitized builds (each loaded from s.folder), and no
    sanitizer said anything."""
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    assert p.stdout.count(f"sanitized: {s.folder}/") == len(s.modules), p.stdout[-2000:]
    assert "runtime error" not in p.stderr + p.stdout and "AddressSanitizer" not in p.stderr, p.stderr[-3000:]
