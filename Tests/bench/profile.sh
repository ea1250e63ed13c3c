#!/usr/bin/env bash
# make bench-profile OP=cpuid: where the hypervisor's instructions go for one
# exit. Boots the benchmark as the guest in Bochs, stops at the
# benchmark's operation OP in the guest, traces every instruction through
# its exit and back, and counts the hypervisor's instructions per function.
#   profile.sh KERNEL BENCH_ELF OP    (TRACE=file: also every instruction, in order;
#                                      EXIT=n: the operation's n-th exit, not its first)
set -uo pipefail
kernel=$1; bench=$2; op=$3
here=$(cd "$(dirname "$0")" && pwd)
out=build/bench
iso=$out/profile.iso
mkdir -p "$out"
"$here/../../tools/mkiso.sh" "$iso" "$kernel" --entry bench "log=info guest_mem=256M" --module "$bench" "" || exit 1
addr=$(nm "$bench" | awk -v s="op_$op" '$3 == s { print $1 }')
[ -n "$addr" ] || { echo "profile: no operation '$op' in $bench (see its op_* labels)"; exit 1; }

dir=$(mktemp -d); [ -n "${KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT; echo "$dir" >&2
# The benchmark is linked apart from the hypervisor (bench.ld), so the linear
# breakpoint fires in the guest: run a few hits into the benchmark's loop,
# trace, and let the analysis find the guest's exit (guest lines are those
# whose physical address differs from the linear one: EPT).
{
    echo "lb 0x$addr"
    for _ in 1 2 3 4 5 6; do echo c; done
    echo "trace on"
    echo "s 30000"
    echo quit
} > "$dir/cmds"
"$here/../../tools/boot.sh" --engine bochs --megs 512 --serial "$dir/serial.txt" --timeout 300 \
    --debugger "$dir/cmds" "$iso" >/dev/null 2>&1
nm "$kernel" > "$dir/symbols.txt"

python3 - "$dir/serial.txt.debugger.txt" "$dir/symbols.txt" "$op" <<'PY'
import bisect, os, re, subprocess, sys
trace, symfile, op = sys.argv[1:]
syms = sorted((int(a, 16), n) for a, t, n in (l.split() for l in open(symfile) if len(l.split()) == 3) if t in "tTW")
starts = [a for a, _ in syms]
line = re.compile(r"^\(0\)\.\[\d+\] \[0x([0-9a-f]+)\] [0-9a-f]{4}:([0-9a-f]+) .*?\): (.*?)\s+;")
rows = [(int(m[1], 16), int(m[2], 16), m[3]) for m in map(line.match, open(trace, errors="replace")) if m]
# From the guest's exiting instruction to its first instruction after the
# exit; EXIT=n: the operation's n-th exit (the timer's expiry is its second).
back = 0
for _ in range(int(os.environ.get("EXIT") or 1)):
    first_host = next((i for i in range(back, len(rows)) if rows[i][0] == rows[i][1]), None)
    if first_host is None or first_host == 0:
        sys.exit("profile: the trace shows no (further) exit (is the operation intercepted?)")
    back = next((i for i in range(first_host, len(rows)) if rows[i][0] != rows[i][1]), None)
    if back is None:
        sys.exit("profile: the trace ends before the guest resumes; raise the step count")
host = rows[first_host:back]
counts, order = {}, []
for _, linear, _ in host:
    i = bisect.bisect_right(starts, linear) - 1
    name = syms[i][1] if i >= 0 else "?"
    if name not in counts: order.append(name)
    counts[name] = counts.get(name, 0) + 1
names = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(order),
                       capture_output=True, text=True).stdout.splitlines() or order
print(f"{op}: {len(host)} hypervisor instructions from the exit to the guest's next instruction")
print(f"  (guest: {rows[first_host - 1][2]!r} exits; resumes at {rows[back][2]!r})")
for name, pretty in zip(order, names):
    print(f"  {counts[name]:5d}  {pretty[:110]}")
if os.environ.get("TRACE"):
    # Every hypervisor instruction of the exit, in order, with its function.
    with open(os.environ["TRACE"], "w") as out:
        for _, linear, text in host:
            i = bisect.bisect_right(starts, linear) - 1
            out.write(f"{linear:#x} {syms[i][1] if i >= 0 else '?'}: {text}\n")
PY
