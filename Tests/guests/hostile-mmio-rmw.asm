; hostile-mmio-rmw: OR to an APIC register (read-modify-write, not emulated).
%define GUEST "hostile-mmio-rmw"
%include "Tests/guests/hostile-mmio-stop.inc"
        STOP_ENTRY "or dword [0xFEE00080], 1"
        or dword [APIC + A_TPR], 1
        STOP_SURVIVED
