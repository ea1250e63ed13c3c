# Hostile-guest cases (sourced by run.sh). Each guest in Tests/guests/hostile*
# probes one class of forbidden or awkward guest behaviour and must get the
# architectural result: every probe line "ok ...", no FAIL, and the host's
# power-off line with the guest's own status 0, never 3 (host trap) or 5
# (hypervisor failure).

# hostile_case NAME LIMIT [--cpu MODEL] [--apicv-off] PATTERN...: case
# guest-NAME (with --cpu: guest-NAME-MODEL, the Bochs CPU model instead of
# boot.sh's default; with --apicv-off: guest-NAME-emulated, the local APIC
# emulated from EPT violations instead of the CPU's APIC virtualization).
hostile_case() {
    local name=$1 limit=$2 case=guest-$1 engine_args=() options="log=info"; shift 2
    if [ "${1:-}" = --cpu ]; then engine_args=(--cpu "$2"); case=$case-$2; shift 2; fi
    if [ "${1:-}" = --apicv-off ]; then options="log=info apicv=off"; case=$case-emulated; shift; fi
    boot_case "$case" bochs "$limit" - "${engine_args[@]}" \
        --entry "$name" "$options" --module "build/guests/$name.bin" "" -- \
        '!FAIL' '!power off: status [35]([^0-9]|$)' "$@" \
        "\\[guest\\] $name: all checks passed" '^\[info\] power off: status 0'
}

hostile_case hostile-cr 90 \
    '\[guest\] hostile-cr: ok cr4-reserved-bit #GP' \
    '\[guest\] hostile-cr: (ok|skip) cr4-pcide-legacy' \
    '\[guest\] hostile-cr: (ok cr4-cet-with-wp0|skip cr4-cet-with-wp0)' \
    '\[guest\] hostile-cr: ok cr0-pg-without-pe #GP' \
    '\[guest\] hostile-cr: ok cr0-nw-without-cd #GP' \
    '\[guest\] hostile-cr: ok cr0-bit32 #GP' \
    '\[guest\] hostile-cr: ok cr4-reserved-bit-long-mode #GP' \
    '\[guest\] hostile-cr: (ok|skip) cr4-la57-toggle' \
    '\[guest\] hostile-cr: ok cr3-bit63-without-pcide #GP' \
    '\[guest\] hostile-cr: (ok cr4-pcide-with-cr3-low-bits|skip cr4-pcide probes)'

# Tiger Lake has PCID and CET. The guest's CPUID hides CET (its state is not
# emulated), so CR4.CET is a reserved bit for the guest and the CET probes
# print skip; the reserved-bit probe covers the #GP (no Bochs model has LA57).
hostile_case hostile-cr 90 --cpu tigerlake \
    '\[guest\] hostile-cr: ok cr4-reserved-bit #GP' \
    '\[guest\] hostile-cr: ok cr4-pcide-legacy #GP' \
    '\[guest\] hostile-cr: skip cr4-cet-with-wp0, cr0-wp-clear-with-cet \(no CET\)' \
    '\[guest\] hostile-cr: ok cr0-pg-without-pe #GP' \
    '\[guest\] hostile-cr: ok cr4-pcide-with-cr3-low-bits #GP'

hostile_case hostile-cr-stale 90 \
    '\[guest\] hostile-cr-stale: ok in protected mode' \
    '\[guest\] hostile-cr-stale: ok cr4-reserved-bit #GP\(0\) with error code' \
    '\[guest\] hostile-cr-stale: ok cr0-nw-without-cd #GP\(0\) with error code' \
    '\[guest\] hostile-cr-stale: ok cr0-pg-without-pe #GP\(0\) with error code'

hostile_case hostile-event-real 90 \
    '\[guest\] hostile-event-real: ok wrmsr unknown MSR \(from reset\): #GP via IVT, no error code' \
    '\[guest\] hostile-event-real: ok xsetbv XCR0=0 \(from reset\): #GP via IVT, no error code' \
    '\[guest\] hostile-event-real: ok back in real mode' \
    '\[guest\] hostile-event-real: ok wrmsr unknown MSR \(after PE on and off\): #GP via IVT, no error code' \
    '\[guest\] hostile-event-real: ok xsetbv XCR0=0 \(after PE on and off\): #GP via IVT, no error code'

hostile_case hostile-event 90 \
    '\[guest\] hostile-event: ok wrmsr unknown MSR \(PE set by a plain MOV\): #GP\(0\), error code on the stack' \
    '\[guest\] hostile-event: ok xsetbv XCR0=0 \(PE set by a plain MOV\): #GP\(0\), error code on the stack' \
    '\[guest\] hostile-event: ok wrmsr unknown MSR \(after a CR0 exit\): #GP\(0\), error code on the stack' \
    '\[guest\] hostile-event: ok xsetbv XCR0=0 \(after a CR0 exit\): #GP\(0\), error code on the stack'

hostile_case hostile-pae 90 \
    '\[guest\] hostile-pae: ok cr0-pg with reserved PDPTE bit: #GP, CR0 and CR3 unchanged' \
    '\[guest\] hostile-pae: ok cr0-pg with valid PDPTEs: PAE paging on' \
    '\[guest\] hostile-pae: ok cr3 load with reserved PDPTE bit: #GP, CR3 unchanged' \
    '\[guest\] hostile-pae: ok cr4-pae with paging on and reserved PDPTE bit: #GP, CR4 unchanged' \
    '\[guest\] hostile-pae: ok 32-bit paging still in force'

hostile_case hostile-strio 90 \
    '\[guest\] hostile-strio: ok fs rep outsb reads FS:ESI' \
    '\[guest\] hostile-strio: ok fs outsb reads FS:ESI' \
    '\[guest\] hostile-strio: ok insw straddling into a not-present page: #PF\(W\), EDI kept' \
    '\[guest\] hostile-strio: ok rep outsb from a not-present page: #PF\(R\), ESI and ECX kept' \
    '\[guest\] hostile-strio: ok ring 3 rep insb into a supervisor page: #PF\(P\|W\|U\), ECX and EDI kept'

# Bochs's corei7_skylake_x lacks IBRS/IBPB (the #GP branch); tigerlake has
# them (the read-back branch). The guest sees CPUID as the hypervisor filters it.
hostile_case hostile-spec 90 \
    '\[guest\] hostile-spec: (ok wrmsr SPEC_CTRL\.IBRS without IBRS: #GP|ok wrmsr SPEC_CTRL\.IBRS=1 reads back 1)' \
    '\[guest\] hostile-spec: (ok wrmsr PRED_CMD\.IBPB without IBPB: #GP|ok wrmsr PRED_CMD\.IBPB accepted)'

hostile_case hostile-spec 90 --cpu tigerlake \
    '\[guest\] hostile-spec: (ok wrmsr SPEC_CTRL\.IBRS without IBRS: #GP|ok wrmsr SPEC_CTRL\.IBRS=1 reads back 1)' \
    '\[guest\] hostile-spec: (ok wrmsr PRED_CMD\.IBPB without IBPB: #GP|ok wrmsr PRED_CMD\.IBPB accepted)'

# The transcript is the check here: control bytes as '?', CR dropped, every
# guest line (a wrapped long one too) under "[guest] ", no forged host line.
hostile_case hostile-console 90 \
    '\[guest\] hostile-console: nul \[\?\] end' \
    '\[guest\] hostile-console: esc \[\?\[2J\?\[31m\] end' \
    '\[guest\] hostile-console: cr \[abc\??\[info\] power off: status 9\] end' \
    '\[guest\] hostile-console: high \[\?\?\?\?\] end' \
    $'^\\[guest\\] \\[info\\] power off: status 9\r?$' \
    $'^\\[guest\\] \\??\\[error\\] VM entry failed: fake\r?$' \
    $'^\\[guest\\] x{200}\r?$' \
    $'^\\[guest\\] x{5}TAIL\r?$' \
    '\[guest\] hostile-console: vmcall \[\?\[2J\??\[info\] power off: status 8\?\] end' \
    '\[guest\] hostile-console: ok console hypercall returned its length' \
    '!^\[(info|error)\] power off: status [89]' \
    '!^\[error\] VM entry failed: fake' \
    $'!\r\\[(info|error)\\]' \
    $'!^\\[guest\\] .*\r.' \
    $'!^\\[guest\\] .*[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]'

# Optional class: the platform claims neither port, so reads give all ones.
hostile_case hostile-nmi-ports 90 \
    '\[guest\] hostile-nmi-ports: cmos\[0x34\] after writing 0x5a reads 0x000000ff' \
    '\[guest\] hostile-nmi-ports: port 0x61 before:after \(hex\) 0000ffff' \
    '\[guest\] hostile-nmi-ports: ok guest CMOS write did not reach a real NVRAM'

# A passthrough guest reaching for the hypervisor's image (GRUB loads it at
# 1 MiB): EPT maps everything but the hypervisor, so the read stops the guest
# with a report before it returns anything.
boot_case guest-hostile-ptprobe bochs 90 - \
    --entry mbapic "log=info platform=passthrough" --module build/guests/mbapic.bin "mbapic probe=100010" -- \
    'mbapic: apic ok' \
    '!mbapic: FAIL: read' \
    'guest stopped: EPT violation at GPA 0x100010 \(read, outside guest RAM\)' \
    '!power off: status [35]([^0-9]|$)' \
    'power off: status 6'

# Awkward but legal MMIO accesses to the emulated APIC and IOAPIC pages
# (Tests/guests/hostile-mmio.asm): every probe emulated with the value a
# plain 32-bit read predicts, the guest runs to its own status 0.
# Twice: the CPU's APIC virtualization (reads from the virtual-APIC page,
# the rest through APIC-access and APIC-write exits) and the emulation from
# EPT violations (apicv=off).
hostile_mmio_patterns=(
    '\[guest\] hostile-mmio: ok version \(30H\) plain 32-bit read'
    '\[guest\] hostile-mmio: ok read at 0xFEE00FFE \(straddles the page end\): 0'
    '\[guest\] hostile-mmio: ok read at 0xFEC00FFE \(straddles the page end\): 0'
    '\[guest\] hostile-mmio: ok byte into BH'
    '\[guest\] hostile-mmio: ok movsx dx, byte \[DFR\]'
    '\[guest\] hostile-mmio: ok mov sp, \[version\+2\]: ESP\[31:16\] kept'
    '\[guest\] hostile-mmio: ok 15-byte mov ax \(9 x 66H\) straddling a code page'
    '\[guest\] hostile-mmio: ok mov eax, \[moffs\] straddling a code page after its opcode'
    '\[guest\] hostile-mmio: ok mov eax, \[moffs\] in the last 7 bytes of guest RAM'
    '\[guest\] hostile-mmio: ok gs base 0xFFF00000, offset 0xFEF00030 \(linear wraps\)'
    '\[guest\] hostile-mmio: ok es base 0xFEE00000, 16-bit address \[bx\+0xFFF0\] wraps'
    '\[guest\] hostile-mmio: ok wrmsr 808H in xAPIC mode: #GP\(0\)'
    '\[guest\] hostile-mmio: ok apic moved to 0xFED00000: tpr kept'
    '\[guest\] hostile-mmio: ok apic moved back to 0xFEE00000: version'
    '\[guest\] hostile-mmio: ok ioapic version ignores a write'
    '\[guest\] hostile-mmio: ok lock mov \[tpr\], eax: #UD'
    '\[guest\] hostile-mmio: ok mov spl, \[rsi\+30h\] \(REX\): RSP bits 63:8 kept'
    '\[guest\] hostile-mmio: ok 8-byte read of ioapic version'
)
hostile_case hostile-mmio 120 'the CPU virtualizes the local APIC' "${hostile_mmio_patterns[@]}"

hostile_case hostile-mmio 120 --apicv-off \
    'local APIC is emulated from EPT violations \(apicv=off\)' \
    "${hostile_mmio_patterns[@]}"

# One-probe guests (Tests/guests/hostile-mmio-*.asm, hostile-mmio-stop.inc):
# an access to the APIC page the decoder must not emulate stops the guest with
# the EPT-violation report and status 6, never 3 or 5. These probe the
# decoder, so the APIC is emulated (apicv=off); with the CPU's APIC
# virtualization the CPU itself completes the read-modify-write and the odd
# encodings, and the string and IDT probes stop as APIC-access exits (below).
# mmio_stop_case NAME PATTERN...
mmio_stop_case() {
    local name=$1; shift
    boot_case "guest-$name" bochs 60 - \
        --entry "$name" "log=info apicv=off" --module "build/guests/$name.bin" "" -- \
        '!FAIL' '!power off: status [35]([^0-9]|$)' "\\[guest\\] $name: " \
        'power off: status 6' "$@"
}
mmio_stop_case hostile-mmio-rep 'guest stopped: EPT violation at GPA 0xfee00080 \(write'
mmio_stop_case hostile-mmio-rmw 'guest stopped: EPT violation at GPA 0xfee00080 \((read|write)'
mmio_stop_case hostile-mmio-fetch 'guest stopped: EPT violation at GPA 0xfee00000 \(instruction fetch'
mmio_stop_case hostile-mmio-decode 'guest stopped: EPT violation at GPA 0xfee00080 \(write'
mmio_stop_case hostile-mmio-walk 'guest stopped: EPT violation at GPA 0xfee00030 \(read.* at RIP 0x0*8000([^0-9a-fA-F]|$)'
mmio_stop_case hostile-mmio-idt 'guest stopped: EPT violation at GPA 0xfee00030 \(read.* at RIP 0x0*8000([^0-9a-fA-F]|$)'

# With the CPU's APIC virtualization: a REP string store and an IDT gate read
# from the APIC page are APIC-access exits the vCPU does not emulate.
apicv_stop_case() {
    local name=$1; shift
    boot_case "guest-$name-apicv" bochs 60 - \
        --entry "$name" "log=info" --module "build/guests/$name.bin" "" -- \
        '!FAIL' '!power off: status [35]([^0-9]|$)' "\\[guest\\] $name: " \
        'the CPU virtualizes the local APIC' 'power off: status 6' "$@"
}
apicv_stop_case hostile-mmio-rep 'guest stopped: unhandled exit reason 44 \(APIC access\), qualification 0x108[0-9a-f],'
apicv_stop_case hostile-mmio-idt 'guest stopped: unhandled exit reason 44 \(APIC access\), qualification 0x3030, RIP 0x0*8000([^0-9a-fA-F]|$)'

# Single-step over instructions the hypervisor emulates (Tests/guests/
# hostile-singlestep.asm): with RFLAGS.TF one #DB after each, returning right
# after it, DR6.BS set (SDM 18.3.1.4), the fast path's cached CPUID and null
# hypercall included; the NOP is the control. Bochs 2.7 keeps BS in the
# pending debug exceptions field at every VM exit (SDM 28.3.4 "Saving
# Non-Register State" says clear after CPUID or VMCALL), so under it a VMM
# that forgets BS still passes; real VMX hardware drops the #DB.
hostile_case hostile-singlestep 90 \
    '\[guest\] hostile-singlestep: ok nop \(control\)' \
    '\[guest\] hostile-singlestep: ok cpuid leaf 0 \(cached\)' \
    '\[guest\] hostile-singlestep: ok cpuid leaf 1 \(cached\)' \
    '\[guest\] hostile-singlestep: ok vmcall null' \
    '\[guest\] hostile-singlestep: ok in al, dx from 0x3ff' \
    '\[guest\] hostile-singlestep: ok out dx, al to 0x3ff' \
    '\[guest\] hostile-singlestep: ok rdmsr IA32_EFER' \
    '\[guest\] hostile-singlestep: ok wrmsr IA32_EFER \(same value\)'
