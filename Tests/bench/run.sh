#!/usr/bin/env bash
# make bench: the benchmark kernel booted bare from GRUB and as the guest,
# both in Bochs (whose TSC counts instructions), side by side. Prints one
# table, writes build/bench.json, and fails when a figure exceeds its budget.
#   run.sh KERNEL BENCH_ELF     (BENCH_ENGINE=kvm: cycles on an Intel host instead)
set -uo pipefail
kernel=$1; bench=$2
here=$(cd "$(dirname "$0")" && pwd)
tools=$(cd "$here/../../tools" && pwd)
out=build/bench
mkdir -p "$out"

# Budgets, in Bochs instructions (issue: benchmarks). Text: 128 KiB until the
# passthrough platform (ACPI copy, MTRR/E820 plan: ~30 KB) and the isolated
# platform's local APIC, IOAPIC and MMIO decoder (~24 KB) came in; 192 KiB
# until CPU bring-up (MADT walk, INIT-SIPI-SIPI, per-CPU tables: ~6 KB); 208 KiB
# until the passthrough guest's vCPUs on every CPU (INIT/SIPI routing, the
# INIT state, the stop of all CPUs: ~13 KB); 224 KiB until quick
# preemption-timer exits (the timer's second Swift half, the preemption timer
# written before every entry, TSC-deadline writes without the APIC page
# sync: ~1.7 KB); now 232 KiB.
# AP: one application processor from its first trampoline instruction to VMX
# root mode (issue 13: under 1 M instructions).
budget_cpuid=100; budget_vmcall=80; budget_boot=2000000; budget_text=237568; budget_ap=1000000
# The isolated platform's APIC (issue 14): a self-IPI and its EOI cost no exit
# with virtual-interrupt delivery; a timer interrupt, from the expiry of the
# TSC-deadline timer (a preemption-timer exit) to the guest's handler, takes
# the quick exit path: issue 14's goal of 300. A one-shot count of 1 (armed
# and fired in one APIC-write exit through the run loop) is held where it is.
# IN, OUT and RDMSR take the quick exit path (QuickExits.swift): issue 14's
# goal of 200.
budget_ipi=100; budget_timer=300; budget_oneshot=1500; budget_port=200

# The bare ISO: GRUB's multiboot (v1) command loads the same ELF.
"$tools/mkiso.sh" "$out/bare.iso" - --bare "bench (bare)" multiboot "$bench" "" || exit 1
"$tools/mkiso.sh" "$out/hv.iso" "$kernel" --entry bench "log=info guest_mem=256M" --module "$bench" "" || exit 1

# smp: the hypervisor's ISO on two CPUs, for the AP bring-up figure only.
for run in bare hv smp; do
    rm -f "$out/$run.txt"
    iso=$out/$run.iso; cpus=1
    if [ $run = smp ]; then iso=$out/hv.iso; cpus=2; fi
    "$tools/boot.sh" --engine "${BENCH_ENGINE:-bochs}" --megs 512 --cpus $cpus --serial "$out/$run.txt" --timeout 300 "$iso" >/dev/null 2>&1
    tr -d '\r' < "$out/$run.txt" > "$out/$run.clean.txt" 2>/dev/null
    grep -q 'bench: done' "$out/$run.clean.txt" || {
        echo "bench: the $run run did not finish; transcript tail:"; tail -n 20 "$out/$run.clean.txt"; exit 1; }
done

# Sections, not Berkeley totals: "text" is the code (.text); strings are .rodata.
section() { size -A "$kernel" | awk -v s="$1" '$1 == s { print $2 }'; }
text_size=$(section .text); rodata_size=$(section .rodata)
data_size=$(section .data); bss_size=$(section .bss)

awk -v text="$text_size" -v rodata="$rodata_size" -v data="$data_size" -v bss="$bss_size" \
    -v ba="$budget_ap" -v bc="$budget_cpuid" -v bv="$budget_vmcall" -v bb="$budget_boot" -v bt="$budget_text" \
    -v bi="$budget_ipi" -v btm="$budget_timer" -v bo="$budget_oneshot" -v bp="$budget_port" \
    -v json="$out/../bench.json" '
    FNR == 1 { run = (FILENAME ~ /bare/) ? "bare" : (FILENAME ~ /smp/) ? "smp" : "hv" }
    run == "smp" && /cpu 1 \(APIC ID [0-9]+\): VMX root mode, [0-9]+ TSC ticks/ {
        for (i = 1; i <= NF; i++) if ($i == "ticks") ap = $(i - 2)
    }
    /bench: first-tsc/ { first[run] = $NF }
    /boot: entry-tsc/ { for (i = 1; i <= NF; i++) if ($i == "entry-tsc") entry = $(i + 1) }
    /bench: (empty|cpuid|in|out|rdmsr|wrmsr|cr0|vmcall|ipi|oneshot|timer|deadline) [0-9]+/ {
        for (i = 1; i <= NF; i++) if ($i == "bench:") { op = $(i + 1); v = $(i + 2) }
        cost[run, op] = v; if (run == "hv") order[++n] = op
    }
    END {
        fail = 0
        printf "%-8s %12s %12s %14s %10s\n", "exit", "hypervisor", "native", "hypervisor", "budget"
        printf "%-8s %12s %12s %14s %10s\n", "", "(median)", "(median)", "own cost", ""
        printf "{\n  \"unit\": \"Bochs instructions (TSC ticks)\",\n  \"operations\": {\n" > json
        for (k = 1; k <= n; k++) {
            op = order[k]; h = cost["hv", op]
            # VMCALL has no native form: its native figure is the empty round trip.
            nat = (op == "vmcall") ? cost["bare", "empty"] : cost["bare", op]
            d = h - nat; b = (op == "cpuid") ? bc : (op == "vmcall") ? bv : (op == "ipi") ? bi : (op == "timer") ? btm : (op == "oneshot") ? bo \
                : (op == "in" || op == "out" || op == "rdmsr") ? bp : "-"
            over = (b != "-" && d > b)
            if (over) fail = 1
            printf "%-8s %12d %12d %14d %10s%s\n", op, h, nat, d, b, over ? "  OVER" : ""
            printf "    \"%s\": {\"hypervisor\": %d, \"native\": %d, \"cost\": %d}%s\n", op, h, nat, d, (k < n ? "," : "") >> json
        }
        boot = first["hv"] - entry
        overb = (boot > bb); overt = (text > bt); overa = (ap == "" || ap > ba)
        if (overb || overt || overa) fail = 1
        printf "\n%-40s %12d %10d%s\n", "boot: hypervisor entry -> first guest instr", boot, bb, overb ? "  OVER" : ""
        printf "%-40s %12s %10d%s\n", "AP: trampoline -> VMX root mode", ap == "" ? "missing" : ap, ba, overa ? "  OVER" : ""
        printf "%-40s %12d %10d%s\n", "kernel text bytes", text, bt, overt ? "  OVER" : ""
        printf "%-40s %12d\n%-40s %12d\n%-40s %12d\n", "kernel rodata bytes", rodata, "kernel data bytes", data, "kernel bss bytes", bss
        printf "  },\n  \"boot_entry_to_first_guest_instruction\": %d,\n  \"ap_trampoline_to_vmx_root\": %d,\n  \"kernel\": {\"text\": %d, \"rodata\": %d, \"data\": %d, \"bss\": %d},\n  \"over_budget\": %s\n}\n", boot, ap + 0, text, rodata, data, bss, fail ? "true" : "false" >> json
        exit fail
    }' "$out/bare.clean.txt" "$out/hv.clean.txt" "$out/smp.clean.txt"
status=$?
echo "figures written to build/bench.json"
[ $status = 0 ] || echo "bench: a figure exceeds its budget (marked OVER)"
exit $status
