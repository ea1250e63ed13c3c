; modeswitch: real mode -> 32-bit protected mode -> 64-bit long mode, the
; way a boot loader does it: GDT, CR0.PE, far jump; identity page tables
; (4-level, 2 MiB pages over the first 1 GiB) at 0x10000, CR4.PAE, EFER.LME,
; CR0.PG, far jump to a 64-bit code segment. Each mode installs its own
; all-vectors "unexpected" handler table. From 64-bit code: EFER.LMA, the
; control registers, and a 64-bit store/load through the new page tables.
%define GUEST "mode"
%include "Tests/guests/lib.inc"           ; assemble from the repository root

PML4            equ 0x10000
PDPT            equ 0x11000
PD              equ 0x12000
IDT64_BASE      equ 0x1000
MSR_EFER        equ 0xC0000080

        GUEST_ENTRY
        call init_ivt
        ENTER_PM32 protected
        BOOT_SIGNATURE

        bits 32
protected:
        call init_idt32
        mov eax, cr0
        test al, 1
        REPORT32 nz, s_pm_ok, s_pm_bad

        mov edi, PML4                   ; clear the three tables
        xor eax, eax
        mov ecx, 3 * 4096 / 4
        rep stosd
        mov dword [PML4], PDPT | 3      ; present, writable
        mov dword [PDPT], PD | 3
        mov edi, PD
        mov eax, 0x83                   ; present, writable, 2 MiB page
        mov ecx, 512
.pde:
        mov [edi], eax
        add eax, 0x200000
        add edi, 8
        loop .pde

        mov eax, PML4
        mov cr3, eax
        mov eax, cr4
        or eax, 1 << 5                  ; CR4.PAE
        mov cr4, eax
        mov ecx, MSR_EFER
        rdmsr
        or eax, 1 << 8                  ; EFER.LME
        wrmsr
        mov eax, cr0
        or eax, 1 << 31                 ; CR0.PG: IA-32e mode becomes active
        mov cr0, eax
        jmp SEL_CODE64:long_mode

        bits 64
long_mode:
        mov rsp, 0x7C00
        call init_idt64

        mov ecx, MSR_EFER
        rdmsr
        bt eax, 10                      ; EFER.LMA
        REPORT64 c, s_lma_ok, s_lma_bad

        mov rax, cr0
        and eax, 0x80000001
        cmp eax, 0x80000001             ; PG and PE
        jne .cr
        mov rax, cr3
        cmp rax, PML4
        jne .cr
        mov rax, cr4
        test eax, 1 << 5
        jz .cr
        cmp eax, eax
.cr:
        REPORT64 e, s_cr_ok, s_cr_bad

        mov rax, 0x0123456789ABCDEF
        mov [0x800000], rax             ; 8 MiB: the fifth 2 MiB page
        mov rbx, [0x800000]
        cmp rbx, rax
        jne .wide
        shr rbx, 32
        cmp ebx, 0x01234567
.wide:
        REPORT64 e, s_64_ok, s_64_bad

        cmp byte [failures], 0
        jne .failed
        mov esi, lib_s_passed
        call puts64
        EXIT 0
.failed:
        mov esi, lib_s_failed
        call puts64
        EXIT 1

; All 256 vectors -> unexpected64 (64-bit interrupt gates).
init_idt64:
        mov edi, IDT64_BASE
        mov ecx, 256
.gate:
        mov rax, unexpected64
        mov [rdi], ax
        mov word [rdi + 2], SEL_CODE64
        mov word [rdi + 4], 0x8E00
        shr rax, 16
        mov [rdi + 6], ax
        shr rax, 16
        mov [rdi + 8], eax
        mov dword [rdi + 12], 0
        add rdi, 16
        loop .gate
        lidt [idt64_desc]
        ret

unexpected64:
        mov esi, lib_s_unexpected
        call puts64
        mov eax, [rsp]
        call puthex64
        mov al, ' '
        call putc64
        mov eax, [rsp + 8]
        call puthex64
        mov al, 10
        call putc64
        EXIT 1

idt64_desc:
        dw 256 * 16 - 1
        dq IDT64_BASE

        LIB64
        LIB32
        LIB16
        LIB_GDT
s_pm_ok:    db "mode: protected", 10, 0
s_pm_bad:   db "mode: FAIL CR0.PE clear in protected mode", 10, 0
s_lma_ok:   db "mode: long mode, EFER.LMA=1", 10, 0
s_lma_bad:  db "mode: FAIL EFER.LMA clear in 64-bit code", 10, 0
s_cr_ok:    db "mode: CR0, CR3, CR4 read back", 10, 0
s_cr_bad:   db "mode: FAIL CR0, CR3 or CR4 read back wrong", 10, 0
s_64_ok:    db "mode: 64-bit store and load at 8 MiB", 10, 0
s_64_bad:   db "mode: FAIL 64-bit store and load at 8 MiB", 10, 0
