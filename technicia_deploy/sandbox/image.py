"""The VPS base image: Debian bookworm as a fresh OVH VPS ships it, built with debootstrap.

No registry is reachable, so the image is built locally from the host's own
Debian mirror and imported with ``docker import``. Building takes a minute, so
it is cached at two levels, both keyed by a hash of every build input:
the docker image ``technicia-vps:<key>`` itself, and a ``docker save | zstd``
archive under ``~/.cache/technicia-deploy/images/<key>.tar.zst`` that survives
a wiped Docker engine.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from technicia_deploy.sandbox.docker_engine import docker, exists

SUITE = "bookworm"
REPOSITORY = "technicia-vps"
# Bump when the build changes in a way the inputs below don't show.
RECIPE_VERSION = "1"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# What a fresh OVH Debian VPS has that the pipeline relies on (or that a real server would offer it).
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "openssh-client", "sudo", "python3", "iptables",
    "ca-certificates", "curl", "wget", "gnupg", "procps", "iproute2", "iputils-ping", "netbase", "kmod",
    "less", "nano", "vim-tiny", "cron", "lsb-release", "apt-utils", "logrotate",
)

# PID 1 of the container. Without --privileged (refused by this kind of daemon) Docker
# mounts /sys and the cgroup hierarchies read-only; systemd and a nested dockerd need them
# writable. A cgroup superblock cannot be remounted with other options ("busy"), but its
# bind mount can: hence remount,bind,rw on every cgroup mount point (v1 controllers or v2).
INIT_WRAPPER = """#!/bin/sh
mount -o remount,rw /sys 2>/dev/null || true
for point in $(awk '$3 ~ /^cgroup/ {print $2}' /proc/mounts); do
    mount -o remount,bind,rw "$point" 2>/dev/null || true
done
exec /sbin/init "$@"
"""
INIT_PATH = "/usr/local/sbin/vps-init"

# Units that only make sense on real hardware; in a container they fail and keep
# `systemctl is-system-running` at "degraded", which a health check would trip on.
MASKED_UNITS = (
    "systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udev-settle.service",
    "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "getty@tty1.service", "console-getty.service", "systemd-remount-fs.service",
    "systemd-modules-load.service", "sys-kernel-config.mount", "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount", "systemd-firstboot.service", "systemd-timesyncd.service",
)

# Run inside the new root: the `debian` admin user as on OVH's Debian images
# (sudo without password, no password of its own).
CHROOT_SETUP = f"""set -e
useradd --create-home --shell /bin/bash --groups sudo,adm debian
passwd --lock debian
printf 'debian ALL=(ALL) NOPASSWD:ALL\\n' > /etc/sudoers.d/90-debian
chmod 0440 /etc/sudoers.d/90-debian
systemctl mask {' '.join(MASKED_UNITS)}
systemctl enable ssh.service
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
"""


class ImageError(RuntimeError):
    pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "technicia-deploy" / "images"


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas, current = [], {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
            continue
        if ":" in line and not line[0].isspace():
            key, value = line.split(":", 1)
            current[key.strip().lower()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def host_apt_sources(sources_dir: Path = Path("/etc/apt/sources.list.d"), sources_list: Path = Path("/etc/apt/sources.list")) -> list[tuple[str, str]]:
    """The host's Debian apt sources as (uri, suite) pairs, deb822 files first, then one-line entries."""
    found: list[tuple[str, str]] = []
    for file in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for stanza in _deb822_stanzas(file.read_text()):
            if "deb" not in stanza.get("types", "deb").split() or stanza.get("enabled", "yes") == "no":
                continue
            for uri in stanza.get("uris", "").split():
                for suite in stanza.get("suites", "").split():
                    found.append((uri.rstrip("/"), suite))
    one_line = [sources_list] + (sorted(sources_dir.glob("*.list")) if sources_dir.is_dir() else [])
    for file in one_line:
        if not file.is_file():
            continue
        for line in file.read_text().splitlines():
            # deb [options] uri suite components...
            match = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match:
                found.append((match.group(1).rstrip("/"), match.group(2)))
    return found


def debian_mirror(sources: list[tuple[str, str]] | None = None) -> str:
    """The host's mirror for bookworm (never a hard-coded host: the sandbox uses whatever this machine reaches)."""
    sources = host_apt_sources() if sources is None else sources
    for uri, suite in sources:
        if suite == SUITE:
            return uri
    raise ImageError(
        f"no apt source for Debian {SUITE} on this machine (looked in /etc/apt/sources.list.d/*.sources, "
        "*.list and /etc/apt/sources.list): the VPS image is built from the host's own Debian mirror"
    )


def vps_apt_sources(sources: list[tuple[str, str]] | None = None) -> str:
    """deb822 sources for the VPS: the host's bookworm, -updates and -security entries (reachable through NAT)."""
    sources = host_apt_sources() if sources is None else sources
    wanted = [(u, s) for u, s in sources if s in (SUITE, f"{SUITE}-updates", f"{SUITE}-security")]
    blocks = []
    for uri in dict.fromkeys(u for u, _ in wanted):
        suites = " ".join(s for u, s in wanted if u == uri)
        blocks.append(f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\n"
                      f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    return "\n".join(blocks)


# Snapshot mirrors serve Release files past their Valid-Until date; apt on the VPS must accept them.
VPS_APT_CONF = 'Acquire::Check-Valid-Until "false";\n'


def build_key(mirror: str, sources: str) -> str:
    """Hash of every build input: a changed package list, script or mirror means a new image."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, SUITE, mirror, sources, VPS_APT_CONF, " ".join(PACKAGES), INIT_WRAPPER, CHROOT_SETUP):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def image_name(key: str) -> str:
    return f"{REPOSITORY}:{key}"


def ensure_image(log=lambda line: None) -> str:
    """The docker image name of the VPS base image, loading or building it if needed."""
    mirror = debian_mirror()
    sources = vps_apt_sources()
    key = build_key(mirror, sources)
    name = image_name(key)
    if exists("image", name):
        return name
    archive = cache_dir() / f"{key}.tar.zst"
    if archive.is_file():
        log(f"loading the VPS image from {archive}")
        _load(archive)
        if exists("image", name):
            return name
        log(f"{archive} did not contain {name}; rebuilding")
    log(f"building the VPS image {name} with debootstrap from {mirror} (about a minute)")
    _build(name, mirror, sources)
    _save(name, archive)
    return name


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ImageError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _build(name: str, mirror: str, sources: str) -> None:
    if os.geteuid() != 0:
        raise ImageError("building the VPS image needs root (debootstrap); run `technicia-deploy sandbox up` as root once")
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: `apt-get install debootstrap` (or `make bootstrap`)")
    cache_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vps-rootfs-", dir=cache_dir()))
    try:
        root = work / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--keyring={KEYRING}", f"--include={','.join(PACKAGES)}",
              SUITE, str(root), mirror], "debootstrap")
        (root / INIT_PATH.lstrip("/")).write_text(INIT_WRAPPER)
        (root / INIT_PATH.lstrip("/")).chmod(0o755)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(sources)
        (root / "etc/apt/apt.conf.d/99snapshot-mirror").write_text(VPS_APT_CONF)
        (root / "etc/hostname").write_text("vps\n")
        _run(["chroot", str(root), "/bin/sh", "-c", CHROOT_SETUP], "configuring the VPS image")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import",
             "--change", f'CMD ["{INIT_PATH}"]',
             "--change", "ENV container=docker",
             "-", name],
            stdin=tar.stdout, capture_output=True, text=True,
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise ImageError(f"docker import failed: {imported.stderr.strip()}")
    finally:
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)


def _unmount_below(path: Path) -> None:
    """Unmount what an interrupted debootstrap left mounted in the rootfs (/proc, /sys), deepest first,
    so that removing the work directory never reaches into the host's pseudo-filesystems."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _save(name: str, archive: Path) -> None:
    """``docker save | zstd`` into the cache, atomically (a half-written archive is never loaded)."""
    if shutil.which("zstd") is None:
        return  # the docker image itself is still cached
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        save = subprocess.Popen(["docker", "save", name], stdout=subprocess.PIPE)
        zstd = subprocess.run(["zstd", "-q", "-T0", "-3", "-c"], stdin=save.stdout, stdout=out)
        save.stdout.close()
        ok = save.wait() == 0 and zstd.returncode == 0
    if ok:
        os.replace(tmp, archive)
    else:
        tmp.unlink(missing_ok=True)


def _load(archive: Path) -> None:
    unzstd = subprocess.Popen(["zstd", "-q", "-d", "-c", str(archive)], stdout=subprocess.PIPE)
    docker_load = subprocess.run(["docker", "load", "-q"], stdin=unzstd.stdout, capture_output=True)
    unzstd.stdout.close()
    unzstd.wait()
    if docker_load.returncode != 0:
        raise ImageError(f"docker load of {archive} failed: {docker_load.stderr.decode(errors='replace').strip()}")


def remove_image(name: str) -> None:
    docker("image", "rm", name, check=False)
