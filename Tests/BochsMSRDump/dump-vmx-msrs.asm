; Boot sector: reads the VMX capability MSRs with RDMSR in real mode (CPL 0)
; and prints "MSR xxxxxxxx = hhhhhhhhllllllll" lines (or "#GP" for an MSR the
; model lacks) to port 0xE9, then writes "Shutdown" to port 0x8900.
; Produced the values in Tests/X86VCPUTests/Fixtures/BochsCapabilities.swift:
;   nasm -f bin dump-vmx-msrs.asm -o boot.bin
;   dd if=/dev/zero of=floppy.img bs=512 count=2880; dd if=boot.bin of=floppy.img conv=notrunc
;   bochsrc: megs: 32 / cpu: model=corei7_skylake_x, count=1, ips=4000000
;            romimage: file=/usr/share/bochs/BIOS-bochs-latest
;            vgaromimage: file=/usr/share/vgabios/vgabios.bin
;            floppya: 1_44=floppy.img, status=inserted / boot: floppy
;            port_e9_hack: enabled=1 / display_library: term / log: bochs.log
;   printf 'c\nquit\n' > cmds.rc
;   TERM=dumb timeout 60 bochs -q -f bochsrc -rc cmds.rc </dev/null > out.txt   (lines are in out.txt)
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov word [13*4], gp_handler     ; #GP in real mode: vector 13, no error code
    mov word [13*4+2], 0
    mov si, msrs
.next:
    mov ecx, [si]
    cmp ecx, 0xffffffff
    je .done
    mov byte [gpflag], 0
    xor eax, eax
    xor edx, edx
    rdmsr
    push eax
    push edx
    mov bx, s_msr
    call puts
    mov eax, [si]
    call hex32
    mov bx, s_eq
    call puts
    pop edx
    pop eax
    cmp byte [gpflag], 0
    jne .gp
    push eax
    mov eax, edx
    call hex32
    pop eax
    call hex32
    jmp .eol
.gp:
    mov bx, s_gp
    call puts
.eol:
    mov al, 10
    out 0xe9, al
    add si, 4
    jmp .next
.done:
    mov dx, 0x8900
    mov bx, s_shutdown
.sd: mov al, [bx]
    test al, al
    jz .hang
    out dx, al
    inc bx
    jmp .sd
.hang:
    hlt
    jmp .hang

gp_handler:
    push bp
    mov bp, sp
    add word [bp+2], 2              ; skip the 2-byte RDMSR
    mov byte [gpflag], 1
    pop bp
    iret

puts:                               ; bx -> zero-terminated string
    mov al, [bx]
    test al, al
    jz .r
    out 0xe9, al
    inc bx
    jmp puts
.r: ret

hex32:                              ; eax
    mov cx, 8
.l: rol eax, 4
    push eax
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe .o
    add al, 7
.o: out 0xe9, al
    pop eax
    loop .l
    ret

gpflag: db 0
s_msr: db "MSR ", 0
s_eq: db " = ", 0
s_gp: db "#GP", 0
s_shutdown: db "Shutdown", 0
msrs: dd 0x3a, 0x480, 0x481, 0x482, 0x483, 0x484, 0x485, 0x486, 0x487, 0x488, 0x489
      dd 0x48a, 0x48b, 0x48c, 0x48d, 0x48e, 0x48f, 0x490, 0x491, 0xffffffff
times 510-($-$$) db 0
dw 0xaa55
