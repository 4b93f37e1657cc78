"""Measured on the board: build the harness, upload it with PlatformIO, read its line protocol.

The harness (`measure_port/tinyml_measure.cpp`, our code) replaces the sketch's sources in the
sketch's OWN PlatformIO environment (`build(...)`: same platform, framework, flags and libraries,
with the variant's model and K test inputs), PlatformIO's own upload puts it on the board
(`upload(...)`: `pio run -t upload -e <env>`), and `session(...)` talks to it over the serial port
with pyserial (a device such as /dev/ttyACM0, or a URL such as socket://127.0.0.1:4555 for the QEMU
stand-in). The protocol is documented at the top of the harness; `parse(...)` reads it.

Every way this can go wrong is a TinyMLError of one line: no board on the port, a timeout, a board
that prints something else, a different core than the board configured, a firmware too big to upload.
"""
from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from .errors import TinyMLError

HARNESS = Path(__file__).resolve().parent / "measure_port" / "tinyml_measure.cpp"
PROTOCOL = "tinyml-measure 1"
DEFAULT_BAUD = 115200
RUNS = 10            # timed inferences (after one warm-up)
MAX_VECTORS = 8      # test inputs whose outputs are compared with the host interpreter
READY_TIMEOUT = 30.0  # seconds to wait for the harness after an upload (USB re-enumeration, boot);
#                       TINYML_MEASURE_READY_TIMEOUT overrides it

# SCB->CPUID part numbers (Arm ARM B3.2.3) -> core family
CPUID_PARTS = {0xC20: "cortex-m0", 0xC60: "cortex-m0+", 0xC21: "cortex-m1", 0xC23: "cortex-m3", 0xC24: "cortex-m4",
               0xC27: "cortex-m7", 0xD20: "cortex-m23", 0xD21: "cortex-m33", 0xD22: "cortex-m55",
               0xD23: "cortex-m85", 0xD24: "cortex-m52"}


# the catalogue's cores (boards.CORES) as SCB->CPUID tells them apart (the FPU is not in the part number)
_FAMILY = {"cortex-m4f": "cortex-m4", "cortex-m7dp": "cortex-m7", "cortex-m33nofp": "cortex-m33"}


def core_family(core: str) -> str:
    """The core as the harness reports it: cortex-m4f -> cortex-m4, cortex-m7dp -> cortex-m7."""
    return _FAMILY.get(core, core)


# ----------------------------------------------------------------------------------- the protocol
_BEGIN = f"{PROTOCOL} begin"
_READY = f"{PROTOCOL} ready"
_END = re.compile(rf"^{re.escape(PROTOCOL)} end lines=(\d+)$")
_ERROR = f"{PROTOCOL} error "
_CORE = re.compile(r"^core cpuid=([0-9a-f]{8}) fpu=([01]) f_cpu=(\d+) core_clock=(\d+) timer=(\w+) runtime=(\w+)"
                   r"(?: build=([0-9a-f]{8}))?$")
_ARENA = re.compile(r"^arena used=(\d+) size=(\d+)$")
_STACK = re.compile(r"^stack used=(\d+) method=(.+)$")
_CYCLES = re.compile(r"^cycles((?: \d+)+)$")
_OUT = re.compile(r"^out (\d+) ((?:[0-9a-f]{2})*)$")  # whole bytes: a dropped character is a damaged line


def parse(lines: list[str]) -> dict[str, Any]:
    """The block between `begin` and `end` (without them) as a dict; TinyMLError if it is damaged."""
    res: dict[str, Any] = {"outputs": {}}
    for ln in lines:
        if m := _CORE.match(ln):
            cpuid = int(m.group(1), 16)
            res.update(cpuid=m.group(1), core=CPUID_PARTS.get((cpuid >> 4) & 0xFFF, f"unknown part {cpuid:08x}"),
                       fpu=m.group(2) == "1", f_cpu=int(m.group(3)), core_clock=int(m.group(4)), timer=m.group(5),
                       runtime=m.group(6), build=m.group(7))
        elif m := _ARENA.match(ln):
            res.update(arena_used_bytes=int(m.group(1)), arena_size_bytes=int(m.group(2)))
        elif m := _STACK.match(ln):
            res.update(stack_used_bytes=int(m.group(1)), stack_method=m.group(2).strip())
        elif ln == "stack unknown":
            res.update(stack_used_bytes=None, stack_method="unknown: the harness found no stack limit to paint to")
        elif m := _CYCLES.match(ln):
            res["cycles"] = [int(v) for v in m.group(1).split()]
        elif m := _OUT.match(ln):
            res["outputs"][int(m.group(1))] = m.group(2)
        else:
            raise TinyMLError(f"the harness printed a line this doit-tinyml does not understand: {ln[:80]!r}")
    missing = [k for k in ("core", "arena_used_bytes", "stack_method", "cycles") if k not in res]
    if missing:
        raise TinyMLError(f"the harness's report lacks {', '.join(missing)} (a damaged transfer?)")
    return res


def session(port: str, baud: int, *, ready_timeout: float | None = None, measure_timeout: float = 300.0,
            board_name: str = "the board") -> list[str]:
    """Open `port`, wait for the harness, ask for a measurement; the lines between begin and end."""
    if ready_timeout is None:
        try:
            ready_timeout = float(os.environ.get("TINYML_MEASURE_READY_TIMEOUT") or READY_TIMEOUT)
        except ValueError:
            ready_timeout = READY_TIMEOUT

    where = f"{board_name} on {port}"
    ser = _open(port, baud, time.monotonic() + ready_timeout, lambda why: (
        f"no board on {port}: it cannot be opened ({why}); plug {board_name} in or fix its port ([boards.<id>] port "
        f"in tinyml.toml, or the environment's monitor_port)"))
    deadline = time.monotonic() + ready_timeout  # for the harness's ready line, from the port's opening
    try:
        while True:
            try:
                return _converse(ser, where, deadline, ready_timeout, measure_timeout)
            except _Reopen:  # the port failed before the harness answered: an upload's re-enumeration
                _close(ser, quit_=False)
                ser = None
                ser = _open(port, baud, deadline, lambda why: (
                    f"{where} went away after the upload and did not come back in {ready_timeout:.0f} s ({why}): "
                    f"is it still connected?"))
    finally:
        if ser is not None:
            _close(ser)


def _open(port: str, baud: int, deadline: float, error) -> Any:
    """The port opened, retried until `deadline` (a USB board re-enumerates after an upload); else TinyMLError with
    `error(why)`."""
    import serial  # pyserial (PlatformIO's own dependency too)

    while True:
        try:
            return serial.serial_for_url(port, baudrate=baud, timeout=0.2)
        except (serial.SerialException, OSError, ValueError) as e:
            if time.monotonic() > deadline:
                raise TinyMLError(error(_why(e))) from None
            time.sleep(0.25)


class _Reopen(Exception):
    """The serial port failed before the harness answered (a USB board re-enumerating after its upload)."""


def _close(ser, quit_: bool = True) -> None:
    try:
        if quit_:
            ser.write(b"Q\n")  # the QEMU stand-in stops; a real board ignores it
            ser.flush()
    except Exception:  # noqa: BLE001 - the port may be gone already
        pass
    try:
        ser.close()
    except Exception:  # noqa: BLE001
        pass


def _why(e: BaseException | None) -> str:
    s = str(e or "unknown error").strip()
    return s.split(":", 1)[-1].strip() if "[Errno" in s else s


def _converse(ser, where: str, deadline: float, ready_timeout: float, measure_timeout: float) -> list[str]:
    buf = b""
    other: list[str] = []
    asked = 0.0
    block: list[str] | None = None
    end_by = None
    while True:
        now = time.monotonic()
        if block is None and now > deadline:
            if other:
                shown = " | ".join(other[:3])[:160]
                raise TinyMLError(f"{where} printed {shown!r} but never the doit-tinyml harness's ready line: is "
                                  f"another firmware running (did the upload reach this board?), or is the baud "
                                  f"rate wrong?")
            if asked:
                raise TinyMLError(f"{where} answered the harness's ready line, was asked to measure, then went silent "
                                  f"for {ready_timeout:.0f} s (timeout): it may have crashed setting up the model "
                                  f"(a hard fault in AllocateTensors, a stack overflow); run it with a debugger")
            raise TinyMLError(f"{where} printed nothing in {ready_timeout:.0f} s after the upload (timeout): is it "
                              f"running the uploaded firmware, and is this its serial port?")
        if end_by is not None and now > end_by:
            raise TinyMLError(f"{where} started measuring but did not finish in {measure_timeout:.0f} s (timeout); "
                              f"{len(block or [])} lines received")
        try:
            chunk = ser.read(4096)
        except Exception as e:  # noqa: BLE001 - pyserial's SerialException or OSError: the port went away
            if block is None and not other and not asked and time.monotonic() < deadline:
                raise _Reopen() from e
            seen = f"after printing {' | '.join(other[:2])[:120]!r}" if other else "having printed nothing"
            if block is not None:
                seen = f"in the middle of its report ({len(block)} lines)"
            raise TinyMLError(f"{where} went away {seen} (the serial port closed: {_why(e)}): is it running the "
                              f"uploaded harness, and is it still connected?") from None
        if chunk:
            buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            ln = raw.decode("ascii", errors="replace").strip().replace("\x00", "")
            if not ln:
                continue
            if ln.startswith(_ERROR):
                raise TinyMLError(f"the harness on {where} failed: {ln[len(_ERROR):]}")
            if ln == _BEGIN:
                block, end_by = [], time.monotonic() + measure_timeout
                continue
            m = _END.match(ln)
            if m and block is not None:
                if int(m.group(1)) != len(block):
                    raise TinyMLError(f"{where}: the harness sent {m.group(1)} lines but {len(block)} arrived (a "
                                      f"damaged transfer); measure again with `doit forget measure:...`")
                return block
            if block is not None:
                block.append(ln)
            elif ln == _READY:
                if time.monotonic() - asked > 2.0:
                    try:
                        ser.write(b"M\n")
                        ser.flush()
                    except Exception as e:  # noqa: BLE001 - the port went away between ready and the request
                        if time.monotonic() < deadline:
                            raise _Reopen() from e
                        raise TinyMLError(f"{where} went away as it was asked to measure (the serial port closed: "
                                          f"{_why(e)}): is it still connected?") from None
                    asked = time.monotonic()
            elif len(other) < 8:
                other.append(ln[:80])
        if not chunk:
            time.sleep(0.01)


# ----------------------------------------------------------------------------------- results
def summarise(parsed: dict, clock_hz: int) -> dict:
    """Cycles -> milliseconds (median, min, max) at the harness's clock."""
    cyc = parsed["cycles"]
    if not cyc or max(cyc) <= 0:
        raise TinyMLError(f"the harness counted {cyc or 'no'} cycles per inference: its timer does not run on this "
                          f"board (no DWT, SysTick and micros() at 0 Hz?); report it with the board's name")
    med = statistics.median(cyc)
    to_ms = 1000.0 / clock_hz
    return {"runs": len(cyc), "cycles": cyc, "cycles_median": med, "cycles_min": min(cyc), "cycles_max": max(cyc),
            "latency_ms": round(med * to_ms, 6), "latency_min_ms": round(min(cyc) * to_ms, 6),
            "latency_max_ms": round(max(cyc) * to_ms, 6)}


def check_board(parsed: dict, board, where: str) -> int:
    """The harness's core and clock against the configured board; the clock (Hz) the times are in."""
    want = core_family(board.core)
    got = parsed["core"]
    if got != want:
        raise TinyMLError(f"{where} is a {got} (CPUID {parsed['cpuid']}), but board {board.id} is a {board.core} "
                          f"({board.name}): a different board is on this port")
    clock = parsed["core_clock"] or parsed["f_cpu"]
    if not clock:
        clock = int(board.cpu_mhz * 1_000_000)
    elif abs(clock - board.cpu_mhz * 1e6) > 0.02 * board.cpu_mhz * 1e6:
        raise TinyMLError(f"{where} runs at {clock / 1e6:g} MHz, but board {board.id} is configured at "
                          f"{board.cpu_mhz} MHz: a different board (or clock) than configured; set [boards."
                          f"{board.id}] cpu_mhz = {round(clock / 1e6)} if that is the clock you ship")
    return int(clock)


def expected_ready(port: str) -> bool:
    """A device path that does not exist has no board (checked before an upload that would fail later)."""
    return "://" in port or os.path.exists(port)
