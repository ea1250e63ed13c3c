; Bare-metal loader for smoke-testing the test guests without the hypervisor.
; A BIOS loads only sector 0; this boot sector moves itself to 0x0600, reads
; the guest image from sectors 2..18 of the floppy (track 0, head 0: up to
; 8.5 KiB) to 0x7C00, sets COM1 to 8 data bits, masks the PICs, and enters the guest as the hypervisor
; does: 0000:7C00, real mode, IF=0, DL=0x80, other GPRs 0, SS:SP=0000:7C00.
; Floppy image = loader sector + guest image, padded to 1474560 bytes
; (see smoke.sh).
        bits 16
        org 0x0600
        cli
        cld
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7C00
        mov si, 0x7C00
        mov di, 0x0600
        mov cx, 256
        rep movsw
        jmp 0x0000:moved
moved:
        mov [drive], dl
        mov byte [tries], 4
.read:
        mov ax, 0x0211                  ; read 17 sectors
        mov cx, 0x0002                  ; cylinder 0, sector 2
        xor dh, dh                      ; head 0
        mov dl, [drive]
        mov bx, 0x7C00
        int 0x13
        jnc .loaded
        xor ax, ax                      ; reset the drive and retry
        mov dl, [drive]
        int 0x13
        dec byte [tries]
        jnz .read
        mov si, s_error
.puts:
        lodsb
        test al, al
        jz .halt
        mov dx, 0x3F8
        out dx, al
        jmp .puts
.halt:
        hlt
        jmp .halt
.loaded:
        mov dx, 0x3FB                   ; COM1 LCR: 8 data bits (Bochs's BIOS
        mov al, 0x03                    ; leaves 5, and Bochs masks to them)
        out dx, al
        mov al, 0xFF                    ; no interrupts from the PICs
        out 0x21, al
        out 0xA1, al
        xor eax, eax
        xor ebx, ebx
        xor ecx, ecx
        xor edx, edx
        xor esi, esi
        xor edi, edi
        xor ebp, ebp
        mov dl, 0x80
        jmp 0x0000:0x7C00

drive:  db 0
tries:  db 0
s_error: db "loader: FAIL reading the guest", 10, 0
        times 510 - ($ - $$) db 0
        db 0x55, 0xAA
