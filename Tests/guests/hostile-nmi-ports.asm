; hostile-nmi-ports: the guest writes the CMOS index/NVRAM ports (0x70/0x71,
; bit 7 of 0x70 masks NMI on a PC) and port 0x61's NMI enables (bits 2, 3:
; parity and channel-check NMI off; SDM Vol. 3 7.7 "NMI" points to the
; chipset). None of this may reach the host's devices: the guest prints what
; it reads back (the test-guest platform claims no such port: all ones) and
; must still be running afterwards.
%define GUEST "hostile-nmi-ports"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

        GUEST_ENTRY
        call init_ivt
        mov al, 0x80 | 0x34             ; NMI off, NVRAM byte 0x34
        out 0x70, al
        mov al, 0x5A
        out 0x71, al
        mov al, 0x34
        out 0x70, al
        in al, 0x71
        mov [cmos], al
        mov al, 0x8F                    ; NMI off, shutdown status byte
        out 0x70, al
        mov al, 0x0A                    ; "jump via 40:67" on a real PC
        out 0x71, al
        in al, 0x61
        mov [p61], al
        or al, 0x0C                     ; parity and IOCHK NMI off
        out 0x61, al
        and al, ~0x0C
        out 0x61, al
        in al, 0x61
        mov [p61b], al

        PRINT s_cmos
        movzx eax, byte [cmos]
        call puthex
        mov al, 10
        call putc
        PRINT s_p61
        movzx eax, byte [p61]
        shl eax, 8
        mov al, [p61b]
        call puthex
        mov al, 10
        call putc
        cmp byte [cmos], 0x5A           ; NVRAM must not be the host's
        CHECK16 ne, "guest CMOS write did not reach a real NVRAM"
        FINISH
        BOOT_SIGNATURE

s_cmos: db GUEST, ": cmos[0x34] after writing 0x5a reads 0x", 0
s_p61:  db GUEST, ": port 0x61 before:after (hex) ", 0
cmos:   db 0
p61:    db 0
p61b:   db 0
        LIB16
        HOSTILE16
        HOSTILE_VARS
