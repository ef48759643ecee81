#!/usr/bin/env python3
"""The scale-out layout on one machine: three server nodes, two workers, nginx, PostgreSQL, S3.

    scripts/cluster up   [--state-dir DIR] [--nodes 3] [--port PORT] ...
    scripts/cluster down [--state-dir DIR]
    scripts/cluster status [--state-dir DIR]
    scripts/cluster kill NAME [--signal KILL|TERM|STOP|CONT] [--state-dir DIR]
    scripts/cluster start NAME [--state-dir DIR]

``up`` takes the database and the blob storage from the settings a node reads:
``DATABASE_URL`` (else it creates a fresh database on the PostgreSQL server at
``CLUSTER_POSTGRES_ADMIN_URL``, default the local one, and drops it on ``down``) and
``RELEASE_SERVER_STORAGE_BACKEND=s3`` with ``RELEASE_SERVER_S3_*`` (else it starts moto's
standalone S3 server on loopback). Every other ``RELEASE_SERVER_*`` setting in its
environment is handed to every node and worker, through ``DIR/node.env`` (the file the
systemd units read as ``EnvironmentFile``).

The processes are started with the command lines of the shipped systemd units
(``deploy/systemd/release-server-node@.service`` for each node, with its port as the
instance, ``release-server-worker.service`` on the first two nodes), and nginx with
the shipped site (``deploy/nginx/release-server-site.conf.in``, rendered with the ports and
folders, including ``deploy/nginx/release-server.conf``). The TUF repository is exported
by the lease-holding worker to ``DIR/srv/tuf`` and served by nginx from there.

``DIR/cluster.json`` names nginx's URL, each node's URL and every process with its pid
(``null`` once stopped); ``DIR/admin-credentials`` holds the first admin's login and API
token (mode 0600). Logs are in ``DIR/logs/``. ``kill`` signals one process's group (a node
is gunicorn's master and its workers), ``start`` starts a stopped one again as before.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UNIT_DIR = ROOT / "deploy" / "systemd"
NODE_UNIT = UNIT_DIR / "release-server-node@.service"
WORKER_UNIT = UNIT_DIR / "release-server-worker.service"
SITE_TEMPLATE = ROOT / "deploy" / "nginx" / "release-server-site.conf.in"
SNIPPET = ROOT / "deploy" / "nginx" / "release-server.conf"
#: Where the units expect the installation and the state; replaced by this checkout and DIR.
UNIT_PREFIX = "/opt/release-server"
UNIT_STATE = "/var/lib/release-server"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_STATE_DIR = ROOT / "cluster-state"


class ClusterError(Exception):
    """A problem to report in one line (and exit 1)."""


# ---------------------------------------------------------------- small helpers

def say(msg: str) -> None:
    print(f"scripts/cluster: {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe: Any, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise ClusterError(f"{what} exited at start (status {proc.returncode}):\n{tail}")
        try:
            if probe():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise ClusterError(f"{what} did not come up within {timeout:.0f} s" + (f" (log: {log})" if log else ""))


def http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
        return resp.status == 200


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie (exited, not yet reaped by its new parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_state(state_dir: Path) -> dict:
    path = state_dir / "cluster.json"
    if not path.exists():
        raise ClusterError(f"no cluster in {state_dir} (cluster.json is missing); start one with 'up'")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- the shipped units

def unit_service(path: Path) -> dict[str, list[str]]:
    """The ``[Service]`` settings of a unit file, each key with all its values in order."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit_command(value: str, bin_dir: Path, instance: str, state_dir: Path) -> list[str]:
    """A unit's ``Exec*=`` line as it runs here: this checkout's venv, ``%i``, DIR for the state."""
    value = value.lstrip("-@:+!")
    value = value.replace(f"{UNIT_PREFIX}/.venv/bin/", f"{bin_dir}/").replace("%i", instance)
    value = value.replace(UNIT_STATE, str(state_dir))
    return shlex.split(value)


def unit_environment(service: dict[str, list[str]], instance: str, state_dir: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in service.get("Environment", []):
        for item in shlex.split(value):
            key, _, val = item.partition("=")
            env[key] = val.replace("%i", instance).replace(UNIT_STATE, str(state_dir))
    return env


def set_option(cmd: list[str], option: str, value: str) -> list[str]:
    cmd = list(cmd)
    if option in cmd:
        cmd[cmd.index(option) + 1] = value
    else:
        cmd += [option, value]
    return cmd


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


def write_env_file(path: Path, env: dict[str, str]) -> None:
    for key, value in env.items():
        if "\n" in value:
            raise ClusterError(f"{key}: a setting for the nodes cannot contain a line break")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# settings every node and worker reads (systemd: EnvironmentFile=)\n")
        for key in sorted(env):
            fh.write(f"{key}={env[key]}\n")


def process_env(state_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """This machine's environment without release-server settings, then the unit's own, then node.env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_") and k != "DATABASE_URL"}
    env.update(extra)  # as systemd does: EnvironmentFile= wins over Environment=
    if (state_dir / "node.env").exists():  # not yet for the S3 server started before it is written
        env.update(read_env_file(state_dir / "node.env"))
    env["PYTHONPATH"] = str(ROOT)
    return env


# ---------------------------------------------------------------- processes

def spawn(proc: dict, state_dir: Path) -> int:
    log = state_dir / "logs" / f"{proc['name']}.log"
    instance = proc.get("env", {}).get("RELEASE_SERVER_INSTANCE_PATH")
    if instance:  # what the unit's ExecStartPre (release-server init) would have created
        Path(instance).mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"--- started {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(proc['cmd'])}\n".encode())
        fh.flush()
        p = subprocess.Popen(proc["cmd"], env=process_env(state_dir, proc.get("env", {})), cwd=str(ROOT),
                             stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    proc["pid"] = p.pid
    proc["_popen"] = p
    return p.pid


def wait_ready(proc: dict, state_dir: Path, timeout: float = 90) -> None:
    log = state_dir / "logs" / f"{proc['name']}.log"
    if proc.get("url"):
        wait_for(proc["name"], lambda: http_ok(proc["url"] + "/healthz"), timeout, proc.get("_popen"), log)


def stop(proc: dict, sig: int = signal.SIGTERM, grace: float = 30) -> None:
    pid = proc.get("pid")
    if alive(pid):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while alive(pid):
                time.sleep(0.05)
    try:  # the process group's other members (gunicorn workers) go with it
        os.killpg(pid, signal.SIGKILL) if pid else None
    except (ProcessLookupError, PermissionError):
        pass
    proc["pid"] = None


def public(state: dict) -> dict:
    return {k: ([{kk: vv for kk, vv in p.items() if not kk.startswith("_")} for p in v] if k == "processes" else v)
            for k, v in state.items()}


# ---------------------------------------------------------------- up

def database_url(state: dict) -> str:
    given = os.environ.get("DATABASE_URL")
    if given:
        return given
    import sqlalchemy as sa

    admin_url = os.environ.get("CLUSTER_POSTGRES_ADMIN_URL", DEFAULT_ADMIN_URL)
    name = f"rs_cluster_{uuid.uuid4().hex[:10]}"
    try:
        engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
    except Exception as e:  # noqa: BLE001 - reported in one line
        raise ClusterError(f"no DATABASE_URL given and PostgreSQL at {admin_url} is not usable "
                           f"({e.__class__.__name__}); start PostgreSQL or set DATABASE_URL") from None
    state["created_database"] = {"admin_url": admin_url, "name": name}
    return admin_url.rsplit("/", 1)[0] + "/" + name


def storage_settings(state: dict, state_dir: Path) -> dict[str, str]:
    from release_server.storage.s3 import S3Storage

    if os.environ.get("RELEASE_SERVER_STORAGE_BACKEND", "").lower() == "s3":
        settings = {k: v for k, v in os.environ.items() if k.startswith("RELEASE_SERVER_S3_")}
        settings["RELEASE_SERVER_STORAGE_BACKEND"] = "s3"
    else:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise ClusterError("no S3 store given (RELEASE_SERVER_STORAGE_BACKEND=s3) and moto[server] is not "
                               "installed to start one (it comes with the dev extra)") from None
        port = free_port()
        proc = {"name": "s3", "kind": "s3", "cmd": [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                   "-p", str(port)],
                "env": {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}, "port": port}
        state["processes"].append(proc)
        spawn(proc, state_dir)
        url = f"http://127.0.0.1:{port}"
        wait_for("moto's S3 server", lambda: http_ok(url + "/moto-api/"), 60, proc["_popen"],
                 state_dir / "logs" / "s3.log")
        settings = {"RELEASE_SERVER_STORAGE_BACKEND": "s3", "RELEASE_SERVER_S3_ENDPOINT_URL": url,
                    "RELEASE_SERVER_S3_BUCKET": "release-server", "RELEASE_SERVER_S3_ACCESS_KEY_ID": "test",
                    "RELEASE_SERVER_S3_SECRET_ACCESS_KEY": "test", "RELEASE_SERVER_S3_REGION": "us-east-1"}
    S3Storage(bucket=settings.get("RELEASE_SERVER_S3_BUCKET", "release-server"),
              endpoint_url=settings.get("RELEASE_SERVER_S3_ENDPOINT_URL"),
              region=settings.get("RELEASE_SERVER_S3_REGION", "us-east-1"),
              access_key_id=settings.get("RELEASE_SERVER_S3_ACCESS_KEY_ID"),
              secret_access_key=settings.get("RELEASE_SERVER_S3_SECRET_ACCESS_KEY"),
              prefix=settings.get("RELEASE_SERVER_S3_PREFIX", ""), create_bucket=True)
    return settings


def render_nginx(state_dir: Path, port: int, node_ports: list[int]) -> Path:
    work = state_dir / "nginx"
    work.mkdir(parents=True, exist_ok=True)
    upstreams = "\n    ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in node_ports)
    values = {"UPSTREAM_SERVERS": upstreams, "LISTEN": f"127.0.0.1:{port}", "ROOT": str(state_dir / "srv"),
              "BLOBS": str(state_dir / "blobs"), "SNIPPET": str(SNIPPET)}
    lines = []
    for line in SITE_TEMPLATE.read_text().splitlines():
        if not line.lstrip().startswith("#"):  # the header comment keeps its placeholders
            for key, value in values.items():
                line = line.replace(f"@{key}@", value)
        lines.append(line)
    site = "\n".join(lines) + "\n"
    left = re.findall(r"@[A-Z_]+@", "\n".join(ln for ln in lines if not ln.lstrip().startswith("#")))
    if left:
        raise ClusterError(f"{SITE_TEMPLATE}: placeholders left unrendered: {', '.join(sorted(set(left)))}")
    (work / "site.conf").write_text(site)
    from release_server.nginx_conf import write_main_config

    return write_main_config(work, f"include {work}/site.conf;", error_log=state_dir / "logs" / "nginx-error.log",
                             workers=2, connections=4096)


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not found:
        raise ClusterError("nginx is not installed (apt-get install nginx)")
    return found


def up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    if (state_dir / "cluster.json").exists():
        old = json.loads((state_dir / "cluster.json").read_text())
        if any(alive(p.get("pid")) for p in old.get("processes", [])):
            raise ClusterError(f"a cluster is already running from {state_dir}; 'down' it first")
    nginx = nginx_binary()
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    for d in ("srv/tuf", "keys", "blobs"):
        (state_dir / d).mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    port = args.port or free_port()
    nginx_url = f"http://127.0.0.1:{port}"
    state: dict[str, Any] = {"state": "starting", "state_dir": str(state_dir), "nginx": nginx_url, "nodes": [],
                             "processes": []}
    try:
        env = {k: v for k, v in os.environ.items() if k.startswith("RELEASE_SERVER_")}
        env.pop("RELEASE_SERVER_INSTANCE_PATH", None)
        env["DATABASE_URL"] = database_url(state)
        env.update(storage_settings(state, state_dir))
        env.setdefault("RELEASE_SERVER_SECRET_KEY", secrets.token_urlsafe(48))  # one for all: sessions, CSRF
        env.setdefault("RELEASE_SERVER_TUF_KEY_DIR", str(state_dir / "keys"))  # the online keys, shared
        env.setdefault("RELEASE_SERVER_TUF_EXPORT_DEST", str(state_dir / "srv" / "tuf"))
        env.setdefault("RELEASE_SERVER_TUF_EXPORT_INTERVAL", str(args.export_interval))
        env.setdefault("RELEASE_SERVER_STORAGE_PATH", str(state_dir / "blobs"))
        env.setdefault("RELEASE_SERVER_PUBLIC_URL", nginx_url)
        env.setdefault("WORKERS", str(args.node_workers))
        env.setdefault("THREADS", str(args.threads))
        env.setdefault("ACCESS_LOG", "")
        write_env_file(state_dir / "node.env", env)
        state["database_url"] = env["DATABASE_URL"]
        state["storage"] = {k: v for k, v in env.items() if k.startswith("RELEASE_SERVER_S3_")
                            and "SECRET" not in k}

        node_unit, worker_unit = unit_service(NODE_UNIT), unit_service(WORKER_UNIT)
        node_ports = [free_port() for _ in range(args.nodes)]
        # The units' ExecStartPre (migrate, first admin) once, then the offline root ceremony of a trial.
        first = str(node_ports[0])
        first_env = unit_environment(node_unit, first, state_dir)
        release_server = str(bin_dir / "release-server")
        steps = [unit_command(v, bin_dir, first, state_dir) for v in node_unit.get("ExecStartPre", [])]
        steps += [[release_server, "keys", "init-root", "--out", str(state_dir / "root-keys"), "--no-passphrase",
                   "--if-missing"],
                  [release_server, "tuf", "bootstrap", "--if-needed", str(state_dir / "root-keys" / "1.root.json")]]
        for cmd in steps:
            out = subprocess.run(cmd, env=process_env(state_dir, first_env), cwd=str(ROOT), capture_output=True,
                                 text=True, timeout=300)
            with open(state_dir / "logs" / "setup.log", "a") as fh:
                fh.write(f"$ {shlex.join(cmd)}\n{out.stdout}{out.stderr}\n")
            if out.returncode != 0:
                raise ClusterError(f"{shlex.join(cmd)} failed:\n{(out.stdout + out.stderr)[-2000:]}")
            if "API token:" in out.stdout:
                fd = os.open(state_dir / "admin-credentials", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(out.stdout)
        state["admin_credentials"] = str(state_dir / "admin-credentials")
        state["root_json"] = str(state_dir / "root-keys" / "1.root.json")

        for i, p in enumerate(node_ports):
            name = f"node-{i + 1}"
            proc = {"name": name, "kind": "node", "port": p, "url": f"http://127.0.0.1:{p}",
                    "cmd": unit_command(node_unit["ExecStart"][0], bin_dir, str(p), state_dir),
                    "env": unit_environment(node_unit, str(p), state_dir)}
            state["processes"].append(proc)
            state["nodes"].append({"name": name, "url": proc["url"], "port": p})
            spawn(proc, state_dir)
        for i in range(min(args.workers, args.nodes)):
            name = f"worker-{i + 1}"
            cmd = unit_command(worker_unit["ExecStart"][0], bin_dir, name, state_dir)
            cmd = set_option(set_option(cmd, "--tick", str(args.tick)), "--lease-seconds", str(args.lease_seconds))
            wenv = unit_environment(worker_unit, name, state_dir)
            wenv["RELEASE_SERVER_INSTANCE_PATH"] = str(state_dir / f"worker-{i + 1}")
            proc = {"name": name, "kind": "worker", "node": f"node-{i + 1}", "cmd": cmd, "env": wenv}
            state["processes"].append(proc)
            spawn(proc, state_dir)
        conf = render_nginx(state_dir, port, node_ports)
        proc = {"name": "nginx", "kind": "nginx", "port": port, "url": nginx_url,
                "cmd": [nginx, "-c", str(conf), "-p", str(state_dir / "nginx"), "-e",
                        str(state_dir / "logs" / "nginx-error.log")], "env": {}}
        state["processes"].append(proc)
        spawn(proc, state_dir)
        write_json(state_dir / "cluster.json", public(state))
        for proc in state["processes"]:
            wait_ready(proc, state_dir)
        # the lease holder's first export: until then nginx has no TUF repository to serve
        if args.workers:
            wait_for("the first TUF export", lambda: (state_dir / "srv/tuf/metadata/timestamp.json").exists(), 90)
        for proc in state["processes"]:
            if proc.get("_popen") is not None and proc["_popen"].poll() is not None:
                raise ClusterError(f"{proc['name']} exited (see {state_dir}/logs/{proc['name']}.log)")
        state["state"] = "up"
        write_json(state_dir / "cluster.json", public(state))
    except BaseException:
        for proc in reversed(state["processes"]):
            stop(proc, grace=10)
        drop_database(state)
        state["state"] = "failed"
        write_json(state_dir / "cluster.json", public(state))
        raise
    say(f"up: nginx {nginx_url}; " + ", ".join(f"{n['name']} {n['url']}" for n in state["nodes"]))
    say(f"state, URLs and pids: {state_dir / 'cluster.json'}; logs: {state_dir / 'logs'}")
    return 0


# ---------------------------------------------------------------- down, status, kill, start

def drop_database(state: dict) -> None:
    created = state.get("created_database")
    if not created:
        return
    import sqlalchemy as sa

    engine = sa.create_engine(created["admin_url"], isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{created["name"]}" WITH (FORCE)'))
    finally:
        engine.dispose()
    state["created_database"] = None


def down(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    state = read_state(state_dir)
    # nginx and the workers first, then the nodes, then the store; each group stops in parallel
    for kinds in (("nginx", "worker"), ("node",), ("s3",)):
        group = [p for p in state["processes"] if p["kind"] in kinds]
        for proc in group:
            if alive(proc.get("pid")):
                try:
                    os.killpg(proc["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in group:
            stop(proc)
    drop_database(state)
    state["state"] = "down"
    write_json(state_dir / "cluster.json", state)
    say(f"down: every process of {state_dir} stopped")
    return 0


def find(state: dict, name: str) -> dict:
    for proc in state["processes"]:
        if proc["name"] == name:
            return proc
    raise ClusterError(f"no process named {name!r}; there are: {', '.join(p['name'] for p in state['processes'])}")


def kill(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    state = read_state(state_dir)
    proc = find(state, args.name)
    sig = getattr(signal, f"SIG{args.signal.upper()}", None)
    if sig is None:
        raise ClusterError(f"--signal: unknown signal {args.signal!r}")
    if not alive(proc.get("pid")):
        raise ClusterError(f"{args.name} is not running")
    if sig in (signal.SIGSTOP, signal.SIGCONT):
        os.killpg(proc["pid"], sig)
    else:
        stop(proc, sig)
    write_json(state_dir / "cluster.json", state)
    say(f"{args.name}: sent SIG{args.signal.upper()}")
    return 0


def start(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    state = read_state(state_dir)
    proc = find(state, args.name)
    if alive(proc.get("pid")):
        raise ClusterError(f"{args.name} is already running (pid {proc['pid']})")
    spawn(proc, state_dir)
    wait_ready(proc, state_dir)
    write_json(state_dir / "cluster.json", public(state))
    say(f"{args.name}: started (pid {proc['pid']})")
    return 0


def status(args: argparse.Namespace) -> int:
    state = read_state(args.state_dir.resolve())
    print(f"cluster {state['state']}: nginx {state['nginx']}")
    for proc in state["processes"]:
        print(f"  {proc['name']:<10} {'running' if alive(proc.get('pid')) else 'stopped':<8} "
              f"pid {proc.get('pid') or '-':<8} {proc.get('url', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                       help="folder for cluster.json, logs, keys and the TUF export (default: cluster-state/)")
        return p

    p = with_dir(sub.add_parser("up", help="start the layout"))
    p.add_argument("--nodes", type=int, default=3, choices=range(1, 10))
    p.add_argument("--workers", type=int, default=2, choices=range(0, 10), help="workers, one per node from the first")
    p.add_argument("--port", type=int, default=0, help="nginx's port (default: a free one)")
    p.add_argument("--node-workers", type=int, default=2, help="gunicorn processes per node")
    p.add_argument("--threads", type=int, default=8, help="threads per gunicorn process")
    p.add_argument("--tick", type=float, default=1.0, help="worker tick (seconds)")
    p.add_argument("--lease-seconds", type=float, default=10.0, help="worker lease time (seconds)")
    p.add_argument("--export-interval", type=int, default=2, help="seconds between TUF exports")
    with_dir(sub.add_parser("down", help="stop every process (and drop the database it created)"))
    with_dir(sub.add_parser("status", help="which processes run"))
    p = with_dir(sub.add_parser("kill", help="signal one process (node-N, worker-N, nginx, s3)"))
    p.add_argument("name")
    p.add_argument("--signal", default="KILL")
    p = with_dir(sub.add_parser("start", help="start a stopped process again"))
    p.add_argument("name")
    args = ap.parse_args(argv)
    if args.command == "up" and args.tick >= args.lease_seconds:
        ap.error("--tick must be shorter than --lease-seconds")
    sys.path.insert(0, str(ROOT))
    try:
        return {"up": up, "down": down, "status": status, "kill": kill, "start": start}[args.command](args)
    except ClusterError as e:
        print(f"scripts/cluster: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
