; hostile-spec: IA32_SPEC_CTRL (0x48) and IA32_PRED_CMD (0x49) exist only as
; CPUID says (SDM Vol. 4 Table 2-2; CPUID.(EAX=7,ECX=0):EDX[26] IBRS/IBPB,
; [27] STIBP, [31] SSBD). Not enumerated: WRMSR of IBRS/IBPB raises #GP
; (SDM Vol. 2B WRMSR: reserved or unimplemented MSR or bits). Enumerated:
; SPEC_CTRL.IBRS reads back, IBPB is accepted, a reserved bit is #GP.
%define GUEST "hostile-spec"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

MSR_SPEC_CTRL   equ 0x48
MSR_PRED_CMD    equ 0x49

        GUEST_ENTRY
        jmp start
        BOOT_SIGNATURE
start:
        call init_ivt
        SET_IVT 13, fault16
        xor edx, edx
        xor eax, eax
        cpuid
        cmp eax, 7
        jb .no7
        mov eax, 7
        xor ecx, ecx
        cpuid
.no7:   mov [f7edx], edx
        bt edx, 26
        jc near enumerated

        SAY16 "CPUID.(7,0):EDX[26] IBRS/IBPB clear"
        mov ecx, MSR_SPEC_CTRL
        mov eax, 1                      ; IBRS
        xor edx, edx
        TRY wrmsr
        cmp byte [faulted], 1
        CHECK16 e, "wrmsr SPEC_CTRL.IBRS without IBRS: #GP"
        mov ecx, MSR_PRED_CMD
        mov eax, 1                      ; IBPB
        xor edx, edx
        TRY wrmsr
        cmp byte [faulted], 1
        CHECK16 e, "wrmsr PRED_CMD.IBPB without IBPB: #GP"
        test dword [f7edx], (1 << 27) | (1 << 31)
        jz .absent
        SAY16 "skip rdmsr SPEC_CTRL (STIBP or SSBD enumerated: the MSR exists)"
        FINISH
.absent:
        mov ecx, MSR_SPEC_CTRL
        TRY rdmsr
        cmp byte [faulted], 1
        CHECK16 e, "rdmsr SPEC_CTRL without any of its features: #GP"
        FINISH

enumerated:
        SAY16 "CPUID.(7,0):EDX[26] IBRS/IBPB set"
        mov ecx, MSR_SPEC_CTRL
        mov eax, 1
        xor edx, edx
        TRY wrmsr
        cmp byte [faulted], 0
        jne .rb
        mov ecx, MSR_SPEC_CTRL
        rdmsr
        test edx, edx
        jnz .rb
        cmp eax, 1
.rb:    CHECK16 e, "wrmsr SPEC_CTRL.IBRS=1 reads back 1"
        mov ecx, MSR_SPEC_CTRL
        xor eax, eax
        mov edx, 1 << 31                ; bit 63: reserved
        TRY wrmsr
        cmp byte [faulted], 1
        CHECK16 e, "wrmsr SPEC_CTRL bit 63: #GP"
        mov ecx, MSR_SPEC_CTRL
        rdmsr
        cmp eax, 1
        CHECK16 e, "SPEC_CTRL still 1"
        mov ecx, MSR_SPEC_CTRL
        xor eax, eax
        xor edx, edx
        wrmsr
        mov ecx, MSR_PRED_CMD
        mov eax, 1
        xor edx, edx
        TRY wrmsr
        cmp byte [faulted], 0
        CHECK16 e, "wrmsr PRED_CMD.IBPB accepted"
        FINISH

        LIB16
        HOSTILE16
        HOSTILE_VARS
f7edx:  dd 0
