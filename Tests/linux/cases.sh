# Proposed system-test cases for the multiboot (v1) and Linux guests, for
# Tests/system/run.sh to source after cases.sh (boot_case is defined there).
# They need build/guests/mbtest.elf (nasm -f elf32 + ld -T Tests/guests/mbtest.ld)
# and build/linux/{vmlinux,vmlinuz,initramfs.cpio.gz,version}
# (Tests/linux/fetch.sh build/linux && Tests/linux/mkinitramfs.sh build/linux).
# Patterns are not anchored: the hypervisor may prefix the guest's lines.

# mbtest as a multiboot v1 guest: first module2 = the kernel and its command
# line, the next module2 = its module 0 (Xen's convention).
boot_case guest-mbtest bochs 120 - \
    --entry mbtest "log=info" \
    --module build/guests/mbtest.elf "hello-cmdline" \
    --module Tests/guests/mbtest-module.txt "mod-arg" -- \
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

# The Debian kernel as the guest, through PVH (vmlinux) and through the bzImage
# 64-bit boot protocol (vmlinuz). Bare in Bochs (ips=100M, from a GRUB ISO) the
# first command of /init runs at TSC 6.68 G (instructions + idle ticks from
# reset; about 215 s of wall time on a loaded 2-core machine). Under boot.sh's
# default ips=4000000 the PIT fires 25 times as often per instruction (each
# tick a VM exit under the hypervisor), so these want --ips 100000000.
# With acpi=off `poweroff -f` ends in "reboot: System halted" and CLI; HLT:
# the hypervisor has to treat HLT with IF=0 as the end of the guest.
linux_cmdline="console=ttyS0 noapic nolapic acpi=off quiet lpj=400000"
linux_release=$(cat build/linux/version 2>/dev/null || echo 6.1.0)
boot_case linux-pvh bochs 900 - \
    --entry linux-pvh "log=info" \
    --module build/linux/vmlinux "$linux_cmdline" \
    --module build/linux/initramfs.cpio.gz "" -- \
    'X86VCPU-TSC [0-9]+' \
    'X86VCPU-GUEST-USERSPACE-OK' \
    "uname: ${linux_release//./\\.}" \
    'hypervisor flag: yes' \
    'reboot: (System halted|Power down)'
boot_case linux-bzimage bochs 900 - \
    --entry linux-bzimage "log=info" \
    --module build/linux/vmlinuz "$linux_cmdline" \
    --module build/linux/initramfs.cpio.gz "" -- \
    'X86VCPU-TSC [0-9]+' \
    'X86VCPU-GUEST-USERSPACE-OK' \
    "uname: ${linux_release//./\\.}" \
    'hypervisor flag: yes' \
    'reboot: (System halted|Power down)'
