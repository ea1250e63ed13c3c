; ept: 32-bit protected mode with flat 4 GiB segments, then a read of
; physical 0xC0000000, which is not guest RAM: the hypervisor must report
; the EPT violation (GPA 0xc0000000) and stop the guest with a non-zero
; status. Nothing after the read may run.
%define GUEST "ept"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
HOLE            equ 0xC0000000

        GUEST_ENTRY
        call init_ivt
        ENTER_PM32 protected
        BOOT_SIGNATURE

        bits 32
protected:
        call init_idt32
        PRINT32 s_touch
        mov eax, [HOLE]
        push eax
        PRINT32 s_cont
        pop eax
        call puthex32
        mov al, 10
        call putc32
        EXIT 1

        LIB32
        LIB16
        LIB_GDT
s_touch:    db "ept: touching 0xC0000000", 10, 0
s_cont:     db "ept: FAIL continued after the read, value 0x", 0
