"""Benchmark: the FIRST deployment of a fresh VPS by the pipeline, against Ansible's first run of the same playbook.

    uv run --frozen python bench/bench_first_deploy.py [--version v1.0.0] [--order ansible-first] [--json FILE]

Needs the sandbox up (`make demo` or `technicia-deploy sandbox up` + blocks). DESTRUCTIVE for staging: it reinstalls
staging's VPS and deploys it again from nothing (staging only; test and production are never touched), and leaves it
deployed on the version it measured. In one run, one after the other (``--order``):

(a) the pipeline: ``technicia-deploy deploy staging --version V --rebuild-server --load-test --alert-test`` — the VPS
    is reinstalled through the OVH API (the sandbox's emulator replaces its container and volumes from the VPS image:
    same address and host key, only the deploy key authorized, nothing installed), then every step runs on the fresh system. Measured:
    the CLI's wall time, each step's task run start/end from the Prefect API (phases: server, services, https,
    checks, monitoring), and from a trace of the process (bench/_trace/sitecustomize.py): the SSH commands, the
    first successful SSH connection after the reinstall (where the reinstall ends inside ``server.os``), and the
    command that writes the ``.env`` in ``services.api_keys`` (timed on its own, apart from the smoke calls);
(b) Ansible: bench/ansible/noop.yml (it converges a fresh VPS) run once on an extra sandbox VPS started for the bench
    from the same image (so the same apt sources: checked), with bench/ansible/callback_plugins/task_timings.py
    giving each task's start/end, grouped by the pipeline step it stands for.

The ratio compares the equivalent work only: server.firewall, server.docker, services.clone, services.api_keys
(its SSH part: the smoke calls have no Ansible counterpart) and services.deploy against the playbook's tasks for
them. Everything else (the reinstall, server.os's hardening, HTTPS with certbot, the post-deployment tests, the
monitoring; Ansible's connection + facts and its nginx tasks) is shown apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_noop as noop  # noqa: E402 - the no-op bench's sandbox, Ansible and trace helpers
from technicia_deploy.sandbox import vps  # noqa: E402

ROOT = noop.ROOT
ENVIRONMENT = "staging"  # the only environment this bench may reinstall
EXTRA_VPS = "bench-first"
CALLBACKS = ROOT / "bench" / "ansible" / "callback_plugins"
PHASES = ("server", "services", "https", "checks", "monitoring")
# The pipeline steps that the playbook also does: the ratio is over these only.
EQUIVALENT = ("server.firewall", "server.docker", "services.clone", "services.api_keys", "services.deploy")
# Playbook task name (prefix) -> the pipeline step it stands for; "ansible.setup" and "https.nginx" are not in the ratio.
ANSIBLE_TASKS = (
    ("Gathering Facts", "ansible.setup"),
    ("ufw ", "server.firewall"), ("public ports open", "server.firewall"), ("DOCKER-USER rules", "server.firewall"),
    ("reload ufw", "server.firewall"),
    ("Docker ", "server.docker"), ("deploy user", "server.docker"),
    ("nginx ", "https.nginx"), ("Debian's default site", "https.nginx"), ("reload nginx", "https.nginx"),
    ("git installed", "services.clone"), ("application directory", "services.clone"),
    ("release checked out", "services.clone"),
    (".env", "services.api_keys"),
    ("services up", "services.deploy"),
)
log = noop.log


# --- pure parts (tests/unit/test_bench_first_deploy.py) ---------------------------------------------

def ansible_step(task: str) -> str:
    """The pipeline step a playbook task stands for ("ansible.other" when none)."""
    for prefix, step in ANSIBLE_TASKS:
        if task.startswith(prefix):
            return step
    return "ansible.other"


def ansible_by_step(timings: list[dict]) -> dict[str, float]:
    """Seconds per pipeline step from the callback's task lines (a task's time: its start to its last result)."""
    totals: dict[str, float] = {}
    for t in timings:
        step = ansible_step(t["task"])
        totals[step] = totals.get(step, 0.0) + max(0.0, t["end"] - t["start"])
    return totals


def step_windows(task_runs: list[dict]) -> dict[str, tuple[float, float]]:
    """Step id -> (start, end) in epoch seconds, from the flow run's task runs (the last attempt of a retried one)."""
    windows: dict[str, tuple[float, float]] = {}
    for t in sorted(task_runs, key=lambda t: t["start"] or 0):
        if t["start"] is not None and t["end"] is not None:
            windows[t["name"]] = (t["start"], t["end"])
    return windows


def phase_windows(steps: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Phase -> (first step start, last step end): the post-deployment tests run together, so not a sum."""
    phases: dict[str, tuple[float, float]] = {}
    for step_id, (start, end) in steps.items():
        phase = step_id.split(".", 1)[0]
        low, high = phases.get(phase, (start, end))
        phases[phase] = (min(low, start), max(high, end))
    return phases


def inside(events: list[dict], window: tuple[float, float]) -> list[dict]:
    start, end = window
    return [e for e in events if start - 0.01 <= e["t0"] and e["t0"] + e["dur"] <= end + 0.01]


def env_write(events: list[dict]) -> dict | None:
    """The command that writes the .env: fed the text on stdin, ``cat >`` into a file named .env (a temp name of it)."""
    for e in events:
        command = e.get("command") or ""
        if e.get("stdin") and "cat > " in command and ".env" in command:
            return e
    return None


def reinstall_end(connects: list[dict], after: float) -> float | None:
    """End of the first successful SSH connection opened after ``after`` (the reinstalled VPS answering)."""
    ok = [e["t0"] + e["dur"] for e in connects if e["t0"] >= after and e.get("ok", True)]
    return min(ok) if ok else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# --- the machine while it runs -----------------------------------------------------------------------

class LoadSampler(threading.Thread):
    """The 1-minute load average every few seconds, for the report."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self._stop_event = every, [], threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop_event.wait(self.every)

    def stop(self) -> dict:
        self._stop_event.set()
        self.join(timeout=self.every + 1)
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 2), "median": round(statistics.median(s), 2), "max": round(max(s), 2),
                "samples": len(s)}


def apt_fingerprint(container: str) -> dict:
    """What decides where a VPS's apt gets packages: its sources and apt configuration, and the image it came from."""
    text = noop.docker("exec", container, "sh", "-c",
                       "cat /etc/apt/sources.list /etc/apt/sources.list.d/* /etc/apt/apt.conf.d/* 2>/dev/null; true")
    uris = sorted({line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("URIs:")})
    return {"image": noop.docker("inspect", "-f", "{{.Image}}", container).strip(),
            "apt_sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "uris": uris}


def packages(container: str) -> int | None:
    out = noop.docker("exec", container, "dpkg-query", "-W", "-f", "${db:Status-Status}\\n", check=False)
    return sum(line.strip() == "installed" for line in out.splitlines()) or None


# --- (a) the pipeline ----------------------------------------------------------------------------------

def task_runs(flow_run_id: str) -> list[dict]:
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[flow_run_id])))
    return [{"name": t.name, "start": t.start_time.timestamp() if t.start_time else None,
             "end": t.end_time.timestamp() if t.end_time else None, "state": t.state.name if t.state else None,
             "message": (t.state.message or "")[:160] if t.state else ""} for t in runs]


def pipeline_run(version: str, work: Path, prefect_url: str) -> dict:
    trace = work / "cli.trace.jsonl"
    output = work / "cli.log"
    env = {**os.environ, "TECHNICIA_BENCH_TRACE": str(trace), "PREFECT_API_URL": prefect_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(noop.TRACE_DIR), os.environ.get("PYTHONPATH")]))}
    started = time.time()
    cpu0 = noop.children_cpu()
    t0 = time.perf_counter()
    with open(output, "wb") as out:
        done = subprocess.run([noop.CLI, "deploy", ENVIRONMENT, "--version", version, "--rebuild-server",
                               "--load-test", "--alert-test", "--operator", "bench-first-deploy"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    result = {"rc": done.returncode, "wall": wall, "cpu": noop.children_cpu() - cpu0, "start": started,
              "end": time.time(), "log": str(output)}
    events = [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []
    ssh = [e for e in events if e["kind"] == "ssh"]
    connects = [e for e in events if e["kind"] == "connect"]
    result.update(noop.flow_run_facts(ENVIRONMENT, started))
    runs = task_runs(result["flow_run"]) if result.get("flow_run") else []
    steps = step_windows(runs)
    result["task_runs_raw"] = runs
    result["steps"] = {k: v[1] - v[0] for k, v in steps.items()}
    result["phases"] = {k: v[1] - v[0] for k, v in phase_windows(steps).items()}
    result["ssh_commands"] = len(ssh)
    result["connects"] = len(connects)
    result["remote"] = noop.union([(e["t0"], e["t0"] + e["dur"]) for e in ssh + connects])
    result["hook_errors"] = [e for e in events if e["kind"] == "hook-error"]
    if "server.os" in steps:
        back = reinstall_end(connects, steps["server.os"][0])
        if back:
            result["reinstall"] = back - steps["server.os"][0]
            result["server_os_after_reinstall"] = steps["server.os"][1] - back
    if "services.api_keys" in steps:
        window = steps["services.api_keys"]
        in_step = inside(ssh, window)
        write = env_write(in_step)
        result["api_keys"] = {
            "step": window[1] - window[0],
            "env_write": write["dur"] if write else None, "env_write_exit": write["exit"] if write else None,
            "env_write_command": noop.label(write["command"]) if write else None,
            "ssh": noop.union([(e["t0"], e["t0"] + e["dur"]) for e in in_step]), "ssh_commands": len(in_step),
        }
        result["api_keys"]["rest"] = result["api_keys"]["step"] - result["api_keys"]["ssh"]
    result["ssh_by_step"] = {step_id: {"commands": len(inside(ssh, w)), "seconds": sum(e["dur"] for e in inside(ssh, w)),
                                        "each": [[noop.label(e["command"]), round(e["dur"], 3), e["exit"]]
                                                 for e in inside(ssh, w)]}
                             for step_id, w in steps.items()}
    if done.returncode != 0:
        tail = "\n".join(output.read_text(errors="replace").strip().splitlines()[-8:])
        log(f"  ! the CLI exited {done.returncode}:\n{tail}")
    return result


# --- (b) Ansible -----------------------------------------------------------------------------------------

def ansible_first_run(venv: Path, work: Path, state, version: str, sha: str, repository: str) -> dict:
    t0 = time.perf_counter()
    extra = vps.start_extra(state, EXTRA_VPS, log=log)
    started = time.perf_counter() - t0
    apt = apt_fingerprint(extra["container"])  # as delivered, before the playbook touches it
    setup = noop.ansible_setup(work, extra, version, sha, repository)
    timings = work / "ansible.timings.jsonl"
    saved = {k: os.environ.get(k) for k in ("ANSIBLE_CALLBACKS_ENABLED", "ANSIBLE_CALLBACK_PLUGINS",
                                            "TECHNICIA_BENCH_ANSIBLE_TIMINGS")}
    os.environ.update({"ANSIBLE_CALLBACKS_ENABLED": "task_timings", "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
                       "TECHNICIA_BENCH_ANSIBLE_TIMINGS": str(timings)})
    try:
        run = noop.ansible_run(venv, setup, extra, work, "first")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(setup["sockets"], ignore_errors=True)
    tasks = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    run.update({"extra": extra, "vps_start": started, "tasks": tasks, "by_step": ansible_by_step(tasks),
                "apt": apt})
    run["containers"] = noop.docker("exec", extra["container"], "docker", "ps", "--format", "{{.Names}}",
                                    check=False).split()
    return run


# --- the report ---------------------------------------------------------------------------------------------

def fmt(value, spec=".1f", unit=" s") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def report(p: dict, a: dict, info: dict) -> dict:
    steps, by = p.get("steps", {}), a.get("by_step", {})
    api = p.get("api_keys") or {}
    # services.api_keys without its smoke calls: its SSH commands (the .env's facts and the write).
    pipeline_equiv = {s: (api.get("ssh") if s == "services.api_keys" else steps.get(s)) for s in EQUIVALENT}
    ansible_equiv = {s: by.get(s) for s in EQUIVALENT}
    tot_p = sum(v for v in pipeline_equiv.values() if v is not None)
    tot_a = sum(v for v in ansible_equiv.values() if v is not None)
    tot_p_full = sum(steps.get(s) or 0 for s in EQUIVALENT)
    log("")
    log(f"(a) pipeline, first deployment of {ENVIRONMENT} ({info['version']}, --rebuild-server --load-test --alert-test): CLI wall "
        f"{fmt(p['wall'])}, CPU {fmt(p['cpu'])}, flow run {fmt(p.get('flow_duration'))} ({p.get('flow_state')}), "
        f"{p.get('task_runs')} task runs, {p['ssh_commands']} SSH commands, {p['connects']} connection attempts")
    log(f"    reinstall inside server.os (OVH API rebuild → SSH answers): {fmt(p.get('reinstall'))}; "
        f"server.os after it (hardening, facts): {fmt(p.get('server_os_after_reinstall'))}")
    log("    phase (first step start → last step end) / step (task run start → end; SSH commands, their seconds):")
    for phase in PHASES:
        log(f"      {phase:<11} {fmt(p['phases'].get(phase)):>8}")
        for step_id, seconds in steps.items():
            if step_id.startswith(phase + "."):
                ssh = p["ssh_by_step"].get(step_id, {})
                log(f"        {step_id:<22} {fmt(seconds):>8}   ({ssh.get('commands', 0)} cmds, {fmt(ssh.get('seconds'), '.2f')})")
    log(f"    services.api_keys: step {fmt(api.get('step'), '.2f')}; the .env write command "
        f"{fmt(api.get('env_write'), '.3f')} (exit {api.get('env_write_exit')}; target < 1 s); its SSH commands "
        f"{fmt(api.get('ssh'), '.3f')} ({api.get('ssh_commands')}); the rest (smoke calls, Prefect) {fmt(api.get('rest'), '.2f')}")
    log(f"(b) Ansible first run of noop.yml on {a['extra']['container']}: wall {fmt(a['wall'])}, CPU {fmt(a['cpu'])}, "
        f"exit {a['rc']}, ok={a['ok']} changed={a['changed']} failed={a['failed']}; VPS start {fmt(a['vps_start'])}; "
        f"containers up: {len(a['containers'])}")
    log("")
    log(f"    {'equivalent step':<22} {'pipeline':>9} {'Ansible':>9} {'ratio':>6}")
    for s in EQUIVALENT:
        note = "  (SSH part; step with smoke: " + fmt(steps.get(s)) + ")" if s == "services.api_keys" else ""
        log(f"    {s:<22} {fmt(pipeline_equiv[s]):>9} {fmt(ansible_equiv[s]):>9} "
            f"{fmt(ratio(pipeline_equiv[s], ansible_equiv[s]), '.2f', ''):>6}{note}")
    log(f"    {'total':<22} {fmt(tot_p):>9} {fmt(tot_a):>9} {fmt(ratio(tot_p, tot_a), '.2f', ''):>6}"
        f"   (with api_keys' smoke calls: {fmt(tot_p_full)}, ratio {fmt(ratio(tot_p_full, tot_a), '.2f', '')})")
    log("    the pipeline's slowest SSH commands in these steps:")
    for s in EQUIVALENT:
        for name, seconds, status in sorted(p["ssh_by_step"].get(s, {}).get("each", []), key=lambda c: -c[1])[:2]:
            log(f"      {s:<18} {seconds:7.2f} s  exit {status}  {name[:80]}")
    log(f"    packages installed at the end: pipeline's VPS {p.get('packages')}, Ansible's {a.get('packages')} "
        f"(the pipeline installs with --no-install-recommends; the apt module, as the playbook uses it, with Recommends)")
    log("    not in the ratio:")
    log(f"      pipeline: reinstall {fmt(p.get('reinstall'))}, server.os rest {fmt(p.get('server_os_after_reinstall'))}, "
        + ", ".join(f"{ph} {fmt(p['phases'].get(ph))}" for ph in ("https", "checks", "monitoring"))
        + f"; outside the phases (start-up, preflight, lock, teardown): "
        f"{fmt(p['wall'] - sum(p['phases'].values()) if steps else None)} of the CLI wall")
    log(f"      Ansible: connection + facts {fmt(by.get('ansible.setup'))}, nginx tasks (part of https) "
        f"{fmt(by.get('https.nginx'))}, other {fmt(by.get('ansible.other'))}, outside tasks "
        f"{fmt(a['wall'] - sum(by.values()) if by else None)}")
    log("    Ansible tasks:")
    for t in a.get("tasks", []):
        log(f"      {t['end'] - t['start']:7.2f} s  {t['status'] or '-':<8} {'changed' if t['changed'] else '':<8} "
            f"{ansible_step(t['task']):<18} {t['task'][:70]}")
    return {"pipeline_equivalent": pipeline_equiv, "ansible_equivalent": ansible_equiv, "total_pipeline": tot_p,
            "total_ansible": tot_a, "ratio": ratio(tot_p, tot_a), "total_pipeline_with_smoke": tot_p_full,
            "ratio_with_smoke": ratio(tot_p_full, tot_a)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="v1.0.0", help="the release to deploy (default %(default)s)")
    parser.add_argument("--order", choices=("ansible-first", "pipeline-first"), default="ansible-first")
    parser.add_argument("--keep-vps", action="store_true", help="keep the Ansible VPS at the end")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = parser.parse_args()

    from technicia_deploy.cli import server
    from technicia_deploy.sandbox.state import SandboxState

    state = SandboxState.load()
    target = (state.data.get("vps") or {}).get(ENVIRONMENT)
    app = state.data.get("app") or {}
    sha = (app.get("commits") or {}).get(args.version)
    if not target or not app.get("repository"):
        raise SystemExit(f"no sandbox with {ENVIRONMENT} in {state.dir}: run `make demo` first")
    if not sha:
        raise SystemExit(f"the sandbox repository has no version {args.version!r}")
    prefect_url = server.use()
    info = {"environment": ENVIRONMENT, "version": args.version, "sha": sha, "order": args.order,
            "machine_start": noop.machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    m = info["machine_start"]
    log(f"machine: {m['nproc']} CPUs, {m['ram_gib']} GiB RAM, load {' '.join(map(str, m['load']))}")
    log(f"first deployment of {ENVIRONMENT} ({target['container']}, {target['ip']}) with {args.version} ({sha[:12]}) "
        f"vs Ansible on a fresh extra VPS; Prefect {prefect_url}; order: {args.order}")

    venv = noop.ansible_env()
    noop.BENCH_CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="first-", dir=noop.BENCH_CACHE))
    sampler = LoadSampler()
    sampler.start()
    results: dict = {}
    finished = False
    try:
        for what in (("ansible", "pipeline") if args.order == "ansible-first" else ("pipeline", "ansible")):
            if what == "ansible":
                log("(b) Ansible: a fresh extra VPS, then the playbook's first run")
                results["ansible"] = ansible_first_run(venv, work, state, args.version, sha, app["repository"])
                a = results["ansible"]
                log(f"    {a['wall']:.1f} s, exit {a['rc']}, changed={a['changed']} (see {a['log']})")
            else:
                log(f"(a) pipeline: technicia-deploy deploy {ENVIRONMENT} --version {args.version} --rebuild-server --load-test --alert-test")
                results["pipeline"] = pipeline_run(args.version, work, prefect_url)
                p = results["pipeline"]
                p["apt"] = apt_fingerprint(target["container"])
                log(f"    {p['wall']:.1f} s, exit {p['rc']}, flow run {p.get('flow_state')}")
        info["load_during"] = sampler.stop()
        info["machine_end"] = noop.machine()
        p, a = results["pipeline"], results["ansible"]
        p["packages"], a["packages"] = packages(target["container"]), packages(a["extra"]["container"])
        same = p["apt"] == a["apt"]
        log(f"package source: {'the same' if same else 'DIFFERENT'} for both VPSes (image {p['apt']['image'][:19]}, "
            f"apt sources+conf sha256 {p['apt']['apt_sha256']} / {a['apt']['apt_sha256']}, URIs {', '.join(p['apt']['uris'])})")
        summary = report(p, a, info)
        ld = info["load_during"]
        log(f"load average (1 min) during the run: min {ld['min']}, median {ld['median']}, max {ld['max']} "
            f"({ld['samples']} samples); at the end {' '.join(map(str, info['machine_end']['load']))}")
        if args.json:
            args.json.write_text(json.dumps({"info": info, "summary": summary, **results}, indent=2, default=str))
            log(f"figures written to {args.json}")
        finished = p["rc"] == 0 and a["rc"] == 0 and same
    finally:
        if sampler.is_alive():
            sampler.stop()
        if not args.keep_vps:
            vps.remove_extra(state, EXTRA_VPS)
            log(f"removed the extra VPS {EXTRA_VPS}")
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"the runs' logs and traces are kept in {work}")
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
