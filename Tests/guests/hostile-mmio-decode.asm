; hostile-mmio-decode: a MOV the CPU executes but the decoder refuses. LOCK
; MOV cannot serve: the CPU raises #UD before any access (SDM "LOCK";
; hostile-mmio checks that). A REP prefix on MOV is reserved but ignored by
; the CPU (SDM 2.1.1), and the decoder rejects F2/F3 prefixes.
%define GUEST "hostile-mmio-decode"
%include "Tests/guests/hostile-mmio-stop.inc"
        STOP_ENTRY "rep mov [0xFEE00080], eax (F3 89)"
        mov eax, 0x10
        db 0xF3, 0x89, 0x05             ; rep mov [APIC + A_TPR], eax
        dd APIC + A_TPR
        STOP_SURVIVED
