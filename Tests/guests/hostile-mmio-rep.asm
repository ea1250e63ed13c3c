; hostile-mmio-rep: REP MOVSD into the APIC page (a string instruction the
; MMIO decoder does not emulate): the guest must be stopped at its first write.
%define GUEST "hostile-mmio-rep"
%include "Tests/guests/hostile-mmio-stop.inc"
        STOP_ENTRY "rep movsd into 0xFEE00080"
        mov esi, 0x9000                 ; any RAM
        mov edi, APIC + A_TPR
        mov ecx, 4
        rep movsd
        STOP_SURVIVED
