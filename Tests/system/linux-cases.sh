# Real guests (sourced by run.sh): a multiboot (v1) kernel, and the Debian
# kernel to userspace through PVH and through the bzImage boot protocol.
# Xen's convention: the first module2 is the guest kernel with its command
# line, the next ones its modules / initrd.

boot_case guest-mbtest bochs 120 - \
    --entry mbtest "log=info" \
    --module build/guests/mbtest.elf "hello-cmdline" \
    --module Tests/guests/mbtest-module.txt "mod-arg" -- \
    'guest: multiboot' \
    '!FAIL' \
    'mbtest: magic ok' \
    'mbtest: mem_lower=[0-9]+K mem_upper=[0-9]+K' \
    'mbtest: mmap 0000000000000000 [0-9a-f]{16} 00000001' \
    "mbtest: cmdline '([^ ']+ )?hello-cmdline'" \
    'mbtest: modules 1' \
    "mbtest: module 0 size=39 string '([^ ']+ )?mod-arg'" \
    "mbtest: module 0 'module text: 012'" \
    'mbtest: all checks passed' \
    'power off: status 0'

# Bochs at ips=100M: at the default 4M the PIT would fire 25 times as often
# per instruction, each tick an exit. The command line is the base one
# (tools/linux/cmdline.sh) with nothing added: no `quiet`, so the banner and
# "Run /init" reach the serial transcript.
source "$tools/linux/cmdline.sh"
linux_release=$(cat build/linux/version 2>/dev/null || echo 6.1.0)
# linux-pvh runs on the default platform of an OS guest (passthrough: the
# machine's memory), linux-bzimage on the isolated one (its private RAM).
# RAM: a number of MiB (the isolated platform's private RAM), or "machine"
# (the passthrough platform, the default for an OS guest).
linux_case() {
    local name=$1 image=$2 format=$3 options=$4 ram=$5 memory
    if [ "$ram" = machine ]; then memory="guest: $format, .*, the machine's memory"; else memory="guest: $format, .*, $ram MiB of RAM"; fi
    boot_case "$name" bochs 900 - --ips 100000000 --megs 512 \
        --entry "$name" "$options" \
        --module "$image" "$linux_cmdline" \
        --module build/linux/initramfs.cpio.gz "" -- \
        "$memory" \
        'Linux version 6\.1' \
        'Run /init as init process' \
        'X86VCPU-TSC [0-9]+' \
        'X86VCPU-GUEST-USERSPACE-OK' \
        "uname: ${linux_release//./\\.}" \
        'hypervisor flag: yes' \
        'vecstate: ok \(AVX-512\)' \
        '!vecstate: lost' \
        'guest powered off with status 0' \
        'exit statistics: [0-9]+ exits' \
        'power off: status 0' \
        '!Kernel panic'
}
linux_case linux-pvh build/linux/vmlinux 'PVH ELF' "log=info" machine
linux_case linux-bzimage build/linux/vmlinuz 'Linux bzImage' "log=info platform=isolated guest_mem=256M" 256

# The boot-overhead figure: the same bzImage, initramfs and command line
# booted bare from GRUB in the same Bochs configuration. Bochs's TSC counts
# instructions from reset, and /init's first command prints it.
overhead_case() {
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " linux-overhead " ]]; then return; fi
    local hv bare
    hv=$(tr -d '\r' < build/systest/linux-bzimage.txt 2>/dev/null | awk 'sub(/.*X86VCPU-TSC /, "") { print $1; exit }')
    Tests/linux/bare-boot.sh --engine bochs --cmdline "$linux_cmdline" build/linux > build/systest/linux-bare.log 2>&1
    bare=$(tr -d '\r' < build/linux/bare-bochs.txt 2>/dev/null | awk 'sub(/.*X86VCPU-TSC /, "") { print $1; exit }')
    if [ -n "$hv" ] && [ -n "$bare" ]; then
        echo "PASS linux-overhead: instructions from reset to /init: bare $bare, under the hypervisor $hv," \
             "ratio $(awk -v h="$hv" -v b="$bare" 'BEGIN { printf "%.4f", h / b }') (goal <= 1.05)"
        passed=$((passed + 1))
    else
        echo "FAIL linux-overhead: bare '${bare:-none}', hypervisor '${hv:-none}' (see build/systest/linux-bare.log)"
        failed=$((failed + 1)); failures+=(linux-overhead)
    fi
}
overhead_case

# The isolated platform with the plain command line: Linux finds the
# hypervisor's ACPI tables (hardware-reduced: no legacy PIC or PIT), its local
# APIC (the TSC-deadline timer ticks) and IOAPIC (COM1's interrupt, from the
# DSDT, through the IOAPIC: userspace output needs it).
boot_case linux-isolated-apic bochs 900 - --ips 100000000 --megs 512 \
    --entry linux-isolated-apic "log=info platform=isolated guest_mem=256M" \
    --module build/linux/vmlinux "console=ttyS0 lpj=400000" \
    --module build/linux/initramfs.cpio.gz "" -- \
    'platform: isolated \(platform= on the command line\)' \
    'isolated: ACPI tables at 0xe0000' \
    'ACPI: APIC 0x00000000000E0' \
    'IOAPIC\[0\]: apic_id 1, version 32, address 0xfec00000' \
    'TSC deadline timer available' \
    'ttyS0 at I/O 0x3f8 \(irq = [0-9]+' \
    'X86VCPU-GUEST-USERSPACE-OK' \
    'interrupts: LOC [0-9]+ -> [0-9]+ \(ticking yes\), IO-APIC lines [1-9]' \
    'vecstate: ok \(AVX-512\)' \
    'guest powered off with status 0' \
    '!Kernel panic' \
    'power off: status 0'
