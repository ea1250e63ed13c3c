# The test-guest cases (sourced by run.sh after cases.sh). Each boots the
# kernel in Bochs with one guest from Tests/guests as its module2 (built to
# build/guests/NAME.bin) and matches the transcript: the guest's own lines,
# echoed by the hypervisor as "[guest] ...", and the hypervisor's last line.
# No case may show FAIL anywhere.

# guest_case NAME LIMIT PATTERN...: case guest-NAME, GRUB entry NAME.
guest_case() {
    local name=$1 limit=$2; shift 2
    boot_case "guest-$name" bochs "$limit" - \
        --entry "$name" "log=info" --module "build/guests/$name.bin" "" -- \
        '!FAIL' "$@"
}

guest_case hello 90 \
    '\[guest\] Hello from a real-mode guest' \
    'power off: status 0'

guest_case cpuid 90 \
    '\[guest\] cpuid: vendor GenuineIntel' \
    '\[guest\] cpuid: hypervisor bit set' \
    '\[guest\] cpuid: VMX hidden' \
    '\[guest\] cpuid: max hypervisor leaf 0x40000001' \
    '\[guest\] cpuid: signature SwiftVMXhv' \
    '\[guest\] cpuid: repeated leaf 1 answers the same' \
    '\[guest\] cpuid: leaf 4 subleaves 0 and 1 kept apart' \
    '\[guest\] cpuid: OSXSAVE follows CR4 on' \
    '\[guest\] cpuid: OSXSAVE follows CR4 off' \
    '10 CPUID: [0-9]+ exits \([1-9][0-9]* fast path\)' \
    '\[guest\] cpuid: all checks passed' \
    'power off: status 0'

guest_case xsetbv 90 \
    '\[guest\] xsetbv: CR4\.OSXSAVE set, CPUID\.1:ECX\.OSXSAVE=1' \
    '\[guest\] xsetbv: XCR0=3 accepted' \
    '\[guest\] xsetbv: #GP for invalid XCR0=0 \(x87 clear\)' \
    '\[guest\] xsetbv: #GP for invalid XCR0=5 \(AVX without SSE\)' \
    '\[guest\] xsetbv: XCR0 still 3' \
    '\[guest\] xsetbv: all checks passed' \
    'power off: status 0'

guest_case modeswitch 90 \
    '\[guest\] mode: protected' \
    '\[guest\] mode: long mode, EFER\.LMA=1' \
    '\[guest\] mode: CR0, CR3, CR4 read back' \
    '\[guest\] mode: 64-bit store and load at 8 MiB' \
    '\[guest\] mode: all checks passed' \
    'power off: status 0'

guest_case msr 90 \
    '\[guest\] msr: switched MSRs read back' \
    '\[guest\] msr: FS_BASE read back' \
    '\[guest\] msr: TSC advances' \
    '\[guest\] msr: #GP on non-canonical LSTAR, value kept' \
    '\[guest\] msr: #GP on unknown MSR read' \
    '\[guest\] msr: #GP on unknown MSR write' \
    '\[guest\] msr: all checks passed' \
    'power off: status 0'

guest_case io 90 \
    '\[guest\] io: scratch register reads back 0x5a' \
    '\[guest\] io: unclaimed port reads 0xff([^f]|$)' \
    '\[guest\] io: unclaimed port reads 0xffff([^f]|$)' \
    '\[guest\] io: unclaimed port reads 0xffffffff' \
    '\[guest\] io: rep outsb line \(DS=07C0\)' \
    '\[guest\] io: rep outsb left CX=0 and SI past the line' \
    '\[guest\] io: rep outsb line backwards \(DF=1\)' \
    '\[guest\] io: rep outsb with DF=1 left CX=0 and SI below the line' \
    '\[guest\] io: rep insb filled 4 bytes at 1000:0100' \
    '\[guest\] io: all checks passed' \
    'power off: status 0'

guest_case vmcall 90 \
    '\[guest\] vmcall: console write([^ ]|$)' \
    '\[guest\] vmcall: console write returned its length' \
    '\[guest\] vmcall: console write of 4097 bytes returns -2' \
    '\[guest\] vmcall: null returns 0' \
    '18 VMCALL: [0-9]+ exits \([1-9][0-9]* fast path\)' \
    '\[guest\] vmcall: EDX, ESI, EDI, EBP preserved' \
    '\[guest\] vmcall: TSC advances' \
    '\[guest\] vmcall: unknown returns -1' \
    '\[guest\] vmcall: power off' \
    'power off: status 0'

guest_case timer 120 \
    '\[guest\] timer: vector 31 refused with -2' \
    '\[guest\] timer: armed vector 0x20, period 200000' \
    '\[guest\] timer: 10 interrupts' \
    '\[guest\] timer: none delivered while IF=0' \
    '\[guest\] timer: held interrupt delivered after STI' \
    '\[guest\] timer: disarmed' \
    '\[guest\] timer: no interrupts after disarm' \
    '\[guest\] timer: all checks passed' \
    'power off: status 0'

# The guest reads GPA 0xc0000000, outside its RAM: reported, guest stopped.
guest_case ept 90 \
    '\[guest\] ept: touching 0xC0000000' \
    'EPT violation.*0x0*[cC]0000000' \
    'power off: status [1-9]' \
    '!power off: status 0'

guest_case triplefault 90 \
    '\[guest\] triple: loading an empty IDT' \
    '[Tt]riple fault' \
    'guest RIP=0x[0-9a-f]+ RSP=0x[0-9a-f]+' \
    'guest CR0=0x[0-9a-f]+ CR3=' \
    'power off: status [1-9]' \
    '!power off: status 0'

guest_case vmxguest 90 \
    '\[guest\] vmx: CPUID hides VMX' \
    '\[guest\] vmx: #UD on VMXON' \
    '\[guest\] vmx: #UD on VMCLEAR' \
    '\[guest\] vmx: #UD on VMPTRLD' \
    '\[guest\] vmx: #UD on VMPTRST' \
    '\[guest\] vmx: #UD on VMREAD' \
    '\[guest\] vmx: #UD on VMWRITE' \
    '\[guest\] vmx: #UD on VMLAUNCH' \
    '\[guest\] vmx: #UD on VMRESUME' \
    '\[guest\] vmx: #UD on INVEPT' \
    '\[guest\] vmx: #UD on INVVPID' \
    '\[guest\] vmx: #UD on VMXOFF' \
    '\[guest\] vmx: all checks passed' \
    'power off: status 0'

# A multiboot kernel linked at 0x8000 whose bss covers the loader's usual
# structure addresses: the loader puts them elsewhere.
guest_case mblow 90 \
    '\[guest\] mblow: magic ok' \
    '\[guest\] mblow: info 00001100 mmap 00001200 cmdline 00002000 mods 00001300 name 00001400 esp 00008000' \
    '\[guest\] mblow: structures outside the image' \
    '\[guest\] mblow: image intact, bss zero' \
    '\[guest\] mblow: all checks passed' \
    'power off: status 0'

# The passthrough platform with a multiboot kernel of our own: the machine's
# local APIC through its MMIO page, the firmware's memory map with the
# hypervisor's image reserved; COM1 is the real UART (no [guest] prefix).
# By default the same kernel gets the isolated platform: the hypervisor's
# virtual local APIC (its MMIO page decoded from EPT violations) and private RAM.
boot_case guest-mbapic-passthrough bochs 90 - \
    --entry mbapic "log=info platform=passthrough" --module build/guests/mbapic.bin "mbapic" -- \
    '!FAIL' \
    'platform: passthrough \(platform= on the command line\)' \
    'guest: multiboot, .*, the machine.s memory' \
    'mbapic: apic base fee00000 id 00000000 version 000[0-9a-f]{3}1[0-9a-f]' \
    'mbapic: apic ok' \
    'mbapic: 1 MiB is type 00000002' \
    'mbapic: all checks passed' \
    '^\[info\] power off: status 0'
boot_case guest-mbapic-isolated bochs 90 - \
    --entry mbapic "log=info" --module build/guests/mbapic.bin "mbapic" -- \
    '!FAIL' \
    'platform: isolated \(the default for a test guest\)' \
    'isolated: a local APIC at 0xfee00000 \(xAPIC and x2APIC\) and an IOAPIC at 0xfec00000' \
    '\[guest\] mbapic: apic base fee00000 id 00000000 version 00050014' \
    '\[guest\] mbapic: apic ok' \
    '\[guest\] mbapic: 1 MiB is type 00000001' \
    '\[guest\] mbapic: all checks passed' \
    'the CPU virtualizes the local APIC' '!EPT violation: ' '!APIC access: ' \
    '^\[info\] power off: status 0'

# Two CPUs with smp=on: the second CPU's vCPU waits for SIPI and the guest's
# MADT lists both; when the guest powers off, the boot CPU stops the other
# (a STARTUP IPI it exits on; its exits are in the report). With smp=off the
# second CPU parks in VMX root mode and the guest's MADT (the hypervisor's
# copy) hides it, so an OS following ACPI never tries to start it.
boot_case guest-mbapic-2cpu bochs 120 - --cpus 2 \
    --entry mbapic "log=info platform=passthrough smp=on" --module build/guests/mbapic.bin "mbapic" -- \
    '!FAIL' '!\[warn\]' \
    'cpu 1 \(APIC ID 1\): its vCPU waits for the guest.s start-up IPI' \
    'passthrough: ACPI: the guest.s RSDP at 0x[0-9a-f]+ lists the firmware.s [0-9]+ tables; its MADT lists all 2 processor entries, each CPU with a vCPU' \
    'mbapic: apic ok' \
    'mbapic: all checks passed' \
    'cpu 0 \(APIC ID 0\) stopped the guest' \
    'exit statistics: cpu 0 \(APIC ID 0\): [1-9][0-9]* exits' \
    'exit statistics: cpu 1 \(APIC ID 1\): [0-9]+ exits' \
    '^\[info\] power off: status 0'
boot_case guest-mbapic-2cpu-parked bochs 120 - --cpus 2 \
    --entry mbapic "log=info platform=passthrough smp=off" --module build/guests/mbapic.bin "mbapic" -- \
    '!FAIL' '!exit statistics: cpu' '!vCPU waits' \
    'cpus: 2 of 2 in VMX root mode' \
    'passthrough: ACPI: the guest.s RSDP at 0x[0-9a-f]+ lists the firmware.s [0-9]+ tables; its MADT keeps 1 processor entries \(this CPU, APIC ID 0, and those with a vCPU\) and hides 1 of CPUs without a vCPU' \
    'mbapic: all checks passed' \
    '^\[info\] power off: status 0'

# The isolated platform's local APIC (xAPIC page, timer modes, TPR/PPR, self
# IPIs, x2APIC MSRs) and IOAPIC, checked as a test kernel would, with the
# CPU's APIC virtualization (Bochs has it).
# TSC-deadline mode only when CPUID.1:ECX[24] is shown (else a skip line).
apictest_patterns=(
    '\[guest\] apictest: ok id register \(20H\) bits 31:24 = 0'
    '\[guest\] apictest: ok version register \(30H\) 0x14, max LVT 5 or 6'
    '\[guest\] apictest: ok spurious-vector register \(F0H\) resets to 0xFF'
    '\[guest\] apictest: ok lvt timer \(320H\) stays masked while software-disabled'
    '\[guest\] apictest: ok software enable \(SVR bit 8\) reads back 0x1FF'
    '\[guest\] apictest: ok tpr \(80H\) reads back 0x35'
    '\[guest\] apictest: ok ppr \(A0H\) follows tpr 0x35, then 0'
    '\[guest\] apictest: ok delivery status \(ICR bit 12\) idle'
    '\[guest\] apictest: ok self ipi pending in IRR \(200H\) while IF=0'
    '\[guest\] apictest: ok self ipi delivered once after STI'
    '\[guest\] apictest: ok ISR bit \(100H\) set in the handler'
    '\[guest\] apictest: ok ppr \(A0H\) = 0x40 in the handler'
    '\[guest\] apictest: ok EOI \(B0H\) clears the ISR bit'
    '\[guest\] apictest: ok ipis at or below the tpr class stay pending in IRR'
    '\[guest\] apictest: ok tpr 0x40 lets only vector 0x50 through'
    '\[guest\] apictest: ok lowering tpr to 0 delivers vector 0x40'
    '\[guest\] apictest: ok two pending vectors delivered highest first'
    '\[guest\] apictest: ok timer current count \(390H\) decreases'
    '\[guest\] apictest: ok timer current count reaches 0'
    '\[guest\] apictest: ok one-shot timer fires once'
    '\[guest\] apictest: ok periodic timer: at least 3 interrupts'
    '\[guest\] apictest: ok periodic timer stops on initial count 0'
    '\[guest\] apictest: ok masked lvt timer: no interrupt'
    '\[guest\] apictest: ok masked lvt timer: current count still reaches 0'
    '\[guest\] apictest: ok hlt wakes on the one-shot timer \(no watchdog\)'
    '\[guest\] apictest: (ok tsc-deadline \(MSR 6E0H\) fires once, not before the deadline|skip tsc-deadline)'
    '\[guest\] apictest: (ok tsc-deadline MSR reads 0 after firing|skip tsc-deadline)'
    '\[guest\] apictest: (ok tsc-deadline after WRMSR IA32_TSC \(10H\) := 0 fires once, not before the deadline|skip tsc-deadline)'
    '\[guest\] apictest: ok ioapic version \(index 1\) 0x00170020'
    '\[guest\] apictest: ok ioapic id \(index 0\) bits 27:24 read back'
    '\[guest\] apictest: ok ioapic redirection entry \(index 14H\) resets masked'
    '\[guest\] apictest: ok ioapic redirection entry round-trips vector, mask, destination'
    '\[guest\] apictest: ok x2apic enabled through IA32_APIC_BASE \(bits 10, 11\)'
    '\[guest\] apictest: ok x2apic id \(MSR 802H\) 0'
    '\[guest\] apictest: ok x2apic version \(MSR 803H\) as in xAPIC mode'
    '\[guest\] apictest: ok x2apic self ipi \(MSR 83FH\) pending in IRR \(MSR 822H\) while IF=0'
    '\[guest\] apictest: ok x2apic self ipi delivered, EOI by MSR 80BH clears ISR'
    '\[guest\] apictest: ok x2apic -> xapic through IA32_APIC_BASE: #GP\(0\)'
    '\[guest\] apictest: ok every interrupt arrived with IF=1'
    '\[guest\] apictest: all checks passed'
    'power off: status 0'
)
guest_case apictest 120 'the CPU virtualizes the local APIC' "${apictest_patterns[@]}"


# The same checks with the APIC emulated from EPT violations (apicv=off): both paths stay tested.
boot_case guest-apictest-emulated bochs 120 - \
    --entry apictest "log=info apicv=off" --module build/guests/apictest.bin "" -- \
    '!FAIL' 'local APIC is emulated from EPT violations \(apicv=off\)' '!APIC access: ' \
    "${apictest_patterns[@]}"
