"""Per-function instruction profile of a firmware under QEMU (a development tool for the kernels).

    python -m tasks.aot.profile_qemu firmware.elf [qemu-machine]

QEMU's `-d exec,nochain` logs every translation block executed and `-d in_asm` its instructions;
instructions per function = sum over its blocks of executions x block size. The firmware is run
once more under -icount (deterministic); the log can be large for big models.
"""
import bisect
import collections
import re
import subprocess
import sys
from pathlib import Path



def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    elf = Path(argv[0])
    machine = argv[1] if len(argv) > 1 else "mps2-an386"
    log = elf.with_suffix(".qlog")
    subprocess.run(["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
                    "-semihosting-config", "enable=on,target=native", "-icount", "shift=6,align=off,sleep=off",
                    "-d", "exec,nochain,in_asm", "-D", str(log), "-kernel", str(elf)], capture_output=True, timeout=600)
    tb_size = {}
    cur = None
    execs = collections.Counter()
    for line in open(log, errors="replace"):
        if line.startswith("IN:"):
            cur = None
            continue
        m = re.match(r"0x([0-9a-f]{8}):\s", line)
        if m and cur is None:
            cur = int(m.group(1), 16); tb_size[cur] = 0
        if m:
            tb_size[cur] = tb_size.get(cur, 0) + 1
            continue
        m = re.search(r"Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/", line)
        if m:
            execs[int(m.group(1), 16)] += 1
            cur = None
    syms = []
    for line in subprocess.run(["arm-none-eabi-nm", "-n", "-S", str(elf)], capture_output=True, text=True).stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[2].lower() == "t":
            syms.append((int(p[0], 16) & ~1, int(p[1], 16), p[3]))
    addrs = [s[0] for s in syms]
    per = collections.Counter()
    for pc, n in execs.items():
        i = bisect.bisect_right(addrs, pc) - 1
        name = syms[i][2] if i >= 0 and pc < syms[i][0] + syms[i][1] else "?"
        per[name] += n * tb_size.get(pc, 0)
    tot = sum(per.values())
    for name, n in per.most_common(25):
        print(f"{n:12d} {100*n/tot:5.1f}% {name}")
    print(tot, "total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
