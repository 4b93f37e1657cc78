"""QEMU standing in for a board on the desk: an upload command for a PlatformIO environment.

    upload_protocol = custom
    upload_command = $PYTHONEXE -m <plugin>.engine.qemu_board upload $SOURCE $UPLOAD_PORT
    upload_port = socket://127.0.0.1:4555
    monitor_port = socket://127.0.0.1:4555

`upload ELF PORT` "flashes" the firmware by starting `qemu-system-arm` (machine `mps2-an386`, a
Cortex-M4 with FPU, unless `--machine`) in the background with the board's first UART on PORT: a TCP
server on 127.0.0.1 (`socket://127.0.0.1:<n>`, what pyserial opens). QEMU starts the CPU when the
first client connects, so nothing the firmware prints is lost; like a board after an upload, it then
runs until it is uploaded again, stopped (`stop PORT`), or its lifetime (`--lifetime`, 300 s by
default) ends. A second upload to the same port replaces the first. Time is QEMU's `-icount` virtual
time (one instruction = 64 ns), so the cycles a harness reads from SysTick are deterministic.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SOCKET = re.compile(r"^socket://(127\.0\.0\.1|localhost):(\d{1,5})/?$")


def _state_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"tinyml-qemu-board-{os.getuid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _pidfile(port: int) -> Path:
    return _state_dir() / f"{port}.pid"


def parse_port(url: str) -> int:
    m = _SOCKET.match(url.strip())
    if not m:
        raise SystemExit(f"qemu_board: the port must be socket://127.0.0.1:<port> (QEMU listens on loopback only), "
                         f"got {url!r}")
    port = int(m.group(2))
    if not 1024 <= port <= 65535:
        raise SystemExit(f"qemu_board: port {port} is outside 1024..65535")
    return port


def stop(port: int) -> bool:
    """Stop the QEMU serving `port`, if any; True when one was running."""
    pf = _pidfile(port)
    try:
        pid = int(pf.read_text().strip())
    except (OSError, ValueError):
        return False
    try:  # the pid may have been reused since: only a process group this module started (timeout ... qemu)
        ours = b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        ours = not Path("/proc/self").exists()  # no /proc (not Linux): trust the pidfile
    if not ours:
        pf.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pf.unlink(missing_ok=True)
        return False
    for _ in range(100):  # bounded: wait for the process group to go (and the port with it)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    pf.unlink(missing_ok=True)
    return True


def upload(elf: Path, port: int, *, machine: str = "mps2-an386", lifetime: float = 300.0) -> int:
    qemu = shutil.which("qemu-system-arm")
    if not qemu:
        print("qemu_board: qemu-system-arm was not found on PATH: sudo apt-get install qemu-system-arm", file=sys.stderr)
        return 2
    if not Path(elf).is_file():
        print(f"qemu_board: {elf} does not exist", file=sys.stderr)
        return 2
    stop(port)
    log = _state_dir() / f"{port}.log"
    cmd = ["timeout", "-s", "KILL", f"{int(lifetime)}", qemu, "-M", machine, "-nographic", "-monitor", "none",
           "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
           "-semihosting-config", "enable=on,target=native",
           "-icount", "shift=6,align=off,sleep=on", "-kernel", str(Path(elf).resolve())]
    with open(log, "wb") as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    _pidfile(port).write_text(str(p.pid))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # bounded: QEMU says when it listens
        text = log.read_text(errors="replace") if log.is_file() else ""
        if "waiting for connection" in text:
            print(f"qemu_board: {Path(elf).name} runs on QEMU {machine}; its UART is socket://127.0.0.1:{port} "
                  f"(for at most {int(lifetime)} s)")
            return 0
        if p.poll() is not None:
            print(f"qemu_board: QEMU stopped at once (exit {p.returncode}): {text.strip()[-400:]}", file=sys.stderr)
            _pidfile(port).unlink(missing_ok=True)
            return 2
        time.sleep(0.05)
    stop(port)
    print(f"qemu_board: QEMU did not start listening on 127.0.0.1:{port} in 15 s", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("upload", help="start QEMU with the firmware, its UART on PORT")
    up.add_argument("elf", type=Path)
    up.add_argument("port")
    up.add_argument("--machine", default="mps2-an386")
    up.add_argument("--lifetime", type=float, default=300.0, help="seconds before QEMU is stopped (default 300)")
    st = sub.add_parser("stop", help="stop the QEMU serving PORT")
    st.add_argument("port")
    a = ap.parse_args(argv)
    port = parse_port(a.port)
    if a.cmd == "stop":
        stop(port)
        return 0
    return upload(a.elf, port, machine=a.machine, lifetime=a.lifetime)


if __name__ == "__main__":
    sys.exit(main())
