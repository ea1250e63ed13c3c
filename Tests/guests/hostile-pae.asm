; hostile-pae: turning on PAE paging loads the four PDPTEs, and a present
; PDPTE with a reserved bit set makes the MOV to CR0/CR3/CR4 raise #GP(0),
; with the register unchanged and the PDPTEs not loaded (SDM 4.4.1 "PDPTE
; Registers", Table 4-8: bits 2:1 and 8:5 are reserved). CR0/CR4 writes
; flip a host-owned bit (CR0.NE, CR4.OSXSAVE) so the hypervisor emulates them
; (SDM 26.1.3); CR3 loads do not exit with EPT (the CPU checks them itself).
%define GUEST "hostile-pae"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

PDPT_GOOD       equ 0x20000             ; PDPTE0 -> PD, present
PDPT_BAD        equ 0x20020             ; PDPTE0 -> PD, present, bit 1 (reserved)
PAE_PD          equ 0x21000             ; 512 x 2 MiB: the first GiB
PD32            equ 0x22000             ; 32-bit paging, 4 MiB pages

        GUEST_ENTRY
        jmp start
        BOOT_SIGNATURE
start:
        call init_ivt
        ENTER_PM32_FRESH
        SET_IDT32 13, fault32e
        mov eax, cr4
        or eax, CR4_OSXSAVE
        mov cr4, eax

        mov edi, PDPT_GOOD              ; clear PDPTs, PAE PD and 32-bit PD
        xor eax, eax
        mov ecx, 3 * 4096 / 4
        rep stosd
        mov dword [PDPT_GOOD], PAE_PD | 1
        mov dword [PDPT_BAD], PAE_PD | 1 | 2
        mov edi, PAE_PD
        mov eax, 0x83                   ; present, writable, 2 MiB
        mov ecx, 512
.pde:   mov [edi], eax
        mov dword [edi + 4], 0
        add eax, 0x200000
        add edi, 8
        loop .pde
        mov edi, PD32
        mov eax, 0x83                   ; present, writable, 4 MiB
        mov ecx, 1024
.pde32: mov [edi], eax
        add eax, 0x400000
        add edi, 4
        loop .pde32

        ; 1. MOV to CR0 (PG) with CR4.PAE=1 and CR3 -> the bad PDPT.
        mov eax, PDPT_BAD
        mov cr3, eax
        mov eax, cr4
        or eax, CR4_PAE
        mov cr4, eax
        mov ebx, cr0
        or ebx, CR0_PG
        xor ebx, CR0_NE
        call try_cr0_32
        jne .p1
        mov eax, cr3
        cmp eax, PDPT_BAD
.p1:    CHECK32 e, "cr0-pg with reserved PDPTE bit: #GP, CR0 and CR3 unchanged"

        ; 2. Good PDPT: PAE paging on; then MOV to CR3 -> the bad PDPT.
        mov eax, PDPT_GOOD
        mov cr3, eax
        mov eax, cr0
        or eax, CR0_PG
        xor eax, CR0_NE
        TRY32 mov cr0, eax
        mov eax, cr0
        test eax, CR0_PG
        jz .p2
        cmp byte [faulted], 0
.p2:    CHECK32 e, "cr0-pg with valid PDPTEs: PAE paging on"
        mov ebx, PDPT_BAD
        mov eax, cr3
        mov [saved_cr], eax
        TRY32 mov cr3, ebx
        mov eax, cr3
        call gp_unchanged_32
        CHECK32 e, "cr3 load with reserved PDPTE bit: #GP, CR3 unchanged"

        ; 3. From 32-bit paging (CR3 -> PD32, whose first two 4-byte PDEs
        ; read as PDPTE0 = present with bits 1 and 7 set), MOV to CR4 setting
        ; PAE must #GP (SDM 4.4.1: MOV to CR4 that enables PAE with PG=1).
        mov eax, cr0
        and eax, ~CR0_PG                ; paging off (only PG: no exit)
        mov cr0, eax
        mov eax, cr4
        and eax, ~CR4_PAE
        or eax, CR4_PSE
        mov cr4, eax
        mov eax, PD32
        mov cr3, eax
        mov eax, cr0
        or eax, CR0_PG
        mov cr0, eax
        mov ebx, cr4
        or ebx, CR4_PAE
        xor ebx, CR4_OSXSAVE
        call try_cr4_32
        CHECK32 e, "cr4-pae with paging on and reserved PDPTE bit: #GP, CR4 unchanged"
        mov eax, 0x12345678             ; still 32-bit paging: memory works
        mov [0x300000], eax
        cmp dword [0x300000], 0x12345678
        CHECK32 e, "32-bit paging still in force"
        jmp finish32

        HOSTILE32
        LIB32
        LIB16
        HOSTILE16
        HOSTILE_VARS
        LIB_GDT
