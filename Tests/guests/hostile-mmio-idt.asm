; hostile-mmio-idt: the IDT in the APIC page. A MOV read through a null ES
; raises #GP(0) (SDM "MOV": null segment selector); delivering it reads gate
; 13 at 0xFEE00030, so the EPT violation happens during event delivery
; (IDT-vectoring information valid). The MOV itself never accessed memory:
; emulating it as a read of 0xFEE00030 and stepping past it (then delivering
; the #GP again after it) would be wrong; the guest must be stopped with the
; probe's own RIP, 0x8000, in the report.
%define GUEST "hostile-mmio-idt"
%include "Tests/guests/hostile-mmio-stop.inc"
        STOP_ENTRY "#GP from mov eax, [es:0x9000] (ES null) with gate 13 at 0xFEE00030"
        lidt [idt_desc]
        xor eax, eax
        mov es, ax
        jmp probe
        times 0x8000 - 0x7C00 - ($ - $$) db 0xCC
probe:  mov eax, [es:0x9000]            ; at 0x8000
        nop
        nop
        STOP_SURVIVED
idt_desc:
        dw 0x7FF
        dd APIC + A_VER - 13 * 8        ; gate 13 at 0xFEE00030
