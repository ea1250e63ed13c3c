; triplefault: a real-mode guest loads an IDT (IVT) with limit 0 and raises
; #UD: its vector is beyond the limit (#GP), so is #GP's (#DF), so is #DF's:
; a triple fault. The hypervisor must report it and power off with a
; non-zero status. Nothing after UD2 may run.
%define GUEST "triple"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
        GUEST_ENTRY
        PRINT s_empty
        lidt [empty_idt]
        ud2
        PRINT s_cont
        EXIT 1

empty_idt:
        dw 0                            ; limit 0: no vector fits
        dd 0
        BOOT_SIGNATURE

        LIB16
s_empty:    db "triple: loading an empty IDT", 10, 0
s_cont:     db "triple: FAIL continued after UD2", 10, 0
