; hostile-mmio-fetch: executing from the APIC page: an instruction fetch,
; never decoded as data.
%define GUEST "hostile-mmio-fetch"
%include "Tests/guests/hostile-mmio-stop.inc"
        STOP_ENTRY "jmp 0xFEE00000"
        mov eax, APIC
        jmp eax
        STOP_SURVIVED
