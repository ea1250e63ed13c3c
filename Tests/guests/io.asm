; io: port I/O exits from a real-mode guest: the emulated COM1 scratch
; register, unclaimed ports (all ones, writes ignored) at 8, 16 and 32 bits,
; and string I/O with non-zero segment bases: REP OUTSB forwards and
; backwards (DF=1), REP INSB into ES=1000h.
%define GUEST "io"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
UNCLAIMED       equ 0x2F0
INS_SEG         equ 0x1000
INS_OFF         equ 0x0100

        GUEST_ENTRY
        call init_ivt

        mov dx, COM1_SCRATCH
        mov al, 0x5A
        out dx, al
        xor al, al
        in al, dx
        cmp al, 0x5A
        REPORT e, s_scr_ok, s_scr_bad

        mov dx, UNCLAIMED
        xor eax, eax
        out dx, al                      ; ignored
        in al, dx
        cmp al, 0xFF
        REPORT e, s_un8_ok, s_un8_bad
        mov dx, UNCLAIMED
        xor eax, eax
        in ax, dx
        cmp ax, 0xFFFF
        REPORT e, s_un16_ok, s_un16_bad
        mov dx, UNCLAIMED
        xor eax, eax
        in eax, dx
        cmp eax, 0xFFFFFFFF
        REPORT e, s_un32_ok, s_un32_bad

        mov ax, 0x07C0                  ; DS base 0x7C00: offsets from the image start
        mov ds, ax
        mov si, s_outsb - 0x7C00
        mov cx, s_outsb_len
        mov dx, COM1_DATA
        rep outsb
        xor ax, ax
        mov ds, ax
        test cx, cx
        jnz .outsb
        cmp si, s_outsb - 0x7C00 + s_outsb_len
.outsb:
        REPORT e, s_osr_ok, s_osr_bad

        mov si, s_backwards_end - 1     ; DF=1: from the last byte down
        mov cx, s_backwards_end - s_backwards
        mov dx, COM1_DATA
        std
        rep outsb
        cld
        test cx, cx
        jnz .back
        cmp si, s_backwards - 1
.back:
        REPORT e, s_bwr_ok, s_bwr_bad

        mov ax, INS_SEG
        mov es, ax
        mov dword [es:INS_OFF], 0x11111111
        mov dword [es:INS_OFF + 4], 0x11111111
        mov dx, COM1_SCRATCH
        mov al, 0x33
        out dx, al
        mov di, INS_OFF
        mov cx, 4
        rep insb
        test cx, cx
        jnz .insb
        cmp di, INS_OFF + 4
        jne .insb
        cmp dword [es:INS_OFF], 0x33333333
        jne .insb
        cmp dword [es:INS_OFF + 4], 0x11111111
.insb:
        mov ax, 0
        mov es, ax
        REPORT e, s_ins_ok, s_ins_bad
        FINISH
        BOOT_SIGNATURE

        LIB16
s_outsb:    db "io: rep outsb line (DS=07C0)", 10
s_outsb_len equ $ - s_outsb
s_backwards: db 10, ")1=FD( sdrawkcab enil bstuo per :oi"         ; "io: rep outsb line backwards (DF=1)", reversed
s_backwards_end:
s_scr_ok:   db "io: scratch register reads back 0x5a", 10, 0
s_scr_bad:  db "io: FAIL scratch register", 10, 0
s_un8_ok:   db "io: unclaimed port reads 0xff", 10, 0
s_un8_bad:  db "io: FAIL unclaimed port 8-bit read", 10, 0
s_un16_ok:  db "io: unclaimed port reads 0xffff", 10, 0
s_un16_bad: db "io: FAIL unclaimed port 16-bit read", 10, 0
s_un32_ok:  db "io: unclaimed port reads 0xffffffff", 10, 0
s_un32_bad: db "io: FAIL unclaimed port 32-bit read", 10, 0
s_osr_ok:   db "io: rep outsb left CX=0 and SI past the line", 10, 0
s_osr_bad:  db "io: FAIL rep outsb CX or SI", 10, 0
s_bwr_ok:   db "io: rep outsb with DF=1 left CX=0 and SI below the line", 10, 0
s_bwr_bad:  db "io: FAIL rep outsb with DF=1 CX or SI", 10, 0
s_ins_ok:   db "io: rep insb filled 4 bytes at 1000:0100", 10, 0
s_ins_bad:  db "io: FAIL rep insb", 10, 0
