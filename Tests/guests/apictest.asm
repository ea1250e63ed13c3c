; apictest: the virtual local APIC and I/O APIC of the isolated platform,
; checked the way a test kernel would. A boot sector that enters 32-bit
; protected mode (own GDT and IDT, no paging) and uses the xAPIC page at
; 0xFEE00000, then the x2APIC MSRs (last: x2APIC cannot go back to xAPIC),
; and the I/O APIC at 0xFEC00000. SDM Vol. 3A "Advanced Programmable
; Interrupt Controller (APIC)"; 82093AA datasheet 3.2 "IOAPIC Registers".
; Each check prints "apictest: ok WHAT" or "apictest: FAIL WHAT ...";
; features CPUID does not show print "apictest: skip WHAT". Every wait is
; bounded by RDTSC time; nothing spins forever.
%define GUEST "apictest"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

APIC            equ 0xFEE00000          ; xAPIC page (IA32_APIC_BASE after reset)
IOAPIC          equ 0xFEC00000          ; IOREGSEL; IOWIN at +10H
A_ID            equ 0x20
A_VER           equ 0x30
A_TPR           equ 0x80
A_PPR           equ 0xA0
A_EOI           equ 0xB0
A_SVR           equ 0xF0
A_ISR           equ 0x100               ; 8 registers, 32 vectors each, 10H apart
A_IRR           equ 0x200
A_ICR           equ 0x300
A_ICR_HI        equ 0x310
A_LVT_TIMER     equ 0x320
A_INIT          equ 0x380
A_CUR           equ 0x390
A_DIV           equ 0x3E0
ICR_SELF        equ 1 << 18             ; destination shorthand 01: self
ICR_BUSY        equ 1 << 12             ; delivery status: send pending
LVT_MASKED      equ 1 << 16
LVT_PERIODIC    equ 1 << 17             ; timer mode 01
LVT_DEADLINE    equ 2 << 17             ; timer mode 10
MSR_APIC_BASE   equ 0x1B
MSR_TSC_DEADLINE equ 0x6E0
MSR_TSC         equ 0x10
APIC_BASE_EXTD  equ 1 << 10
APIC_BASE_EN    equ 1 << 11
X2_ID           equ 0x802
X2_VER          equ 0x803
X2_SELF_IPI     equ 0x83F

V_LOW           equ 0x40                ; self IPIs (class 4 and 5)
V_HIGH          equ 0x50
V_X2            equ 0x48
V_TIMER         equ 0x70
V_DEADLINE      equ 0x71
V_WATCHDOG      equ 0x90                ; the hypercall timer bounding HLT
WATCHDOG_PERIOD equ 200000000

TIMER_COUNT     equ 100000              ; initial count, divide by 1
SETTLE          equ 1000000             ; TSC ticks for a delivery that is due now
TIMER_LIMIT     equ 400000000           ; TSC ticks for the count to reach 0
DEADLINE_DELTA  equ 2000000
LOG_SIZE        equ 16

; RD off: eax = APIC register at xAPIC offset off (MMIO, or its x2APIC MSR).
%macro RD 1
        mov eax, %1
        call apic_read
%endmacro
; WR off, value (clobbers eax, edx).
%macro WR 2
        mov edx, %2
        mov eax, %1
        call apic_write
%endmacro
; CHECKV cc, "what": CHECK32 that also prints [got] on failure.
%macro CHECKV 2
        j%+1 %%ok
        PRINT32 %%bad
        mov eax, [got]
        call puthex32
        mov al, 10
        call putc32
        inc byte [failures]
        jmp %%next
%%ok:   PRINT32 %%good
        jmp %%next
%%good: db GUEST, ": ok ", %2, 10, 0
%%bad:  db GUEST, ": FAIL ", %2, ": got 0x", 0
%%next:
%endmacro
; EXPECT cc, value, "what": [got] = eax, compared with value, CHECKV cc.
%macro EXPECT 3
        mov [got], eax
        cmp eax, %2
        CHECKV %1, %3
%endmacro
; DELAY ticks / WAIT_LOG n, ticks: bounded waits with IF as it is.
%macro DELAY 1
        mov esi, %1
        mov ecx, -1
        call wait_log
%endmacro
%macro WAIT_LOG 2
        mov esi, %2
        mov ecx, %1
        call wait_log
%endmacro

        GUEST_ENTRY
        ENTER_PM32_FRESH
        jmp main
        BOOT_SIGNATURE

        bits 32
main:
        SET_IDT32 13, fault32e
        SET_IDT32 V_LOW, isr_40
        SET_IDT32 V_X2, isr_48
        SET_IDT32 V_HIGH, isr_50
        SET_IDT32 V_TIMER, isr_70
        SET_IDT32 V_DEADLINE, isr_71
        SET_IDT32 V_WATCHDOG, isr_watchdog
        mov eax, 1
        cpuid
        mov [cpuid1_ecx], ecx

        ; SDM "Local APIC ID": the xAPIC ID is in bits 31:24 (initial ID 0).
        RD A_ID
        mov [got], eax
        test eax, 0xFF000000
        CHECKV z, "id register (20H) bits 31:24 = 0"
        ; SDM "Local APIC Version Register": 14H, max LVT entry = entries - 1.
        RD A_VER
        mov [got], eax
        mov [version], eax
        cmp al, 0x14
        jne .version
        shr eax, 16
        cmp al, 5
        je .version
        cmp al, 6
.version:
        CHECKV e, "version register (30H) 0x14, max LVT 5 or 6"

        ; SDM "Spurious-Interrupt Vector Register": FFH after reset, software
        ; disabled; then "Local APIC State After It Has Been Software
        ; Disabled": the LVT mask bits cannot be cleared.
        RD A_SVR
        EXPECT e, 0xFF, "spurious-vector register (F0H) resets to 0xFF"
        WR A_LVT_TIMER, V_TIMER
        RD A_LVT_TIMER
        EXPECT e, LVT_MASKED | V_TIMER, "lvt timer (320H) stays masked while software-disabled"
        WR A_SVR, 0x1FF
        RD A_SVR
        EXPECT e, 0x1FF, "software enable (SVR bit 8) reads back 0x1FF"

        ; SDM "Task Priority Register (TPR)", "Processor Priority Register
        ; (PPR)": with nothing in service PPR = TPR.
        WR A_TPR, 0x35
        RD A_TPR
        EXPECT e, 0x35, "tpr (80H) reads back 0x35"
        RD A_PPR
        mov ebx, eax
        WR A_TPR, 0
        RD A_PPR
        shl ebx, 8
        or eax, ebx
        EXPECT e, 0x3500, "ppr (A0H) follows tpr 0x35, then 0"

        ; SDM "Interrupt Command Register (ICR)": fixed, edge, shorthand self.
        ; IF=0: the IPI waits in the IRR until STI.
        cli
        call reset_log
        WR A_ICR_HI, 0
        WR A_ICR, ICR_SELF | V_LOW
        mov ebx, 100                    ; delivery status: bounded poll
.busy:  RD A_ICR
        mov [got], eax
        test eax, ICR_BUSY
        jz .idle
        dec ebx
        jnz .busy
.idle:  test dword [got], ICR_BUSY
        CHECKV z, "delivery status (ICR bit 12) idle"
        DELAY SETTLE
        mov ebx, V_LOW
        call only_pending
        CHECK32 e, "self ipi pending in IRR (200H) while IF=0"
        sti
        WAIT_LOG 1, SETTLE
        DELAY SETTLE
        cli
        mov eax, V_LOW
        call log_is_one
        CHECK32 e, "self ipi delivered once after STI"
        cmp byte [isr_in], 1
        CHECK32 e, "ISR bit (100H) set in the handler"
        movzx eax, byte [ppr_in]
        EXPECT e, V_LOW, "ppr (A0H) = 0x40 in the handler"
        cmp byte [isr_after], 0
        jne .eoi
        mov ebx, V_LOW
        call vector_bits                ; and nothing left in IRR or ISR
.eoi:   CHECK32 e, "EOI (B0H) clears the ISR bit"

        ; SDM "Task Priority Register (TPR)": a fixed interrupt is delivered
        ; only when its class (vector[7:4]) is above PPR[7:4]. IF=1 all along.
        call reset_log
        WR A_TPR, 0x50
        sti
        WR A_ICR, ICR_SELF | V_LOW
        WR A_ICR, ICR_SELF | V_HIGH
        DELAY SETTLE
        mov ebx, V_LOW
        call only_pending
        jne .held
        mov ebx, V_HIGH
        call only_pending
.held:  CHECK32 e, "ipis at or below the tpr class stay pending in IRR"
        WR A_TPR, 0x40
        WAIT_LOG 1, SETTLE
        DELAY SETTLE
        mov eax, V_HIGH
        call log_is_one
        jne .part
        mov ebx, V_LOW
        call irr_test
        cmc
        sbb eax, eax                    ; ZF=1 if the IRR bit is still set
.part:  CHECK32 e, "tpr 0x40 lets only vector 0x50 through"
        WR A_TPR, 0
        WAIT_LOG 2, SETTLE
        DELAY SETTLE
        mov eax, V_HIGH | V_LOW << 8
        call log_is_two
        CHECK32 e, "lowering tpr to 0 delivers vector 0x40"
        ; "Interrupt Acceptance for Fixed Interrupts": highest vector first.
        cli
        call reset_log
        WR A_ICR, ICR_SELF | V_LOW
        WR A_ICR, ICR_SELF | V_HIGH
        sti
        WAIT_LOG 2, SETTLE
        DELAY SETTLE
        cli
        mov eax, V_HIGH | V_LOW << 8
        call log_is_two
        CHECK32 e, "two pending vectors delivered highest first"

        ; SDM "APIC Timer": one-shot, divide by 1; the current count runs
        ; down from the initial count to 0, then one interrupt.
        sti
        call reset_log
        WR A_DIV, 0xB
        WR A_LVT_TIMER, V_TIMER
        rdtsc
        mov [t0], eax
        WR A_INIT, TIMER_COUNT
        RD A_CUR
        mov [got], eax
        mov ebx, eax                    ; the last count read
        mov byte [count_bad], 1
        test eax, eax
        jz .counted
        cmp eax, TIMER_COUNT
        ja .counted
        mov byte [count_bad], 0
.count: RD A_CUR
        cmp eax, ebx
        jbe .down
        mov [got], eax
        mov byte [count_bad], 1         ; it went up
.down:  mov ebx, eax
        test eax, eax
        jz .counted
        rdtsc
        sub eax, [t0]
        cmp eax, TIMER_LIMIT
        jb .count
.counted:
        rdtsc
        sub eax, [t0]
        cmp eax, TIMER_COUNT            ; at least 1 TSC tick per count, for
        jae .t1                         ; the waits below
        mov eax, TIMER_COUNT
.t1:    mov [t1], eax                   ; TSC ticks for TIMER_COUNT counts
        cmp byte [count_bad], 0
        CHECKV e, "timer current count (390H) decreases"
        mov [got], ebx
        test ebx, ebx
        CHECKV z, "timer current count reaches 0"
        WAIT_LOG 1, SETTLE
        mov esi, [t1]
        add esi, esi
        add esi, SETTLE
        DELAY esi
        mov eax, V_TIMER
        call log_is_one
        CHECK32 e, "one-shot timer fires once"

        ; Periodic mode: the count reloads; at least 3 interrupts in 8 periods.
        call reset_log
        WR A_LVT_TIMER, V_TIMER | LVT_PERIODIC
        WR A_INIT, TIMER_COUNT
        mov esi, [t1]
        shl esi, 3
        add esi, SETTLE
        WAIT_LOG 3, esi
        mov eax, [log_count]
        EXPECT ae, 3, "periodic timer: at least 3 interrupts"
        ; "A write of 0 to the initial-count register effectively stops the
        ; local APIC timer, in both one-shot and periodic mode."
        WR A_INIT, 0
        DELAY SETTLE
        mov ebx, [log_count]
        mov esi, [t1]
        shl esi, 2
        add esi, SETTLE
        DELAY esi
        mov eax, [log_count]
        sub eax, ebx
        mov [got], eax
        CHECKV z, "periodic timer stops on initial count 0"

        ; LVT mask: the count still runs down, no interrupt is sent.
        call reset_log
        WR A_LVT_TIMER, V_TIMER | LVT_MASKED
        WR A_INIT, TIMER_COUNT
        mov esi, [t1]
        shl esi, 2
        add esi, SETTLE
        DELAY esi
        mov ebx, V_TIMER
        call vector_bits
        jne .masked
        cmp dword [log_count], 0
.masked:
        CHECK32 e, "masked lvt timer: no interrupt"
        RD A_CUR
        EXPECT e, 0, "masked lvt timer: current count still reaches 0"
        WR A_INIT, 0

        ; "sti; hlt" until the one-shot fires; the bound is a VMCALL periodic
        ; timer on another vector (README: hypercall 4), disarmed after.
        mov eax, HC_TIMER
        mov ebx, V_WATCHDOG
        mov ecx, WATCHDOG_PERIOD
        vmcall
        call reset_log
        WR A_LVT_TIMER, V_TIMER
        WR A_INIT, TIMER_COUNT
        hlt
        mov eax, HC_TIMER
        mov ebx, V_WATCHDOG
        xor ecx, ecx
        vmcall
        movzx eax, byte [log]           ; got: first vector, watchdog, count
        shl eax, 8
        mov al, [watchdog]
        shl eax, 8
        mov al, [log_count]
        EXPECT e, V_TIMER << 16 | 1, "hlt wakes on the one-shot timer (no watchdog)"

        ; SDM "TSC-Deadline Mode": IA32_TSC_DEADLINE arms one interrupt; when
        ; it fires the timer disarms itself and the MSR reads 0.
        test dword [cpuid1_ecx], 1 << 24
        jnz .deadline
        SAY32 "skip tsc-deadline (CPUID.1:ECX[24] clear)"
        jmp .deadline_done
.deadline:
        WR A_LVT_TIMER, V_DEADLINE | LVT_DEADLINE
        call deadline_run
        CHECKV ge, "tsc-deadline (MSR 6E0H) fires once, not before the deadline"
        mov ecx, MSR_TSC_DEADLINE
        rdmsr
        mov [got], eax
        or eax, edx
        CHECKV z, "tsc-deadline MSR reads 0 after firing"
        ; The deadline is in the TSC the guest reads, also after WRMSR IA32_TSC.
        xor eax, eax
        xor edx, edx
        mov ecx, MSR_TSC
        wrmsr
        rdtsc
        test edx, edx
        jnz .no_tsc_write
        cmp eax, 0x10000000
        jb .tsc_written
.no_tsc_write:
        SAY32 "skip tsc-deadline after WRMSR IA32_TSC (the TSC did not move back)"
        jmp .deadline_off
.tsc_written:
        call deadline_run
        CHECKV ge, "tsc-deadline after WRMSR IA32_TSC (10H) := 0 fires once, not before the deadline"
.deadline_off:
        WR A_LVT_TIMER, V_TIMER | LVT_MASKED
.deadline_done:

        ; 82093AA 3.2 "IOAPIC Registers" through IOREGSEL (00H) / IOWIN (10H).
        mov dword [IOAPIC], 1
        mov eax, [IOAPIC + 0x10]
        EXPECT e, 0x00170020, "ioapic version (index 1) 0x00170020"
        mov dword [IOAPIC], 0
        mov eax, [IOAPIC]               ; IOREGSEL reads back
        mov ebx, [IOAPIC + 0x10]        ; IOAPICID: ID in bits 27:24
        mov [got], ebx
        or eax, ebx
        test eax, 0xF0FFFFFF
        jnz .ioid
        mov dword [IOAPIC + 0x10], 0x0A000000
        mov eax, [IOAPIC + 0x10]
        mov [IOAPIC + 0x10], ebx
        mov [got], eax
        cmp eax, 0x0A000000
.ioid:  CHECKV e, "ioapic id (index 0) bits 27:24 read back"
        mov dword [IOAPIC], 0x14        ; pin 2, low dword
        mov eax, [IOAPIC + 0x10]
        mov [got], eax
        test eax, LVT_MASKED
        CHECKV nz, "ioapic redirection entry (index 14H) resets masked"
        mov dword [IOAPIC + 0x10], LVT_MASKED | 0x63
        mov eax, [IOAPIC + 0x10]
        mov [got], eax
        cmp eax, LVT_MASKED | 0x63
        jne .redir
        mov dword [IOAPIC + 0x10], 0x63
        mov eax, [IOAPIC + 0x10]
        mov dword [IOAPIC + 0x10], LVT_MASKED
        mov [got], eax
        cmp eax, 0x63
        jne .redir
        mov dword [IOAPIC], 0x15        ; high dword: destination 63:56
        mov dword [IOAPIC + 0x10], 0x01000000
        mov eax, [IOAPIC + 0x10]
        mov dword [IOAPIC + 0x10], 0
        mov [got], eax
        cmp eax, 0x01000000
.redir: CHECKV e, "ioapic redirection entry round-trips vector, mask, destination"

        ; SDM "x2APIC Register Address Space": EXTD with EN switches to the
        ; MSR interface (800H + offset/16); the state is kept.
        test dword [cpuid1_ecx], 1 << 21
        jnz .x2apic
        SAY32 "skip x2apic (CPUID.1:ECX[21] clear)"
        jmp .done
.x2apic:
        mov ecx, MSR_APIC_BASE
        rdmsr
        or eax, APIC_BASE_EN | APIC_BASE_EXTD
        wrmsr
        mov byte [x2mode], 1
        rdmsr
        mov [got], eax
        and eax, APIC_BASE_EN | APIC_BASE_EXTD
        cmp eax, APIC_BASE_EN | APIC_BASE_EXTD
        CHECKV e, "x2apic enabled through IA32_APIC_BASE (bits 10, 11)"
        mov ecx, X2_ID
        rdmsr
        EXPECT e, 0, "x2apic id (MSR 802H) 0"
        mov ecx, X2_VER
        rdmsr
        EXPECT e, [version], "x2apic version (MSR 803H) as in xAPIC mode"
        ; SDM "SELF IPI Register": fixed, edge, to this APIC; EOI by MSR 80BH
        ; (apic_write in the handler).
        cli
        call reset_log
        mov ecx, X2_SELF_IPI
        mov eax, V_X2
        xor edx, edx
        wrmsr
        DELAY SETTLE
        mov ebx, V_X2
        call only_pending
        CHECK32 e, "x2apic self ipi (MSR 83FH) pending in IRR (MSR 822H) while IF=0"
        sti
        WAIT_LOG 1, SETTLE
        DELAY SETTLE
        cli
        mov eax, V_X2
        call log_is_one
        jne .x2ipi
        cmp byte [isr_in], 1
        jne .x2ipi
        cmp byte [isr_after], 0
.x2ipi: CHECK32 e, "x2apic self ipi delivered, EOI by MSR 80BH clears ISR"
        ; SDM "x2APIC State Transitions": x2APIC -> xAPIC is illegal, #GP.
        mov ecx, MSR_APIC_BASE
        rdmsr
        and eax, ~APIC_BASE_EXTD
        TRY32 wrmsr
        cmp byte [faulted], 1
        jne .back
        cmp dword [fault_code], 0
.back:  CHECK32 e, "x2apic -> xapic through IA32_APIC_BASE: #GP(0)"

.done:
        movzx eax, byte [saw_if0]
        EXPECT e, 0, "every interrupt arrived with IF=1"
        cli
        jmp finish32

; --- Helpers -------------------------------------------------------------

; apic_read: eax = xAPIC offset -> eax = register (RDMSR 800H + offset/16
; in x2APIC mode).
apic_read:
        cmp byte [x2mode], 0
        jne .msr
        mov eax, [APIC + eax]
        ret
.msr:   push ecx
        push edx
        shr eax, 4
        lea ecx, [eax + 0x800]
        rdmsr
        pop edx
        pop ecx
        ret

; apic_write: eax = xAPIC offset, edx = value.
apic_write:
        cmp byte [x2mode], 0
        jne .msr
        mov [APIC + eax], edx
        ret
.msr:   push ecx
        push edx
        shr eax, 4
        lea ecx, [eax + 0x800]
        mov eax, edx
        xor edx, edx
        wrmsr
        pop edx
        pop ecx
        ret

; vec_test: ebx = vector, edi = A_ISR or A_IRR -> CF = the vector's bit.
vec_test:
        mov eax, ebx
        shr eax, 5
        shl eax, 4
        add eax, edi
        call apic_read
        bt eax, ebx                     ; bit (vector mod 32)
        ret
irr_test:
        mov edi, A_IRR
        jmp vec_test

; only_pending: ebx = vector -> ZF=1 if its IRR bit is set, its ISR bit clear
; and nothing was delivered.
only_pending:
        call irr_test
        jnc .no
        mov edi, A_ISR
        call vec_test
        jc .no
        cmp dword [log_count], 0
        ret
.no:    or esp, esp                     ; ZF=0
        ret

; vector_bits: ebx = vector -> ZF=1 if neither its IRR nor its ISR bit is set.
vector_bits:
        call irr_test
        jc .no
        mov edi, A_ISR
        call vec_test
        jc .no
        cmp eax, eax
        ret
.no:    or esp, esp
        ret

; deadline_run: arm IA32_TSC_DEADLINE at now + DEADLINE_DELTA, wait; [got] =
; TSC at the interrupt - deadline (signed; -1 if not exactly one V_DEADLINE
; interrupt), flags from comparing it with 0.
deadline_run:
        call reset_log
        rdtsc
        add eax, DEADLINE_DELTA
        adc edx, 0
        mov [deadline], eax
        mov ecx, MSR_TSC_DEADLINE
        wrmsr
        WAIT_LOG 1, 4 * DEADLINE_DELTA + SETTLE
        DELAY 2 * DEADLINE_DELTA
        mov eax, V_DEADLINE
        call log_is_one
        mov eax, -1
        jne .r
        mov eax, [irq_tsc]
        sub eax, [deadline]
.r:     mov [got], eax
        cmp eax, 0
        ret

; log_is_one: al = vector -> ZF=1 if exactly that one interrupt arrived.
log_is_one:
        cmp dword [log_count], 1
        jne .r
        cmp [log], al
.r:     ret
; log_is_two: al, ah = the two vectors in order.
log_is_two:
        cmp dword [log_count], 2
        jne .r
        cmp [log], ax
.r:     ret

reset_log:
        mov dword [log_count], 0
        mov byte [isr_in], 0
        mov byte [isr_after], 1
        mov byte [ppr_in], 0
        ret

; wait_log: wait until [log_count] >= ecx, or esi TSC ticks have passed.
wait_log:
        rdtsc
        mov edi, eax
.spin:  cmp [log_count], ecx
        jae .r
        rdtsc
        sub eax, edi
        cmp eax, esi
        jb .spin
.r:     ret

; The handlers: log the vector and the TSC, note the interrupted IF, whether
; the vector's ISR bit is set, PPR, then EOI and the ISR bit after it.
%macro ISR 1
isr_%1: push dword 0x%1
        jmp common_isr
%endmacro
        ISR 40
        ISR 48
        ISR 50
        ISR 70
        ISR 71
isr_watchdog:
        mov byte [watchdog], 1          ; not the APIC's: no EOI
        iretd
common_isr:
        pushad
        rdtsc
        mov [irq_tsc], eax
        mov ebx, [esp + 32]             ; the vector
        test dword [esp + 44], 1 << 9   ; interrupted EFLAGS.IF
        jnz .if1
        mov byte [saw_if0], 1
.if1:   mov ecx, [log_count]
        cmp ecx, LOG_SIZE
        jae .full
        mov [log + ecx], bl
.full:  inc dword [log_count]
        mov edi, A_ISR
        call vec_test
        setc [isr_in]
        RD A_PPR
        mov [ppr_in], al
        WR A_EOI, 0
        mov edi, A_ISR
        call vec_test
        setc [isr_after]
        popad
        add esp, 4
        iretd

        HOSTILE32
        LIB32
        LIB16
        HOSTILE16
        HOSTILE_VARS
        LIB_GDT
        align 4
cpuid1_ecx:     dd 0
version:        dd 0
got:            dd 0
t0:             dd 0
t1:             dd 0
deadline:       dd 0
irq_tsc:        dd 0
log_count:      dd 0
log:            times LOG_SIZE db 0
isr_in:         db 0
isr_after:      db 0
ppr_in:         db 0
saw_if0:        db 0
x2mode:         db 0
watchdog:       db 0
count_bad:      db 0
