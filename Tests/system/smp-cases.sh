# Every CPU in VMX root mode (sourced by run.sh): the hypervisor starts the
# CPUs the MADT lists with INIT-SIPI-SIPI, each enters VMX root mode and
# parks there, and the guest still runs to its end on the boot CPU.

boot_case smp-2cpu bochs 120 - --cpus 2 \
    --entry hello "log=info" --module build/guests/hello.bin "" -- \
    '!FAIL' '!\[warn\] cpu' \
    'cpus: the MADT lists 2 CPUs; starting 1 through the xAPIC at 0xfee00000, trampoline page 0x[0-9a-f]+, TSC [0-9]+ ticks/ms \(PIT channel 2\)' \
    'cpu 1 \(APIC ID 1\): VMX root mode, [0-9]+ TSC ticks from its first trampoline instruction' \
    'cpus: 2 of 2 in VMX root mode' \
    '\[guest\] Hello from a real-mode guest' \
    'power off: status 0'

boot_case smp-4cpu bochs 150 - --cpus 4 \
    --entry hello "log=info" --module build/guests/hello.bin "" -- \
    '!FAIL' '!\[warn\] cpu' \
    'cpu 1 \(APIC ID 1\): VMX root mode' \
    'cpu 2 \(APIC ID 2\): VMX root mode' \
    'cpu 3 \(APIC ID 3\): VMX root mode' \
    'cpus: 4 of 4 in VMX root mode' \
    '\[guest\] Hello from a real-mode guest' \
    'power off: status 0'

# cpus=1: the boot CPU only; the other stays halted where the BIOS left it.
boot_case smp-limit bochs 120 - --cpus 2 \
    --entry hello "log=info cpus=1" --module build/guests/hello.bin "" -- \
    '!FAIL' '!cpu 1 \(APIC ID' \
    'cpus: 1 of 2 in VMX root mode: the boot CPU \(APIC ID 0\); cpus=1 leaves the other 1 halted' \
    '\[guest\] Hello from a real-mode guest' \
    'power off: status 0'

# The passthrough Linux guest in a 2-CPU Bochs. By default (smp=on) Linux
# starts the second CPU itself through its local APIC and runs on both, each
# in VMX non-root operation, and powers off through ACPI S5 (about 5 minutes).
# With smp=off the second CPU parks in VMX root mode and the guest's MADT
# hides it: Linux runs on one CPU (linux-pt-2cpu). That one and four CPUs
# (about 10 minutes each) run by name or with SMP_LINUX=1.
# linux_smp_case NAME CPUS LIMIT OPTIONS PATTERN...
linux_smp_case() {
    local name=$1 cpus=$2 limit=$3 options=$4; shift 4
    boot_case "$name" bochs "$limit" - --cpus "$cpus" --ips 100000000 --megs 512 --disk build/linux/disk.img \
        --entry "$name" "log=info platform=passthrough$options" \
        --module build/linux/vmlinuz "$linux_cmdline_passthrough" \
        --module build/linux/initramfs-pt.cpio.gz "" -- \
        '!\[warn\] cpu' "${pt_patterns[@]}" 'PT-HYPERVISOR yes' "$@"
}
by_name_or_smp_linux() { [ "${SMP_LINUX:-0}" = 1 ] || [[ " ${only[*]} " =~ " $1 " ]]; }

linux_smp_case linux-pt-smp 2 900 "" \
    'cpu 1 \(APIC ID 1\): its vCPU waits for the guest.s start-up IPI' \
    'its MADT lists all 2 processor entries, each CPU with a vCPU' \
    'smp: Brought up 1 node, 2 CPUs' \
    'PT-INTERRUPTS LOC: [1-9][0-9]* [1-9][0-9]* ' \
    'PT-CPUS 2' \
    'PT-CPU-WORK cpu0 \+[1-9][0-9]* cpu1 \+[1-9][0-9]* '
by_name_or_smp_linux linux-pt-2cpu && linux_smp_case linux-pt-2cpu 2 900 " smp=off" \
    'cpu 1 \(APIC ID 1\): VMX root mode' \
    'cpus: 2 of 2 in VMX root mode' \
    'its MADT keeps 1 processor entries .* and hides 1 of CPUs without a vCPU' \
    'Linux version 6\.1' \
    'PT-CPUS 1'
by_name_or_smp_linux linux-pt-smp-4cpu && linux_smp_case linux-pt-smp-4cpu 4 1200 "" \
    'cpu 3 \(APIC ID 3\): its vCPU waits for the guest.s start-up IPI' \
    'its MADT lists all 4 processor entries, each CPU with a vCPU' \
    'smp: Brought up 1 node, 4 CPUs' \
    'PT-INTERRUPTS LOC: [1-9][0-9]* [1-9][0-9]* [1-9][0-9]* [1-9][0-9]* ' \
    'PT-CPUS 4' \
    'PT-CPU-WORK cpu0 \+[1-9][0-9]* cpu1 \+[1-9][0-9]* cpu2 \+[1-9][0-9]* cpu3 \+[1-9][0-9]* '

# smp=on with a multiboot kernel of our own (Tests/guests/mbsmp.asm): it
# finds the other CPUs in the firmware's MADT, starts each with INIT-SIPI-SIPI
# through its local APIC, runs code there, restarts one with INIT and a
# STARTUP IPI to another page, and powers off; the hypervisor routes the
# INIT and STARTUP IPIs to the vCPUs and stops them all at the end.
mbsmp_patterns=(
    '!FAIL' '!\[warn\]' '!\[error\]'
    'mbsmp: cpu 01 running in protected mode \(cpuid apic id 01, hypervisor yes\)'
    'mbsmp: cpu 01 workload ok'
    'mbsmp: cpu 01 started again at vector 09'
    'mbsmp: cpu 01 restart ok'
    'mbsmp: all checks passed'
    'cpu 0 \(APIC ID 0\) stopped the guest'
    'exit statistics: cpu 1 \(APIC ID 1\): [1-9][0-9]* exits'
    '^\[info\] power off: status 0'
)
boot_case smp-mbsmp bochs 120 - --cpus 2 \
    --entry mbsmp "log=info platform=passthrough smp=on" --module build/guests/mbsmp.bin "mbsmp" -- \
    "${mbsmp_patterns[@]}" \
    'mbsmp: 2 CPUs running'
boot_case smp-mbsmp-4cpu bochs 150 - --cpus 4 \
    --entry mbsmp "log=info platform=passthrough smp=on" --module build/guests/mbsmp.bin "mbsmp" -- \
    "${mbsmp_patterns[@]}" \
    'mbsmp: cpu 03 running in protected mode \(cpuid apic id 03, hypervisor yes\)' \
    'exit statistics: cpu 3 \(APIC ID 3\): [1-9][0-9]* exits' \
    'mbsmp: 4 CPUs running'
# With smp=off the second CPU waits in VMX root mode, where INIT is blocked
# and a STARTUP IPI ignored: a guest that finds it in the firmware's MADT
# anyway cannot start it (outside VMX or at all).
boot_case smp-mbsmp-parked bochs 120 - --cpus 2 \
    --entry mbsmp "log=info platform=passthrough smp=off" --module build/guests/mbsmp.bin "mbsmp" -- \
    '!exit statistics: cpu' '!mbsmp: cpu 01 running' \
    'cpu 1 \(APIC ID 1\): VMX root mode' \
    'mbsmp: FAIL: cpu 01 did not arrive within 5 s' \
    'guest powered off with status 1'

# The failure reports, by self-test: a CPU whose VMX capabilities differ from
# the boot CPU's, and a CPU that never starts; the hypervisor goes on.
boot_case smp-mismatch bochs 120 - --cpus 2 \
    --entry hello "log=info test=ap-mismatch" --module build/guests/hello.bin "" -- \
    '!FAIL' \
    'cpu 1 \(APIC ID 1\): its VMX capabilities differ from the boot CPU.s \(IA32_VMX_MISC\): halted outside VMX; the hypervisor goes on without it' \
    'cpus: 1 of 2 in VMX root mode' \
    '\[guest\] Hello from a real-mode guest' \
    'power off: status 0'
boot_case smp-missing bochs 120 - --cpus 2 \
    --entry hello "log=info test=ap-missing" --module build/guests/hello.bin "" -- \
    '!FAIL' \
    'cpu 1 \(APIC ID 1\): VMX root mode' \
    'cpu 2 \(APIC ID 127\): did not start after INIT-SIPI-SIPI; the hypervisor goes on without it' \
    'cpus: 2 of 2 in VMX root mode' \
    '\[guest\] Hello from a real-mode guest' \
    'power off: status 0'
