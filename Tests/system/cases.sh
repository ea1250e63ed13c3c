# The system-test cases (sourced by run.sh). Each boots the kernel and matches
# its transcript. Statuses: QEMU exits with (status << 1) | 1.

# QEMU TCG has no VMX: banner, memory summary, the one clear line, status 2.
boot_case qemu-no-vmx qemu 30 5 --entry qemu "log=info" -- \
    'X86VCPU hypervisor' \
    'memory: [0-9]+ MiB usable' \
    'VMX is not available' \
    'power off: status 2'

# The same ISO through UEFI (OVMF, q35): GRUB's EFI loader, the EFI memory
# map and the RSDP from the boot information, then the same clear VMX line.
boot_case qemu-uefi-no-vmx qemu 60 5 --uefi --entry qemu "log=info" -- \
    'X86VCPU hypervisor' \
    'memory map: EFI \(tag 17\), [0-9]+ entries' \
    'memory: [0-9]+ MiB usable' \
    'ACPI RSDP \(copy\) at 0x[0-9a-f]+, revision 2' \
    'VMX is not available' \
    'power off: status 2' \
    '!boot information:'

# The framebuffer console on UEFI (GOP): QEMU saves the screen once the kernel
# has powered off (halted: no exit device in this mode), and its first text
# row must be the banner in the kernel's font.
boot_case qemu-uefi-screen qemu 60 - --uefi --screendump 'power off: status 2' --entry qemu "log=info" -- \
    'X86VCPU hypervisor' \
    'power off: status 2' \
    '!framebuffer'
screen_case qemu-uefi-screen 'X86VCPU hypervisor (Embedded Swift), multiboot2 kernel'

# Bochs Skylake-X: a VMX summary that names EPT and unrestricted guest; with
# no module2 line there is no guest, which is said and is a failure.
boot_case bochs-vmx-summary bochs 60 - --entry bochs "log=info" -- \
    'X86VCPU hypervisor' \
    'memory: [0-9]+ MiB usable' \
    'VMX: revision [0-9a-fx]+' \
    'EPT: yes' \
    'unrestricted guest: yes' \
    'no guest: the boot entry has no module2 line' \
    'power off: status 1'

# Bad guest modules: each gets its own clear error and nothing runs.
bad=build/badmods
mkdir -p $bad
: > $bad/empty.bin
head -c 40 build/guests/mbtest.elf > $bad/truncated.elf
awk 'BEGIN { srand(7); for (i = 0; i < 4096; i++) printf "%c", int(rand() * 256) }' > $bad/random.bin
cp build/boot/cpu.o $bad/noentry.elf        # an ELF with no entry, no PVH note, no multiboot header
bad_case() {
    boot_case "bad-module-$1" bochs 60 - --entry bad "log=info" --module "$2" "" -- \
        "$3" '!VMX root mode on' 'power off: status 1'
}
bad_case empty $bad/empty.bin 'guest image is empty'
bad_case truncated $bad/truncated.elf 'guest image truncated'
bad_case random $bad/random.bin 'unknown guest image format'
bad_case noentry $bad/noentry.elf 'ELF image has neither a Xen PVH note nor a multiboot header|not a little-endian x86/x86-64 executable'

# A broken guest state: VM entry fails, the report names the SDM rule, dumps
# the VMCS, and the hypervisor powers off with its failure status.
boot_case bad-guest-state bochs 60 - --entry bad "log=info test=bad-guest-state" --module build/guests/hello.bin "" -- \
    'VM entry failed: exit reason 33' \
    'VM-entry check failed: .*TR' \
    'guest TR access rights' \
    'power off: status 5' \
    '!Hello from a real-mode guest'
