# The system-test cases (sourced by run.sh). Each boots the kernel and matches
# its transcript. Statuses: QEMU exits with (status << 1) | 1.

# QEMU TCG has no VMX: banner, memory summary, the one clear line, status 2.
boot_case qemu-no-vmx qemu 30 5 --entry qemu "log=info" -- \
    'X86VCPU hypervisor' \
    'memory: [0-9]+ MiB usable' \
    'VMX is not available' \
    'power off: status 2'

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

# A module that is not a guest image: a clear error, nothing run.
boot_case bad-guest-image bochs 60 - --entry bad "log=info" --module README.md "" -- \
    'is not a boot-sector image' \
    '!VMX root mode on' \
    'power off: status 1'

# A kernel fault becomes a readable report and a failure status.
boot_case ud2-report qemu 30 7 --entry ud2 "test=ud2" -- \
    'FATAL: CPU exception 6 \(#UD invalid opcode\)' \
    'RIP=0x0000000000[0-9a-f]+' \
    'RAX=0x' \
    'power off: status 3' \
    '!power off: status 0'

# An unknown option is a warning, not a failure.
boot_case unknown-option qemu 30 5 --entry opt "log=info frobnicate=3" -- \
    '\[warn\].*frobnicate' \
    'VMX is not available'

# A broken guest state: VM entry fails, the report names the SDM rule, dumps
# the VMCS, and the hypervisor powers off with its failure status.
boot_case bad-guest-state bochs 60 - --entry bad "log=info test=bad-guest-state" --module build/guests/hello.bin "" -- \
    'VM entry failed: exit reason 33' \
    'VM-entry check failed: .*TR' \
    'guest TR access rights' \
    'power off: status 5' \
    '!Hello from a real-mode guest'
