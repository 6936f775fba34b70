"""Benchmark: a no-op redeploy by the CLI, against the same work done by Ansible, and the SSH floor.

    uv run --frozen python bench/bench_noop.py [--runs 5] [--environment test] [--version VERSION]

Needs the sandbox up with the environment deployed (`make demo`). Side by side, interleaved (the order
rotates every round), on one machine:

(a) ``technicia-deploy deploy ENV --version V``, V being the release the environment already runs: the
    whole CLI process (wall time), the flow run's own duration (Prefect API), and from a trace of the
    process (bench/_trace/sitecustomize.py, loaded only into it): the time spent in SSH commands and
    connecting (the remote part: the union of those intervals), the commands, the Prefect API requests
    and their 503s; from the VPS's sshd journal the connections accepted; from the API the
    tracking-document artifact versions the run created and the steps that reported a change;
(b) bench/ansible/noop.yml, the same work as an idempotent Ansible playbook (ansible-core in the bench's
    own environment, ~/.cache/technicia-deploy/bench/, never a project dependency), against an extra
    sandbox VPS started from the same image for the bench and removed at the end: converged once, then
    measured no-op runs; one SSH connection per run (ControlMaster + pipelining; the master is closed
    after each run so that every run pays its connection, as the CLI does);
(c) the floor: the read-only commands the CLI's warm-up run sent (not those fed a secret on stdin, nor
    the test alert) sent again from here over one paramiko connection (TCP_NODELAY), one after another.

Then medians and the ratios CLI / Ansible (target <= 0.3) and remote part / floor (target <= 1.5).
Production is refused: the bench redeploys the environment it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLI = str(Path(sys.executable).parent / "technicia-deploy")
TRACE_DIR = ROOT / "bench" / "_trace"
PLAYBOOK = ROOT / "bench" / "ansible" / "noop.yml"
ANSIBLE_CORE = "2.19.14"  # the newest ansible-core whose controller runs on Python 3.11
BENCH_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "technicia-deploy" / "bench"
EXTRA_VPS = "bench-ansible"
APP_DIR = "/opt/technicia"  # application.directory's default, which the sandbox keeps
TRACKING_KEYS = ("tracking-document", "tracking-document-en")
# Commands of the CLI run that the floor does not send: they act (a test alert goes out) rather than read.
NOT_READ_ONLY = (re.compile(r"--test\s+'?alert-test-"),)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def log(line: str) -> None:
    print(line, flush=True)


# --- the machine ------------------------------------------------------------------------------------

def machine() -> dict:
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), 0)
    return {"nproc": os.cpu_count(), "ram_gib": round(mem / 2**20, 1), "load": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}


# --- the sandbox ------------------------------------------------------------------------------------

def docker(*args: str, check: bool = True) -> str:
    from technicia_deploy.sandbox.docker_engine import docker as run

    return run(*args, check=check)


def running_release(container: str) -> tuple[str, str]:
    """(version, sha12) of the release ``current`` names on the VPS."""
    target = docker("exec", container, "readlink", f"{APP_DIR}/current").strip()
    name = target.rstrip("/").rsplit("/", 1)[-1]
    version, _, sha12 = name.rpartition("-")
    if not version or not re.fullmatch(r"[0-9a-f]{12}", sha12):
        raise SystemExit(f"{container}: {APP_DIR}/current names {target!r}, not a release: deploy the environment first")
    return version, sha12


def sshd_counts(container: str, windows: list[tuple[float, float]]) -> list[dict]:
    """Per (start, end) window: the connections sshd accepted and the sessions it started (VERBOSE only)."""
    if not windows:
        return []
    since = int(min(w[0] for w in windows)) - 1
    out = docker("exec", container, "journalctl", "-t", "sshd", "-o", "short-unix", "--no-pager", "--since", f"@{since}")
    events = []
    for line in out.splitlines():
        try:
            stamp = float(line.split(maxsplit=1)[0])
        except (ValueError, IndexError):
            continue
        events.append((stamp, line))
    counts = []
    for start, end in windows:
        inside = [line for stamp, line in events if start - 0.05 <= stamp <= end + 0.5]
        counts.append({"accepted": sum("Accepted publickey" in line for line in inside),
                       "sessions": sum("Starting session: command" in line for line in inside)})
    return counts


# --- (a) the CLI ------------------------------------------------------------------------------------

def children_cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far, their own children included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def endpoint(path: str) -> str:
    return UUID.sub("{id}", path)


def cli_run(args, work: Path, index: str, prefect_url: str) -> dict:
    trace = work / f"cli-{index}.trace.jsonl"
    output = work / f"cli-{index}.log"
    env = {**os.environ, "TECHNICIA_BENCH_TRACE": str(trace), "PREFECT_API_URL": prefect_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TRACE_DIR), os.environ.get("PYTHONPATH")]))}
    started_at = time.time()
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    with open(output, "wb") as out:
        done = subprocess.run([CLI, "deploy", args.environment, "--version", args.version, "--operator", "bench-noop"],
                              cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    ended_at = time.time()
    events = [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []
    ssh = [e for e in events if e["kind"] == "ssh"]
    connects = [e for e in events if e["kind"] == "connect"]
    api_host, api_port = prefect_host(prefect_url)
    api = [e for e in events if e["kind"] == "http" and e["host"] == api_host and e["port"] == api_port]
    result = {
        "rc": done.returncode, "wall": wall, "cpu": cpu, "start": started_at, "end": ended_at, "log": str(output),
        "remote": union([(e["t0"], e["t0"] + e["dur"]) for e in ssh + connects]),
        "ssh_sum": sum(e["dur"] for e in ssh), "commands": len(ssh), "connects_client": len(connects),
        "api_requests": len(api), "api_503": sum(e["status"] == 503 for e in api),
        "api_errors": sum(not isinstance(e["status"], int) or e["status"] >= 400 for e in api),
        "api_time": sum(e["dur"] for e in api),
        "endpoints": Counter(f"{e['method']} {endpoint(e['path'])}" for e in api),
        "endpoint_503": Counter(f"{e['method']} {endpoint(e['path'])}" for e in api if e["status"] == 503),
        "api_other_errors": Counter(f"{e['status']} {e['method']} {endpoint(e['path'])}" for e in api
                                    if e["status"] != 503 and (not isinstance(e["status"], int) or e["status"] >= 400)),
        "ssh_events": ssh, "hook_errors": [e for e in events if e["kind"] == "hook-error"],
    }
    result.update(flow_run_facts(args.environment, started_at))
    if done.returncode != 0:
        tail = "\n".join(output.read_text(errors="replace").strip().splitlines()[-6:])
        log(f"  ! CLI run {index} exited {done.returncode}:\n{tail}")
    return result


def prefect_host(url: str) -> tuple[str, int]:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


def flow_run_facts(environment: str, after: float) -> dict:
    """The flow run the CLI made: duration, steps that changed something, artifacts it created."""
    from prefect import get_client
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.sorting import FlowRunSort

    since = datetime.fromtimestamp(after - 1, tz=timezone.utc)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=["deploy-environment"])),
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[f"env:{environment}"]),
                                            start_time=F.FlowRunFilterStartTime(after_=since)),
            sort=FlowRunSort.START_TIME_ASC, limit=5)
        if not runs:
            return {"flow_run": None}
        run = runs[0]
        ids = F.FlowRunFilter(id=F.FlowRunFilterId(any_=[run.id]))
        tasks = client.read_task_runs(flow_run_filter=ids)
        artifacts = client.read_artifacts(
            artifact_filter=F.ArtifactFilter(flow_run_id=F.ArtifactFilterFlowRunId(any_=[run.id])))
    duration = (run.end_time - run.start_time).total_seconds() if run.end_time and run.start_time else None
    keys = Counter(a.key or "(no key)" for a in artifacts)
    changed = sorted(t.name for t in tasks if t.state and (t.state.message or "").startswith("changed"))
    return {"flow_run": str(run.id), "flow_state": run.state.name if run.state else None, "flow_duration": duration,
            "task_runs": len(tasks), "changed_steps": changed,
            "tracking_versions": sum(keys[k] for k in TRACKING_KEYS), "artifacts": dict(keys)}


# --- (b) Ansible ------------------------------------------------------------------------------------

def ansible_env() -> Path:
    """ansible-core in a virtualenv of the bench's own (made once with uv), never in the project's."""
    venv = BENCH_CACHE / f"ansible-core-{ANSIBLE_CORE}"
    playbook = venv / "bin" / "ansible-playbook"
    if playbook.exists():
        return venv
    uv = shutil.which("uv")
    if not uv:
        raise SystemExit("uv is needed to install ansible-core for the bench (`pip install uv`)")
    log(f"installing ansible-core {ANSIBLE_CORE} into {venv}")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([uv, "venv", "-q", "--python", base, str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"ansible-core=={ANSIBLE_CORE}"],
                   check=True)
    return venv


def env_placeholder() -> str:
    """A .env of the pipeline's variables, placeholders of about the real size (no secret of the sandbox's)."""
    from technicia_deploy.envfile import ENV_VARIABLES

    filler = {"GOOGLE_APPLICATION_CREDENTIALS_JSON": "A" * 2400}
    return "".join(f"{name}={filler.get(name, 'bench-placeholder-' + name.lower())}\n" for name in ENV_VARIABLES)


def ansible_setup(work: Path, vps_info: dict, version: str, sha: str, repository: str) -> dict:
    directory = work / "ansible"
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    # A Unix socket path has at most 107 bytes: the master's socket lives in a short directory.
    sockets = Path(tempfile.mkdtemp(prefix="tdb-cm-", dir="/tmp"))
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"{vps_info['ip']} {vps_info['host_key']}\n")
    control = sockets / "%C"
    ssh_args = (f"-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile={known_hosts} "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o PreferredAuthentications=publickey")
    (directory / "ansible.cfg").write_text(
        "[defaults]\n"
        "inventory = inventory.ini\n"
        "interpreter_python = /usr/bin/python3\n"
        "host_key_checking = True\n"
        "forks = 1\n"
        "retry_files_enabled = False\n"
        f"local_tmp = {directory / 'tmp'}\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = {ssh_args}\n"
        f"control_path = {control}\n".replace("%C", "%%C")
    )
    (directory / "inventory.ini").write_text(
        f"[vps]\n{vps_info['name']} ansible_host={vps_info['ip']} ansible_user={vps_info['admin_user']} "
        f"ansible_ssh_private_key_file={vps_info['private_key']}\n")
    variables = directory / "vars.json"
    variables.touch(mode=0o600)
    variables.write_text(json.dumps({"version": version, "sha": sha, "repository": repository,
                                     "domain": "bench-technicia.exemple.test", "env_content": env_placeholder()}))
    return {"dir": directory, "vars": variables, "control": str(control), "ssh_args": ssh_args, "sockets": sockets}


RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")


def ansible_run(venv: Path, setup: dict, vps_info: dict, work: Path, index: str) -> dict:
    output = work / f"ansible-{index}.log"
    env = {**os.environ, "ANSIBLE_CONFIG": str(setup["dir"] / "ansible.cfg"), "ANSIBLE_HOME": str(setup["dir"] / "home"),
           "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    started_at = time.time()
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    with open(output, "wb") as out:
        done = subprocess.run([str(venv / "bin" / "ansible-playbook"), "-e", f"@{setup['vars']}", str(PLAYBOOK)],
                              cwd=setup["dir"], env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    ended_at = time.time()
    # Close the master connection: the next run opens its own, as every CLI run does.
    subprocess.run(["ssh", "-o", f"ControlPath={setup['control']}", "-O", "exit",
                    f"{vps_info['admin_user']}@{vps_info['ip']}"], capture_output=True)
    text = output.read_text(errors="replace")
    recap = RECAP.search(text)
    ok, changed, unreachable, failed, skipped = (int(x) for x in recap.groups()) if recap else (0, -1, 0, 0, 0)
    if done.returncode != 0:
        log(f"  ! ansible run {index} exited {done.returncode}; see {output}")
    return {"rc": done.returncode, "wall": wall, "cpu": cpu, "start": started_at, "end": ended_at, "ok": ok, "changed": changed,
            "skipped": skipped, "failed": failed + unreachable, "log": str(output)}


# --- (c) the floor ----------------------------------------------------------------------------------

def read_only(events: list[dict], host: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(user, command) pairs the floor sends, and the short text of those it leaves out."""
    kept, left_out = [], []
    for e in events:
        if e["host"] != host:
            continue
        if e["stdin"] or any(p.search(e["command"]) for p in NOT_READ_ONLY):
            left_out.append(" ".join(e["command"].split())[:90])
            continue
        kept.append((e["user"], e["command"]))
    return kept, left_out


def floor_run(host: str, port: int, host_key: str, key_path: str, commands: list[tuple[str, str]]) -> dict:
    """One paramiko connection per user (the CLI's are all the deploy user's), the commands one after another."""
    import base64

    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(key_path)
    key_type, key_b64 = host_key.split()[:2]
    clients: dict[str, paramiko.SSHClient] = {}
    started_at = time.time()
    t0 = time.perf_counter()
    connect_s = 0.0
    failures = 0
    durations: list[float] = []
    try:
        for user, command in commands:
            client = clients.get(user)
            if client is None:
                c0 = time.perf_counter()
                sock = socket.create_connection((host, port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client = paramiko.SSHClient()
                client.get_host_keys().add(host, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)))
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
                client.connect(host, port, user, pkey=key, sock=sock, allow_agent=False, look_for_keys=False)
                clients[user] = client
                connect_s += time.perf_counter() - c0
            c0 = time.perf_counter()
            channel = client.get_transport().open_session()
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            while channel.recv(65536):
                pass
            failures += channel.recv_exit_status() != 0
            channel.close()
            durations.append(time.perf_counter() - c0)
        total = time.perf_counter() - t0
    finally:
        for client in clients.values():
            client.close()
    return {"wall": total, "connect": connect_s, "commands": len(commands), "nonzero": failures,
            "connections": len(clients), "start": started_at, "end": time.time(),
            "per_command": [[label(c), d] for (_, c), d in zip(commands, durations)]}


SECTION = re.compile(r"echo '\S+ ([a-z0-9_.-]+)'")


def label(command: str) -> str:
    """A short name for a command: its fact sections when it is a fact script, else its start."""
    sections = SECTION.findall(command)
    if sections:
        return "facts: " + ",".join(sections[:5]) + ("…" if len(sections) > 5 else "")
    text = " ".join(command.split())
    text = re.sub(r"^sudo -n (-u \S+ )?bash -c '?", "", text)
    return text[:60]


# --- the report -------------------------------------------------------------------------------------

def med(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec=".2f", unit="") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def report(rounds: list[dict], info: dict) -> dict:
    cli = [r["cli"] for r in rounds if r["cli"]["rc"] == 0]
    ans = [r["ansible"] for r in rounds if r["ansible"]["rc"] == 0]
    flo = [r["floor"] for r in rounds]
    log("")
    log("round | CLI wall |  CPU  | flow run | remote | SSH cmds | conns srv | API req | 503 | tracking v. | changed steps "
        "|| Ansible wall |  CPU  | changed | conns srv | sessions srv || floor | cmds")
    for i, r in enumerate(rounds, 1):
        c, a, f = r["cli"], r["ansible"], r["floor"]
        log(f"{i:5d} | {fmt(c['wall'], '.1f', ' s'):>8} | {fmt(c['cpu'], '.1f', ' s'):>5} | "
            f"{fmt(c.get('flow_duration'), '.1f', ' s'):>8} | "
            f"{fmt(c['remote'], '.2f', ' s'):>6} | {c['commands']:8d} | {c.get('sshd_accepted', '-')!s:>9} | "
            f"{c['api_requests']:7d} | {c['api_503']:3d} | {c.get('tracking_versions', '-')!s:>11} | "
            f"{len(c.get('changed_steps') or [])!s:>13} || {fmt(a['wall'], '.1f', ' s'):>12} | {fmt(a['cpu'], '.1f', ' s'):>5} | "
            f"{a['changed']:7d} | "
            f"{a.get('sshd_accepted', '-')!s:>9} | {a.get('sshd_sessions', '-')!s:>12} || {fmt(f['wall'], '.2f', ' s'):>5} | "
            f"{f['commands']:4d}" + ("" if c["rc"] == 0 else f"   (CLI exit {c['rc']}: not in the medians)"))
    summary = {
        "cli_wall": med(c["wall"] for c in cli), "cli_cpu": med(c["cpu"] for c in cli),
        "ansible_cpu": med(a["cpu"] for a in ans), "flow_duration": med(c.get("flow_duration") for c in cli),
        "remote": med(c["remote"] for c in cli), "ssh_sum": med(c["ssh_sum"] for c in cli),
        "commands": med(c["commands"] for c in cli), "connections": med(c.get("sshd_accepted") for c in cli),
        "api_requests": med(c["api_requests"] for c in cli), "api_503": med(c["api_503"] for c in cli),
        "api_time": med(c["api_time"] for c in cli),
        "tracking_versions": med(c.get("tracking_versions") for c in cli),
        "ansible_wall": med(a["wall"] for a in ans), "ansible_connections": med(a.get("sshd_accepted") for a in ans),
        "ansible_sessions": med(a.get("sshd_sessions") for a in ans),
        "floor": med(f["wall"] for f in flo), "floor_connect": med(f["connect"] for f in flo),
        "floor_commands": med(f["commands"] for f in flo),
    }
    summary["cli_over_ansible"] = (summary["cli_wall"] / summary["ansible_wall"]
                                   if summary["cli_wall"] and summary["ansible_wall"] else None)
    summary["remote_over_floor"] = (summary["remote"] / summary["floor"] if summary["remote"] and summary["floor"] else None)
    s = summary
    log("")
    log(f"medians over {len(cli)} CLI run(s), {len(ans)} Ansible run(s), {len(flo)} floor run(s):")
    log(f"  (a) CLI `deploy {info['environment']} --version {info['version']}`: wall {fmt(s['cli_wall'], '.2f', ' s')}, "
        f"flow run (API) {fmt(s['flow_duration'], '.2f', ' s')}, CPU {fmt(s['cli_cpu'], '.2f', ' s')}")
    log(f"      remote part (SSH commands + connecting, union) {fmt(s['remote'], '.2f', ' s')} "
        f"(sum of command times {fmt(s['ssh_sum'], '.2f', ' s')}); {fmt(s['commands'], '.0f')} commands, "
        f"{fmt(s['connections'], '.0f')} SSH connection(s) accepted by sshd")
    log(f"      Prefect API: {fmt(s['api_requests'], '.0f')} requests ({fmt(s['api_time'], '.2f', ' s')} summed), "
        f"{fmt(s['api_503'], '.0f')} answered 503; tracking-document versions created: {fmt(s['tracking_versions'], '.0f')}")
    log(f"  (b) Ansible no-op: wall {fmt(s['ansible_wall'], '.2f', ' s')}, CPU here {fmt(s['ansible_cpu'], '.2f', ' s')}; "
        f"{fmt(s['ansible_connections'], '.0f')} "
        f"connection(s), {fmt(s['ansible_sessions'], '.0f')} remote commands (sshd sessions)")
    log(f"  (c) floor: {fmt(s['floor'], '.3f', ' s')} for {fmt(s['floor_commands'], '.0f')} commands over one "
        f"connection (connecting {fmt(s['floor_connect'], '.3f', ' s')})")
    log(f"  CLI / Ansible        = {fmt(s['cli_over_ansible'], '.2f')}   (target <= 0.3)")
    log(f"  remote part / floor  = {fmt(s['remote_over_floor'], '.2f')}   (target <= 1.5)")
    if cli:
        per = Counter()
        per503 = Counter()
        for c in cli:
            per.update(c["endpoints"])
            per503.update(c["endpoint_503"])
        log("  Prefect API requests per CLI run, by endpoint (mean):")
        for name, count in per.most_common(12):
            extra = f", 503: {per503[name] / len(cli):.1f}" if per503[name] else ""
            log(f"    {count / len(cli):6.1f}  {name}{extra}")
    if cli and flo:
        by_cli: dict[str, list[float]] = {}
        for c in cli:
            for e in c["ssh_events"]:
                by_cli.setdefault(label(e["command"]), []).append(e["dur"])
        by_floor: dict[str, list[float]] = {}
        for f in flo:
            for name, seconds in f["per_command"]:
                by_floor.setdefault(name, []).append(seconds)
        log("  SSH commands, seconds per run (mean; CLI / floor), slowest first; xN: times per run:")
        for name, values in sorted(by_cli.items(), key=lambda kv: -sum(kv[1])):
            per_run_cli = sum(values) / len(cli)
            floor = by_floor.get(name)
            per_run_floor = sum(floor) / len(flo) if floor else None
            log(f"    {per_run_cli:6.3f} / {fmt(per_run_floor, '6.3f')}  x{len(values) / len(cli):.0f}  {name}")
    others = Counter()
    for c in cli:
        others.update(c.get("api_other_errors") or {})
    if others:
        log("  other Prefect API errors per CLI run (mean): "
            + ", ".join(f"{name} ({count / len(cli):.1f})" for name, count in others.most_common()))
    changed = Counter(step for c in cli for step in c.get("changed_steps") or [])
    if changed:
        log("  steps that reported a change in some CLI run: " + ", ".join(f"{k} ({v}x)" for k, v in changed.items()))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default %(default)s)")
    parser.add_argument("--environment", default="test", choices=("test", "staging"),
                        help="the deployed environment to redeploy (default %(default)s)")
    parser.add_argument("--version", default=None, help="default: the release the environment runs now")
    parser.add_argument("--keep-vps", action="store_true",
                        help="keep the Ansible VPS at the end and reuse a kept one (skips its first convergence)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = parser.parse_args()

    from technicia_deploy.cli import server
    from technicia_deploy.sandbox import vps
    from technicia_deploy.sandbox.state import SandboxState

    state = SandboxState.load()
    target = (state.data.get("vps") or {}).get(args.environment)
    app = state.data.get("app") or {}
    if not target or not app.get("repository"):
        raise SystemExit(f"no sandbox with {args.environment} deployed in {state.dir}: run `make demo` first")
    prefect_url = server.use()
    running, sha12 = running_release(target["container"])
    args.version = args.version or running
    sha = (app.get("commits") or {}).get(args.version)
    if not sha:
        raise SystemExit(f"the sandbox repository has no version {args.version!r}")
    if not sha.startswith(sha12) and args.version == running:
        raise SystemExit(f"{args.environment} runs {running} ({sha12}) but the repository says {sha[:12]}")
    info = {"environment": args.environment, "version": args.version, "sha": sha, "prefect": prefect_url,
            "machine_start": machine()}
    log(f"machine: {info['machine_start']['nproc']} CPUs, {info['machine_start']['ram_gib']} GiB RAM, "
        f"load {' '.join(map(str, info['machine_start']['load']))}")
    log(f"{args.environment} runs {args.version} ({sha[:12]}) on {target['ip']}; Prefect {prefect_url}")

    venv = ansible_env()
    BENCH_CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="noop-", dir=BENCH_CACHE))
    extra = vps.extra_info(state, EXTRA_VPS) if args.keep_vps else None
    finished = False
    setup = None
    try:
        if extra:
            log(f"reusing the Ansible VPS {extra['container']} at {extra['ip']}")
        else:
            extra = vps.start_extra(state, EXTRA_VPS, log=log)
        # sshd says "Starting session: command" per command at VERBOSE: the server's own command count.
        docker("exec", extra["container"], "sh", "-c", "echo 'LogLevel VERBOSE' > /etc/ssh/sshd_config.d/20-bench.conf "
               "&& systemctl reload ssh")
        setup = ansible_setup(work, extra, args.version, sha, app["repository"])
        t0 = time.perf_counter()
        converge = ansible_run(venv, setup, extra, work, "converge")
        log(f"Ansible: converged {extra['name']} in {time.perf_counter() - t0:.1f} s "
            f"(changed={converge['changed']}, exit {converge['rc']})")
        if converge["rc"] != 0:
            raise SystemExit(f"the playbook did not converge: see {converge['log']}")
        log("containers on the Ansible VPS: " + ", ".join(
            docker("exec", extra["container"], "docker", "ps", "--format", "{{.Names}} ({{.Status}})").strip().splitlines()))

        log("warm-up CLI run (not measured): the commands the floor sends")
        warm = cli_run(args, work, "warmup", prefect_url)
        if warm["rc"] != 0:
            raise SystemExit(f"the warm-up CLI run failed: see {warm['log']}")
        if warm["hook_errors"]:
            log(f"  ! trace hook: {warm['hook_errors']}")
        commands, left_out = read_only(warm["ssh_events"], target["ip"])
        log(f"  {warm['wall']:.1f} s, {warm['commands']} SSH commands; the floor sends {len(commands)} of them "
            f"(left out: {len(left_out)}: {'; '.join(left_out) or 'none'}), then those of the latest CLI run")
        if warm.get("changed_steps"):
            log(f"  ! steps that reported a change on the warm-up run: {', '.join(warm['changed_steps'])}")

        key_path = state.data["keys"]["deploy_private_key"]
        rounds = []
        for i in range(args.runs):
            order = ["cli", "ansible", "floor"]
            order = order[i % 3:] + order[:i % 3]
            current: dict = {}
            for what in order:
                if what == "cli":
                    current["cli"] = cli_run(args, work, str(i + 1), prefect_url)
                    if current["cli"]["rc"] == 0 and current["cli"]["commands"]:
                        # The code under test may change between runs: the floor follows the latest run.
                        commands, left_out = read_only(current["cli"]["ssh_events"], target["ip"])
                elif what == "ansible":
                    current["ansible"] = ansible_run(venv, setup, extra, work, str(i + 1))
                else:
                    current["floor"] = floor_run(target["ip"], 22, target["host_key"], key_path, commands)
            c, a, f = current["cli"], current["ansible"], current["floor"]
            for run, counts in zip((c, f), sshd_counts(target["container"], [(c["start"], c["end"]), (f["start"], f["end"])])):
                run["sshd_accepted"] = counts["accepted"]
            counts, = sshd_counts(extra["container"], [(a["start"], a["end"])])
            a["sshd_accepted"], a["sshd_sessions"] = counts["accepted"], counts["sessions"]
            log(f"round {i + 1}/{args.runs} ({' → '.join(order)}): CLI {c['wall']:.1f} s (remote {c['remote']:.2f} s, "
                f"{c['commands']} cmds, {c['api_requests']} API req, {c['api_503']}×503), Ansible {a['wall']:.1f} s "
                f"(changed={a['changed']}), floor {f['wall']:.2f} s")
            rounds.append(current)
        info["machine_end"] = machine()
        summary = report(rounds, info)
        log(f"load average at the end: {' '.join(map(str, info['machine_end']['load']))}")
        if args.json:
            for r in rounds:
                r["cli"]["ssh_events"] = [{"label": label(e["command"]), "dur": e["dur"], "exit": e["exit"],
                                           "stdin": e["stdin"]} for e in r["cli"]["ssh_events"]]
            args.json.write_text(json.dumps({"info": info, "summary": summary, "rounds": rounds,
                                             "floor_left_out": left_out}, indent=2, default=str))
            log(f"figures written to {args.json}")
        finished = True
    finally:
        if extra and not args.keep_vps:
            vps.remove_extra(state, EXTRA_VPS)
            log(f"removed the Ansible VPS {extra['container']}")
        if setup:
            shutil.rmtree(setup["sockets"], ignore_errors=True)
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"the runs' logs and traces are kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
