# The passthrough platform (sourced by run.sh): Linux owns the machine's
# devices (ATA disk, PCI, local APIC, IOAPIC, ACPI tables, PIT) and
# guest-physical = host-physical. The same bzImage, initramfs-pt (its /init
# is tools/linux/init-passthrough: one PT- line per check) and known disk
# (build/linux/disk.img, make linux-pt-assets) booted three ways:
#   linux-pt-bare   bare from GRUB (Tests/linux/bare-boot.sh --pt)
#   linux-pt        under the hypervisor, platform=passthrough, bzImage
#   linux-pt-pvh    the same through PVH (module2 vmlinux)
# then linux-pt-same / linux-pt-pvh-same compare what the guest saw under the
# hypervisor with what it saw bare (PCI devices, ACPI tables, disk sum, the
# disk's IRQ, CPUs). The command line is the plain one: no noapic, nolapic,
# acpi=off (tools/linux/cmdline.sh, linux_cmdline_passthrough).
source "$tools/linux/cmdline.sh"

# What Linux must show whenever it owns the devices, bare or not. No ^ or $
# anchors: the console's lines end in \r, and kernel messages may interleave.
pt_patterns=(
    'X86VCPU-TSC [0-9]+'
    'PT-MODULES ok'
    'PT-DISK sum=[0-9a-f]{64} expected=[0-9a-f]{64} bytes=[0-9]+ ok'
    'PT-LOC-TICKING yes'
    'PT-IOAPIC yes'
    'PT-ATA-IRQ irq=[0-9]+ count=[1-9][0-9]* chip=IO-APIC ok'
    'PT-ACPI tables: .*APIC'
    'PT-ACPI yes'
    'PT-PCI [1-9][0-9]* devices:'
    'PT-CPUS [1-9]'
    'PT-VECSTATE ok'
    'PT-DONE'
    # The ACPI power-off (S5). The emulator must really switch off: a run
    # that only halts ends in boot.sh's timeout, which fails the case.
    'ACPI: PM: Preparing to enter system sleep state S5'
    'reboot: Power down'
    '!PT-[A-Z-]+ .*BAD'
    '!PT-MODULES FAIL'
    '!Kernel panic'
)

# (a) Bare: bare-boot.sh --pt boots it (the same Bochs configuration as the
# overhead figure: ips=100M, 512 MiB) and ends the emulator if it does not
# switch itself off; its transcript is then checked like a boot_case's.
# Bochs exposes VMX to a bare guest (corei7_skylake_x), and no hypervisor bit.
pt_bare_case() {
    local name=linux-pt-bare
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then return; fi
    local log=$out/$name.txt start secs ok=1
    rm -f "$log"
    start=$(date +%s.%N)
    Tests/linux/bare-boot.sh --pt --engine bochs build/linux > "$out/$name.log" 2>&1
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    cp build/linux/bare-pt-bochs.txt "$log" 2>/dev/null || touch "$log"
    grep -q 'switched itself off on the ACPI power-off: no' "$out/$name.log" \
        && { echo "  $name: Bochs did not switch itself off on the ACPI power-off"; ok=0; }
    check "$name" "$log" "${pt_patterns[@]}" 'PT-HYPERVISOR no' 'PT-VMX yes' || ok=0
    verdict "$name" $ok "bochs, ${secs}s, summary $out/$name.log" "$log"
}
pt_bare_case

# (b) Under the hypervisor: the same images, the guest's command line the
# plain one, the hypervisor's `platform=passthrough`. The disk is on
# ata0-master as bare (boot.sh --disk). VMX is hidden from the guest and the
# hypervisor bit set, as on the isolated platform. How the machine switches
# off is the hypervisor's choice (the guest's own write to the FADT's PM1a
# control block reaching Bochs, or the hypervisor powering off after it):
# the case wants the guest's S5 lines and no timeout.
pt_case() {
    local name=$1 image=$2 format=$3
    boot_case "$name" bochs 900 - --ips 100000000 --megs 512 --disk build/linux/disk.img \
        --entry "$name" "log=info platform=passthrough" \
        --module "$image" "$linux_cmdline_passthrough" \
        --module build/linux/initramfs-pt.cpio.gz "" -- \
        'platform: passthrough' \
        "guest: $format" \
        'Linux version 6\.1' \
        "${pt_patterns[@]}" \
        'PT-HYPERVISOR yes' \
        'PT-VMX no' \
        'vecstate: ok \(AVX-512\)'
}
pt_case linux-pt build/linux/vmlinuz 'Linux bzImage'
pt_case linux-pt-pvh build/linux/vmlinux 'PVH ELF'

# pt_line FILE PREFIX: the first line of FILE starting with PREFIX, without \r
# (console output) or trailing blanks.
pt_line() {
    tr -d '\r' < "$1" 2>/dev/null | grep -a -m 1 -- "^$2" | sed 's/[[:space:]]*$//'
}

# Under the hypervisor the guest must see the machine it would see bare: the
# same PCI functions, ACPI tables, disk content, the disk's IRQ line and CPU
# count. The interrupt counts, LOC figures and TSC differ by nature: the TSC
# ratio is printed for information, as linux-overhead does.
pt_compare_case() {
    local name=$1 hv=$out/$2.txt bare=$out/linux-pt-bare.txt prefix a b ok=1
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then return; fi
    for prefix in 'PT-PCI ' 'PT-ACPI tables:' 'PT-DISK sum=' 'PT-CPUS ' 'PT-ATA-IRQ irq='; do
        a=$(pt_line "$bare" "$prefix"); b=$(pt_line "$hv" "$prefix")
        case $prefix in
        'PT-DISK sum=') a=${a%% expected=*}; b=${b%% expected=*} ;;
        'PT-ATA-IRQ irq=') a=${a%% count=*}; b=${b%% count=*} ;;
        esac
        if [ -z "$a" ] || [ -z "$b" ]; then
            echo "  $name: '$prefix' missing: bare '${a:-none}', hypervisor '${b:-none}'"; ok=0
        elif [ "$a" != "$b" ]; then
            echo "  $name: differs: bare '$a', hypervisor '$b'"; ok=0
        fi
    done
    a=$(pt_line "$bare" 'X86VCPU-TSC '); b=$(pt_line "$hv" 'X86VCPU-TSC ')
    if [ $ok = 1 ]; then
        echo "PASS $name: PCI, ACPI tables, disk sum, disk IRQ and CPUs as bare; TSC at /init bare ${a#X86VCPU-TSC }," \
             "hypervisor ${b#X86VCPU-TSC }$([ -n "$a" ] && [ -n "$b" ] && awk -v h="${b#X86VCPU-TSC }" -v b="${a#X86VCPU-TSC }" 'BEGIN { printf ", ratio %.4f", h / b }')"
        passed=$((passed + 1))
    else
        echo "FAIL $name ($bare vs $hv)"; failed=$((failed + 1)); failures+=("$name")
    fi
}
pt_compare_case linux-pt-same linux-pt
pt_compare_case linux-pt-pvh-same linux-pt-pvh

# A passthrough guest's triple fault resets the machine: the hypervisor
# reports it, then resets through the PCI reset control register (0xCF9), and
# the machine boots again (GRUB, the hypervisor, the same guest...). The case
# lets it run 20 s and wants at least two boots and no power-off.
pt_reset_case() {
    local name=guest-passthrough-reset
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " $name " ]]; then return; fi
    local iso=$out/$name.iso log=$out/$name.txt boots ok=1
    rm -f "$log"
    "$tools/mkiso.sh" "$iso" "$kernel" --entry reset "log=info platform=passthrough" \
        --module build/guests/triplefault.bin "" >/dev/null || ok=0
    "$tools/boot.sh" --engine bochs --serial "$log" --timeout 20 "$iso" >/dev/null 2>&1
    touch "$log"
    boots=$(grep -ac 'X86VCPU hypervisor' "$log")
    [ "$boots" -ge 2 ] || { echo "  $name: $boots boot(s), expected the machine to boot again"; ok=0; }
    check "$name" "$log" 'guest stopped: triple fault at RIP' \
        'passthrough: the guest reset the machine \(triple fault\): resetting it' '!power off: status' || ok=0
    verdict "$name" $ok "bochs, $boots boots in 20 s" "$log"
}
pt_reset_case
