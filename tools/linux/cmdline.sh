# The Linux guest's command line, defined once. Sourced by whatever boots the
# Debian kernel: tools/guest-iso.sh (make run), Tests/system/linux-cases.sh,
# Tests/linux/bare-boot.sh. Callers append only their own words (`quiet`,
# `x86vcpu.shell`, ...):   "$linux_cmdline x86vcpu.shell"
#
#   console=ttyS0     the console on COM1: the terminal of make run, the serial
#                     transcript of the tests (the 8250 driver is built in)
#   noapic nolapic    the isolated platform's legacy path: Linux ignores the
#   acpi=off          hypervisor's local APIC, IOAPIC and ACPI tables and takes
#                     its interrupts from the legacy PIC and PIT, which it owns
#                     (README, "The isolated platform"; linux-isolated-apic
#                     boots the same kernel without them)
#   lpj=400000        a preset delay-loop constant (loops per jiffy): the kernel
#                     does not calibrate it at boot by counting loops over timer
#                     ticks (the boot figures in Tests/linux/README.md use it)
#   clearcpuid=xsaves,xsavec
#                     Bochs 2.7's compacted XSAVE format loses the upper halves
#                     of the YMM registers; without XSAVES/XSAVEC Linux keeps
#                     XSAVE and AVX-512 in the standard format, which Bochs gets
#                     right (README, "XSAVE in Bochs"). The hypervisor now hides
#                     both itself where the CPU's leaf 0xD disagrees with itself
#                     (the passthrough line below goes without); kept here so
#                     this line's boot figures stay comparable.
linux_cmdline="console=ttyS0 noapic nolapic acpi=off lpj=400000 clearcpuid=xsaves,xsavec"

# The passthrough tests' line (Tests/system/passthrough-cases.sh, bare-boot.sh
# --pt): Linux owns the machine's devices, so none of noapic, nolapic,
# acpi=off; the same line bare and under platform=passthrough.
# Only console= and lpj=: under the hypervisor XSAVEC/XSAVES are hidden by
# its CPUID (Bochs's leaf 0xD is inconsistent), bare Linux turns XSAVE off
# in Bochs for the same reason.
linux_cmdline_passthrough="console=ttyS0 lpj=400000"
