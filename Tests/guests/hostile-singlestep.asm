; hostile-singlestep: with RFLAGS.TF=1 at the start of an instruction, a
; single-step #DB (a trap: the return address is the next instruction, DR6.BS
; set) follows it (SDM 18.3.1.4 "Single-Step Exception Condition"). An
; instruction the hypervisor emulates must end the same way, through the
; pending debug exceptions BS bit (SDM 27.3.1.5 "Checks on Guest Non-Register
; State", 27.7.3 "Delivery of Pending Debug Exceptions after VM Entry"); that
; includes the assembly fast path (cached CPUID leaves, the null hypercall).
; Each probe steps one instruction: exactly one #DB, returning right after
; it, DR6.BS, and the instruction's own result. Real mode, own IVT.
; (Bochs 2.7 saves BS in the VMCS at any VM exit, hiding a VMM that forgets
; it; real VMX clears the field, SDM 28.3.4 "Saving Non-Register State".)
%define GUEST "hostile-singlestep"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

RFLAGS_TF       equ 1 << 8
DR6_BS          equ 1 << 14

; STEP instruction: run it with TF=1, it alone. POPF's new TF counts from the
; instruction after POPF (TF is sampled at an instruction's start), and the
; #DB handler clears TF in the saved FLAGS.
%macro STEP 1+
        mov word [step_expect], %%after
        mov byte [db_count], 0
        mov word [db_ip], 0
        mov dword [db_dr6], 0
        mov byte [arch_bad], 0
        push eax
        xor eax, eax
        mov dr6, eax                    ; no stale BS from an earlier step
        pop eax
        pushf
        or word [esp], RFLAGS_TF
        popf
        %1
%%after:
        nop                             ; a lost #DB shows up after this instead
%endmacro

; VERDICT "probe": one line, ok or FAIL with what the #DB looked like.
%macro VERDICT 1
        mov si, %%name
        call verdict
        jmp %%next
%%name: db %1, 0
%%next:
%endmacro

        GUEST_ENTRY
        jmp start
        BOOT_SIGNATURE
start:
        movzx esp, sp                   ; so [esp] is the stack top in STEP
        call init_ivt
        SET_IVT 1, db16

        ; The harness itself, on an instruction that never exits.
        STEP nop
        VERDICT "nop (control)"

        ; CPUID: untrapped first, so the hypervisor has the answer cached.
        xor eax, eax
        xor ecx, ecx
        cpuid
        call save_ref
        xor eax, eax
        xor ecx, ecx
        STEP cpuid
        call cmp_ref
        VERDICT "cpuid leaf 0 (cached)"

        mov eax, 1
        xor ecx, ecx
        cpuid
        call save_ref
        mov [leaf1_ecx], ecx
        mov eax, 1
        xor ecx, ecx
        STEP cpuid
        call cmp_ref
        VERDICT "cpuid leaf 1 (cached)"

        ; The null hypercall: bare, VMCALL is #UD (SDM Vol. 3C VMCALL).
        test dword [leaf1_ecx], 1 << 31
        jnz .vmcall
        SAY16 "skip vmcall (no hypervisor)"
        jmp .io
.vmcall:
        mov eax, HC_NULL
        xor ebx, ebx
        xor ecx, ecx
        STEP vmcall
        xor edx, edx                    ; result 0
        call want_eq
        VERDICT "vmcall null"

        ; COM1 scratch: reads back the last byte written.
.io:    mov dx, COM1_SCRATCH
        mov al, 0x5A
        out dx, al
        xor eax, eax
        STEP in al, dx
        movzx eax, al
        mov edx, 0x5A
        call want_eq
        VERDICT "in al, dx from 0x3ff"

        mov dx, COM1_SCRATCH
        mov al, 0xA5
        STEP out dx, al
        xor eax, eax
        in al, dx
        mov edx, 0xA5
        call want_eq
        VERDICT "out dx, al to 0x3ff"

        ; IA32_EFER: read untrapped, then stepped; write back what was read.
        mov ecx, MSR_EFER
        rdmsr
        call save_ref
        mov ecx, MSR_EFER
        xor eax, eax
        xor edx, edx
        STEP rdmsr
        call cmp_msr
        VERDICT "rdmsr IA32_EFER"

        mov ecx, MSR_EFER
        rdmsr
        call save_ref
        STEP wrmsr
        mov ecx, MSR_EFER
        rdmsr
        call cmp_msr
        VERDICT "wrmsr IA32_EFER (same value)"
        FINISH


; #DB: count it, keep the first one's return IP and DR6, clear DR6 and the
; saved TF (the delivery cleared the live TF, SDM 20.1.4).
db16:
        push bp
        mov bp, sp                      ; [bp + 2] IP, [bp + 4] CS, [bp + 6] FLAGS
        push eax
        inc byte [cs:db_count]
        cmp byte [cs:db_count], 1
        jne .again
        mov ax, [bp + 2]
        mov [cs:db_ip], ax
        mov eax, dr6
        mov [cs:db_dr6], eax
.again:
        xor eax, eax
        mov dr6, eax
        and word [bp + 6], ~RFLAGS_TF
        pop eax
        pop bp
        iret

save_ref:
        mov [ref], eax
        mov [ref + 4], ebx
        mov [ref + 8], ecx
        mov [ref + 12], edx
        ret

; cmp_ref: EAX, EBX, ECX, EDX as save_ref kept them.
cmp_ref:
        push edx
        push ecx
        push ebx
        mov edx, [ref]
        call want_eq
        pop eax
        mov edx, [ref + 4]
        call want_eq
        pop eax
        mov edx, [ref + 8]
        call want_eq
        pop eax
        mov edx, [ref + 12]
        jmp want_eq

; cmp_msr: EDX:EAX as save_ref kept them.
cmp_msr:
        push edx
        mov edx, [ref]
        call want_eq
        pop eax
        mov edx, [ref + 12]
        jmp want_eq

; want_eq: EAX got, EDX wanted; the first mismatch is kept for the report.
want_eq:
        cmp eax, edx
        je .r
        cmp byte [arch_bad], 0
        jne .r
        mov [arch_got], eax
        mov [arch_want], edx
        mov byte [arch_bad], 1
.r:     ret

; verdict: si = probe name. ok when one #DB returned right after the
; instruction with DR6.BS and the result was right.
verdict:
        push si
        PRINT s_prefix
        cmp byte [db_count], 1
        jne .bad
        mov ax, [db_ip]
        cmp ax, [step_expect]
        jne .bad
        test dword [db_dr6], DR6_BS
        jz .bad
        cmp byte [arch_bad], 0
        jne .bad
        PRINT s_ok
        pop si
        call puts
        jmp .nl
.bad:
        inc byte [failures]
        PRINT s_fail
        pop si
        call puts
        PRINT s_count
        movzx eax, byte [db_count]
        call puthex
        PRINT s_ip
        movzx eax, word [db_ip]
        call puthex
        PRINT s_want
        movzx eax, word [step_expect]
        call puthex
        PRINT s_dr6
        mov eax, [db_dr6]
        call puthex
        cmp byte [arch_bad], 0
        je .nl
        PRINT s_got
        mov eax, [arch_got]
        call puthex
        PRINT s_expected
        mov eax, [arch_want]
        call puthex
.nl:    mov al, 10
        jmp putc

s_prefix:   db GUEST, ": ", 0
s_ok:       db "ok ", 0
s_fail:     db "FAIL ", 0
s_count:    db ": #DB count ", 0
s_ip:       db " return IP ", 0
s_want:     db " (expected 1 at ", 0
s_dr6:      db "), DR6 ", 0
s_got:      db ", result ", 0
s_expected: db " expected ", 0

        align 4
ref:        times 4 dd 0
leaf1_ecx:  dd 0
db_dr6:     dd 0
arch_got:   dd 0
arch_want:  dd 0
step_expect: dw 0
db_ip:      dw 0
db_count:   db 0
arch_bad:   db 0

        LIB16
