; hostile-mmio: awkward but legal MOV/MOVZX/MOVSX accesses to the emulated
; local APIC (0xFEE00000) and IOAPIC (0xFEC00000) pages. Each must be
; emulated with the result a plain 32-bit read predicts (xAPIC registers are
; 32 bits on 16-byte boundaries, SDM "Local APIC Register Address Map"; other
; bytes of a slot read 0), never stop the guest or the hypervisor:
; unaligned and page-end accesses, byte/word reads (AH..BH, ESP as the
; destination), MOVZX/MOVSX, instructions straddling a page of guest code
; (one of them 15 bytes long), segment bases (also a wrapping one and 16-bit
; addressing), x2APIC MSRs in xAPIC mode (#GP(0)), relocating IA32_APIC_BASE,
; IOAPIC out-of-range IOREGSEL indices and read-only registers, LOCK MOV
; (#UD before any access), and in 64-bit mode REX registers (SPL, R9D..R11B),
; 8-byte reads and writes.
%define GUEST "hostile-mmio"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

APIC            equ 0xFEE00000
IOAPIC          equ 0xFEC00000          ; IOREGSEL; IOWIN at +10H
VER             equ 0x00050014          ; version 14H, max LVT 5 (no CMCI)
IOAPIC_VER      equ 0x00170020          ; 24 pins, version 20H
A_VER           equ 0x30
A_TPR           equ 0x80
A_DFR           equ 0xE0                ; destination format: 0xFFFFFFFF at reset
MSR_APIC_BASE   equ 0x1B
SEL_BASE1M      equ 0x20                ; data, base 0x100000, 4 GiB
SEL_BASEHI      equ 0x28                ; data, base 0xFFF00000, 4 GiB (wraps)
SEL_BASEAPIC    equ 0x30                ; data, base 0xFEE00000, 64 KiB
PD3             equ 0x13000
RAM_END         equ 64 << 20             ; long mode: PD for the 4th GiB

; EQ got, want, "what": compare a 32-bit value with the expected one.
%macro EQ 3
        mov dword [want], %2
        mov eax, %1
        mov [got], eax
        cmp eax, [want]
        CHECKV %3
%endmacro
; CHECKV "what": after compare, print ok, or FAIL with got/want.
%macro CHECKV 1
        je %%ok
        PRINT32 %%bad
        call print_got_want
        jmp %%next
%%ok:   PRINT32 %%good
        jmp %%next
%%good: db GUEST, ": ok ", %1, 10, 0
%%bad:  db GUEST, ": FAIL ", %1, ": got/want ", 0
%%next:
%endmacro

; EQ64 "what": compare rax with rbx in 64-bit mode (keeps rsi).
%macro EQ64 1
        push rsi                        ; puts64 takes the string in rsi
        mov [got], rax
        mov [want], rbx
        cmp rax, rbx
        je %%ok
        mov esi, %%bad
        call puts64
        mov eax, [got + 4]
        call puthex64
        mov eax, [got]
        call puthex64
        mov al, '/'
        call putc64
        mov eax, [want + 4]
        call puthex64
        mov eax, [want]
        call puthex64
        mov al, 10
        call putc64
        inc byte [failures]
        jmp %%next
%%ok:   mov esi, %%good
        call puts64
        jmp %%next
%%good: db GUEST, ": ok ", %1, 10, 0
%%bad:  db GUEST, ": FAIL ", %1, ": got/want ", 0
%%next: pop rsi
%endmacro

        GUEST_ENTRY
        ENTER_PM32_FRESH
        jmp main
        BOOT_SIGNATURE

        bits 32
main:
        SET_IDT32 6, fault32            ; #UD: LOCK MOV
        SET_IDT32 13, fault32e          ; #GP: x2APIC MSRs, bad APIC base

        EQ [APIC + A_VER], VER, "version (30H) plain 32-bit read"

        ; The end of the page: offset FFCH is no register (reads 0, the write
        ; is dropped); at FFEH the read also straddles into FEE01000H.
        EQ [APIC + 0xFFC], 0, "read at 0xFEE00FFC: 0"
        mov dword [APIC + 0xFFC], -1
        EQ [APIC + 0xFFE], 0, "read at 0xFEE00FFE (straddles the page end): 0"
        mov dword [APIC + 0xFFE], -1
        EQ [APIC + A_VER], VER, "writes at 0xFEE00FFC/FFE change nothing"
        EQ [IOAPIC + 0xFFC], 0, "read at 0xFEC00FFC: 0"
        mov dword [IOAPIC + 0xFFC], -1
        EQ [IOAPIC + 0xFFE], 0, "read at 0xFEC00FFE (straddles the page end): 0"
        mov dword [IOAPIC + 0xFFE], -1

        ; Byte and word reads take those bytes of the 32-bit register.
        mov eax, 0xDEADBEEF
        mov al, [APIC + A_VER]          ; A0 moffs
        EQ eax, 0xDEADBE14, "byte 0 of version into AL (moffs), rest kept"
        mov ecx, 0xDEADBEEF
        mov cl, [APIC + A_VER + 1]
        EQ ecx, 0xDEADBE00, "byte 1 of version into CL: 0"
        mov ecx, 0xDEADBEEF
        mov cl, [APIC + A_VER + 2]
        EQ ecx, 0xDEADBE05, "byte 2 of version into CL: 5"
        mov edx, 0xDEADBEEF
        mov dx, [APIC + A_VER]
        EQ edx, 0xDEAD0014, "word 0 of version into DX"
        mov edx, 0xDEADBEEF
        mov dx, [APIC + A_VER + 2]
        EQ edx, 0xDEAD0005, "word 1 of version into DX"
        mov eax, 0x11223344
        mov ah, [APIC + A_VER]
        EQ eax, 0x11221444, "byte into AH"
        mov ebx, 0xAABBCCDD
        mov bh, [APIC + A_VER + 2]
        EQ ebx, 0xAABB05DD, "byte into BH"
        mov edx, 0xAABBCCDD
        mov dh, [APIC + A_VER]
        EQ edx, 0xAABB14DD, "byte into DH"

        ; MOVZX/MOVSX: DFR reads 0xFFFFFFFF, version 0x00050014.
        mov eax, 0x12345678
        movzx eax, byte [APIC + A_DFR]
        EQ eax, 0xFF, "movzx eax, byte [DFR]"
        movsx eax, byte [APIC + A_DFR]
        EQ eax, 0xFFFFFFFF, "movsx eax, byte [DFR]"
        movzx eax, word [APIC + A_DFR + 2]
        EQ eax, 0xFFFF, "movzx eax, word [DFR+2]"
        movsx ecx, word [APIC + A_DFR]
        EQ ecx, 0xFFFFFFFF, "movsx ecx, word [DFR]"
        mov eax, 0x12345678
        movzx ax, byte [APIC + A_DFR]   ; 16-bit destination: EAX[31:16] kept
        EQ eax, 0x123400FF, "movzx ax, byte [DFR]"
        mov edx, 0x12345678
        movsx dx, byte [APIC + A_DFR]
        EQ edx, 0x1234FFFF, "movsx dx, byte [DFR]"
        movsx edx, byte [APIC + A_VER]
        EQ edx, 0x14, "movsx edx, byte [version]"

        ; ESP as the destination (and source): it lives in the VMCS.
        mov [saved_esp], esp
        mov esp, [APIC + A_VER]
        mov [got_esp], esp
        mov esp, [saved_esp]
        EQ [got_esp], VER, "mov esp, [version]"
        mov sp, [APIC + A_VER + 2]
        mov [got_esp], esp
        mov esp, [saved_esp]
        mov eax, [saved_esp]
        and eax, 0xFFFF0000
        or eax, 5
        EQ [got_esp], eax, "mov sp, [version+2]: ESP[31:16] kept"
        movzx esp, byte [APIC + A_VER]
        mov [got_esp], esp
        mov esp, [saved_esp]
        EQ [got_esp], 0x14, "movzx esp, byte [version]"
        mov esp, 0x7B30                 ; TPR takes the low byte: 0x30
        mov [APIC + A_TPR], esp
        mov esp, [saved_esp]
        EQ [APIC + A_TPR], 0x30, "mov [tpr], esp"
        mov ah, 0x20
        mov [APIC + A_TPR], ah
        EQ [APIC + A_TPR], 0x20, "mov [tpr], ah (byte write)"
        mov byte [APIC + A_TPR], 0
        EQ [APIC + A_TPR], 0, "mov byte [tpr], 0 (immediate)"

        ; Instructions straddling a 4 KiB boundary of this code.
        mov eax, 0xCAFEBABE
        call straddle15
        EQ eax, 0xCAFE0014, "15-byte mov ax (9 x 66H) straddling a code page"
        xor eax, eax
        call straddle5
        EQ eax, VER, "mov eax, [moffs] straddling a code page after its opcode"

        ; The instruction ends at the last byte of guest RAM (64 MiB, the
        ; default for a boot sector): the 15-byte fetch runs past the end.
        mov edi, RAM_END - 7
        mov esi, ram_end_code
        mov ecx, 7
        rep movsb
        mov ebx, .back
        xor eax, eax
        jmp RAM_END - 7
.back:  EQ eax, VER, "mov eax, [moffs] in the last 7 bytes of guest RAM"

        ; Segment bases: the access is at base + offset (the exit's GPA).
        mov ax, SEL_BASE1M
        mov fs, ax
        EQ [fs:APIC + A_VER - 0x100000], VER, "fs base 0x100000, offset 0xFED00030"
        mov ax, SEL_BASE1M
        mov ds, ax
        mov eax, [APIC + A_VER - 0x100000]
        mov bx, SEL_DATA
        mov ds, bx
        EQ eax, VER, "ds base 0x100000, offset 0xFED00030 (no prefix)"
        mov ax, SEL_BASEHI
        mov gs, ax
        EQ [gs:APIC + A_VER + 0x100000], VER, "gs base 0xFFF00000, offset 0xFEF00030 (linear wraps)"
        mov ax, SEL_BASEAPIC
        mov es, ax
        mov ebx, 0xFFFF0040
        mov eax, [es:bx - 0x10]         ; 67H: (0x40 - 0x10) mod 64 KiB
        EQ eax, VER, "es base 0xFEE00000, 16-bit address [bx-0x10]"
        mov eax, [es:word bx + 0xFFF0]      ; 16-bit offset wraps to 0x30
        push ds
        pop es
        EQ eax, VER, "es base 0xFEE00000, 16-bit address [bx+0xFFF0] wraps"

        ; x2APIC MSRs are #GP(0) in xAPIC mode (SDM "x2APIC Register Address Space").
        mov ecx, 0x802
        TRY32 rdmsr
        call gp0
        CHECK32 e, "rdmsr 802H in xAPIC mode: #GP(0)"
        mov ecx, 0x808
        xor eax, eax
        xor edx, edx
        TRY32 wrmsr
        call gp0
        CHECK32 e, "wrmsr 808H in xAPIC mode: #GP(0)"
        mov ecx, 0x83F
        mov eax, 0x40
        TRY32 wrmsr
        call gp0
        CHECK32 e, "wrmsr 83FH (self ipi) in xAPIC mode: #GP(0)"
        mov ecx, MSR_APIC_BASE
        rdmsr
        mov [apic_base], eax
        EQ eax, APIC | 0x900, "IA32_APIC_BASE = 0xFEE00900 (EN, BSP)"
        mov ecx, MSR_APIC_BASE
        mov eax, [apic_base]
        mov edx, 0x80000000             ; bit 63: above MAXPHYADDR
        TRY32 wrmsr
        call gp0
        CHECK32 e, "wrmsr IA32_APIC_BASE bit 63: #GP(0)"
        mov ecx, MSR_APIC_BASE
        xor edx, edx
        mov eax, APIC | 0x500           ; EXTD without EN
        TRY32 wrmsr
        call gp0
        CHECK32 e, "wrmsr IA32_APIC_BASE EXTD=1 EN=0: #GP(0)"

        ; Relocation keeps the registers (SDM "Relocating the Local APIC Registers").
        mov dword [APIC + A_TPR], 0x30
        mov eax, 0xFED00900
        call set_base
        EQ [0xFED00000 + A_VER], VER, "apic moved to 0xFED00000: version there"
        EQ [0xFED00000 + A_TPR], 0x30, "apic moved to 0xFED00000: tpr kept"
        mov eax, IOAPIC | 0x900         ; the local APIC is nearer than the IOAPIC
        call set_base
        EQ [IOAPIC + A_VER], VER, "apic moved over the ioapic page: apic answers"
        mov eax, [apic_base]
        call set_base
        EQ [APIC + A_VER], VER, "apic moved back to 0xFEE00000: version"
        mov dword [APIC + A_TPR], 0

        ; IOAPIC: index 3FH is entry 23's high half; 40H and FFH are nothing.
        mov dword [IOAPIC], 0x3F
        EQ [IOAPIC + 0x10], 0, "ioapic index 0x3F (entry 23 high) reads 0"
        mov dword [IOAPIC], 0x40
        mov dword [IOAPIC + 0x10], -1
        EQ [IOAPIC + 0x10], 0, "ioapic index 0x40 ignores a write, reads 0"
        mov dword [IOAPIC], 0xFF
        mov dword [IOAPIC + 0x10], -1
        EQ [IOAPIC + 0x10], 0, "ioapic index 0xFF ignores a write, reads 0"
        EQ [IOAPIC], 0xFF, "ioregsel reads back 0xFF"
        mov dword [IOAPIC], 1
        mov dword [IOAPIC + 0x10], -1
        EQ [IOAPIC + 0x10], IOAPIC_VER, "ioapic version ignores a write"
        movzx eax, byte [IOAPIC + 0x12]
        EQ eax, 0x17, "ioapic version byte 2 (max redirection entry)"
        mov dword [IOAPIC], 0x3F
        EQ [IOAPIC + 0x10], 0, "ioapic entry 23 high still 0"

        ; LOCK MOV: #UD at decode, before any access (SDM "LOCK").
        mov eax, 0x55
        TRY32 db 0xF0, 0x89, 0x05, 0x80, 0x00, 0xE0, 0xFE    ; lock mov [tpr], eax
        cmp byte [faulted], 1
        CHECK32 e, "lock mov [tpr], eax: #UD"
        EQ [APIC + A_TPR], 0, "tpr unchanged after the lock mov"

        ; 64-bit mode: map the two 2 MiB pages holding the IOAPIC and APIC.
        mov edi, PD3
        xor eax, eax
        mov ecx, 1024
        rep stosd
        mov dword [PD3 + 0x1F6 * 8], IOAPIC | 0x9B      ; P, RW, PWT, PCD, PS
        mov dword [PD3 + 0x1F7 * 8], APIC | 0x9B
        ENTER_LONG in_long
in_long:
        mov dword [PML4 + 0x1000 + 3 * 8], PD3 | 3
        mov rax, cr3
        mov cr3, rax
        call init_idt64
        mov rax, [qword APIC + A_VER]   ; REX.W A1 moffs64
        mov rbx, VER
        EQ64 "mov rax, [moffs64]: 8-byte read, upper half 0"
        mov esi, APIC
        mov rax, -1
        mov eax, [rsi + A_VER]          ; a 32-bit destination zero-extends
        EQ64 "mov eax, [rsi+30h] zero-extends into RAX"
        mov r9, -1
        mov r9d, [rsi + A_VER]
        mov rax, r9
        EQ64 "mov r9d, [rsi+30h]"
        mov r10, -1
        mov r10w, [rsi + A_VER]
        mov rax, r10
        mov rbx, 0xFFFFFFFFFFFF0014
        EQ64 "mov r10w, [rsi+30h]: bits 63:16 kept"
        mov r11, -1
        mov r11b, [rsi + A_VER + 2]
        mov rax, r11
        mov rbx, 0xFFFFFFFFFFFFFF05
        EQ64 "mov r11b, [rsi+32h]"
        mov rdi, -1
        mov dil, [rsi + A_VER]          ; REX: DIL, not BH
        mov rax, rdi
        mov rbx, 0xFFFFFFFFFFFFFF14
        EQ64 "mov dil, [rsi+30h] (REX)"
        mov rbp, rsp
        mov spl, [rsi + A_VER]          ; REX: SPL, not AH
        mov rax, rsp
        mov rsp, rbp
        mov rbx, rbp
        mov bl, 0x14
        EQ64 "mov spl, [rsi+30h] (REX): RSP bits 63:8 kept"
        mov rax, -1
        mov ah, [rsi + A_VER + 2]       ; no REX: AH
        mov rbx, 0xFFFFFFFFFFFF05FF
        EQ64 "mov ah, [rsi+32h] in 64-bit mode"
        movsx r12, byte [rsi + A_DFR]
        mov rax, r12
        mov rbx, -1
        EQ64 "movsx r12, byte [DFR]"
        mov rax, [rsi + 0xFFC]          ; straddles into FEE01000H
        xor ebx, ebx
        EQ64 "8-byte read at 0xFEE00FFC: 0"
        mov rax, 0xFFFFFFFF00000040     ; the register takes bits 31:0
        mov [rsi + A_TPR], rax
        mov rax, [rsi + A_TPR]
        mov ebx, 0x40
        EQ64 "8-byte write to tpr: low dword"
        mov qword [rsi + A_TPR], -1     ; REX.W C7: imm32 sign-extended
        mov rax, [rsi + A_TPR]
        mov ebx, 0xFF
        EQ64 "mov qword [tpr], -1 (imm32 sign-extended)"
        mov qword [rsi + A_TPR], 0
        mov edi, IOAPIC                 ; disp32 would sign-extend
        mov dword [rdi], 1
        mov rax, [rdi + 0x10]
        mov ebx, IOAPIC_VER
        EQ64 "8-byte read of ioapic version"
        FINISH64


        bits 32
print_got_want:
        inc byte [failures]
        mov eax, [got]
        call puthex32
        mov al, '/'
        call putc32
        mov eax, [want]
        call puthex32
        mov al, 10
        jmp putc32
; ZF=1 if the TRY'd instruction raised #GP(0).
gp0:
        cmp byte [faulted], 1
        jne .r
        cmp dword [fault_code], 0
.r:     ret
; IA32_APIC_BASE = eax (edx 0).
set_base:
        mov ecx, MSR_APIC_BASE
        xor edx, edx
        wrmsr
        ret

        HOSTILE32
        LIB32
        LIB16
        HOSTILE16
        HOSTILE64
        LIB64
        HOSTILE_VARS
ram_end_code:   db 0xA1                 ; mov eax, [APIC + A_VER]
                dd APIC + A_VER
                db 0xFF, 0xE3           ; jmp ebx
got:            dq 0
want:           dq 0
got_esp:        dd 0
saved_esp:      dd 0
apic_base:      dd 0
        align 8
gdt:
        dq 0
        dq 0x00CF9A000000FFFF           ; 0x08 code32
        dq 0x00CF92000000FFFF           ; 0x10 data
        dq 0x00AF9A000000FFFF           ; 0x18 code64
        dq 0x00CF92100000FFFF           ; 0x20 data, base 0x100000
        dq 0xFFCF92F00000FFFF           ; 0x28 data, base 0xFFF00000
        dq 0xFE4092E00000FFFF           ; 0x30 data, base 0xFEE00000, 64 KiB
gdt_end:
gdt_desc:
        dw gdt_end - gdt - 1
        dd gdt

        bits 32
; straddle15: a 15-byte MOV whose last byte is on the next 4 KiB page.
        times (0x1000 - (($ - $$ + 0x7C00 + 14) & 0xFFF)) & 0xFFF db 0xCC
straddle15:
        db 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66
        db 0x8B, 0x05
        dd APIC + A_VER                 ; mov ax, [0xFEE00030]
        ret
; straddle5: A1 moffs32 with only the opcode before the boundary.
        times (0x1000 - (($ - $$ + 0x7C00 + 1) & 0xFFF)) & 0xFFF db 0xCC
straddle5:
        mov eax, [APIC + A_VER]
        ret
