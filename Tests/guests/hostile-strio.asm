; hostile-strio: string I/O (INS/OUTS) that the hypervisor emulates must
; behave as on the CPU, with 32-bit paging on (SDM 4.3):
; - FS override on OUTS reads from FS, not DS (SDM Vol. 2B OUTS: "DS:ESI,
;   the DS segment may be overridden");
; - INSW whose second byte is on a not-present page: #PF, error code W (SDM
;   4.7), nothing retired (ECX, EDI unchanged);
; - REP OUTSB from a not-present page: #PF (read), the guest goes on;
; - ring 3 with IOPL=3 (no I/O permission check, SDM 19.5.1), REP INSB into a
;   supervisor-only page: #PF, error code P|W|U.
%define GUEST "hostile-strio"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

PD              equ 0x20000
PT              equ 0x21000             ; 4 KiB pages over the first 4 MiB
SUPER_PAGE      equ 0x40000             ; present, supervisor-only
HOLE            equ 0x42000             ; not present
TSS             equ 0x3000
SEL_CODE3       equ 0x18 | 3
SEL_DATA3       equ 0x20 | 3
SEL_TSS         equ 0x28
SEL_FS          equ 0x30                ; data, base 0x30000
FS_BASE         equ 0x30000
BUF             equ 0x9800              ; offset read through DS and FS
PORT            equ COM1_SCRATCH

        GUEST_ENTRY
        jmp start
        BOOT_SIGNATURE
start:
        call init_ivt
        ENTER_PM32_FRESH
        SET_IDT32 14, fault32e
        SET_IDT32 0x80, ring3_done
        mov word [edi + 4], 0xEE00      ; DPL 3: ring 3 may INT 0x80

        mov edi, TSS                    ; ring 0 stack for faults in ring 3
        xor eax, eax
        mov ecx, 104 / 4
        rep stosd
        mov dword [TSS + 4], 0x6000     ; ESP0
        mov dword [TSS + 8], SEL_DATA   ; SS0
        mov word [TSS + 102], 104       ; no I/O bitmap
        mov ax, SEL_TSS
        ltr ax

        mov edi, PD
        xor eax, eax
        mov ecx, 1024
        rep stosd
        mov dword [PD], PT | 7
        mov edi, PT
        mov eax, 7                      ; present, writable, user
        mov ecx, 1024
.pte:   stosd
        add eax, 0x1000
        loop .pte
        and dword [PT + (SUPER_PAGE >> 12) * 4], ~4
        mov dword [PT + (HOLE >> 12) * 4], 0
        mov eax, PD
        mov cr3, eax
        mov eax, cr0
        or eax, CR0_PG
        mov cr0, eax

        ; 1. FS override on OUTS (REP and single).
        mov byte [BUF], 0xA5
        mov byte [BUF + 1], 0xA5
        mov byte [FS_BASE + BUF], 0x5A
        mov byte [FS_BASE + BUF + 1], 0x3C
        mov ax, SEL_FS
        mov fs, ax
        mov dx, PORT
        mov esi, BUF
        mov ecx, 1
        fs rep outsb
        in al, dx
        cmp al, 0x5A
        jne .fs1
        cmp esi, BUF + 1
.fs1:   CHECK32 e, "fs rep outsb reads FS:ESI"
        mov dx, PORT                    ; CHECK32 clobbered them
        mov esi, BUF + 1
        fs outsb
        in al, dx
        cmp al, 0x3C
        CHECK32 e, "fs outsb reads FS:ESI"

        ; 2. INSW across a page boundary into a not-present page.
        mov edi, HOLE - 1
        mov ecx, 1
        TRY32 insw
        mov eax, 2                      ; W, not present, supervisor
        mov ebx, HOLE
        call pf_check
        jne .ins2
        cmp edi, HOLE - 1
.ins2:  CHECK32 e, "insw straddling into a not-present page: #PF(W), EDI kept"

        ; 3. REP OUTSB from a not-present page.
        mov esi, HOLE
        mov ecx, 2
        TRY32 rep outsb
        xor eax, eax                    ; read, not present, supervisor
        mov ebx, HOLE
        call pf_check
        jne .outs3
        cmp esi, HOLE
        jne .outs3
        cmp ecx, 2
.outs3: CHECK32 e, "rep outsb from a not-present page: #PF(R), ESI and ECX kept"

        ; 4. Ring 3, IOPL=3: REP INSB into a supervisor-only page.
        push dword SEL_DATA3
        push dword 0x5000               ; ring 3 stack (a user page)
        push dword 0x3002               ; IOPL=3, IF=0
        push dword SEL_CODE3
        push dword ring3
        iretd
ring3:
        mov ax, SEL_DATA3
        mov ds, ax
        mov es, ax
        mov dx, PORT
        mov edi, SUPER_PAGE
        mov ecx, 4
        TRY32 rep insb
        mov [r3_ecx], ecx
        mov [r3_edi], edi
        int 0x80
ring3_done:                             ; ring 0 again; drop the frame
        mov ax, SEL_DATA
        mov ds, ax
        mov es, ax
        mov esp, 0x7C00
        mov eax, 7                      ; P | W | U
        mov ebx, SUPER_PAGE
        call pf_check
        jne .r3
        cmp dword [r3_ecx], 4
        jne .r3
        cmp dword [r3_edi], SUPER_PAGE
.r3:    CHECK32 e, "ring 3 rep insb into a supervisor page: #PF(P|W|U), ECX and EDI kept"
        jmp finish32

; ZF=1 if one #PF from the TRY'd instruction with error code eax and CR2 ebx.
pf_check:
        cmp byte [faulted], 1
        jne .r
        cmp [fault_code], eax
        jne .r
        cmp [fault_cr2], ebx
.r:     ret

        HOSTILE32
        LIB32
        LIB16
        HOSTILE16
        HOSTILE_VARS
r3_ecx: dd 0
r3_edi: dd 0
        align 8
gdt:
        dq 0
        dq 0x00CF9A000000FFFF           ; 0x08 code32, ring 0
        dq 0x00CF92000000FFFF           ; 0x10 data, ring 0
        dq 0x00CFFA000000FFFF           ; 0x18 code32, ring 3
        dq 0x00CFF2000000FFFF           ; 0x20 data, ring 3
        dq 0x0000890030000067           ; 0x28 TSS at 0x3000, 104 bytes
        dq 0x00CF92030000FFFF           ; 0x30 data, base 0x30000
gdt_end:
gdt_desc:
        dw gdt_end - gdt - 1
        dd gdt
