; hostile-mmio-walk: a guest page table in the APIC page. The PDE for
; 0x400000-0x7FFFFF points at 0xFEE00000, so reading 0x40C000 makes the CPU
; fetch the PTE from 0xFEE00030: the EPT violation is for a paging-structure
; access (exit qualification bit 8 = 0, SDM 28.2.1 Table 28-7), not for the
; MOV's operand. The MOV must not be emulated as a read of that GPA (EAX
; would get the version register); the hypervisor cannot emulate the walk,
; so it must stop the guest. The probe sits at RIP 0x8000 for the report.
%define GUEST "hostile-mmio-walk"
%include "Tests/guests/hostile-mmio-stop.inc"
PD              equ 0x20000
PT              equ 0x21000
        STOP_ENTRY "mov eax, [0x40C000] with its PTE at 0xFEE00030"
        mov edi, PD
        xor eax, eax
        mov ecx, 1024
        rep stosd
        mov dword [PD], PT | 3          ; 0-4 MiB: identity, 4 KiB pages
        mov dword [PD + 4], APIC | 3    ; 4-8 MiB: page table = APIC page
        mov edi, PT
        mov eax, 3
        mov ecx, 1024
.pte:   stosd
        add eax, 0x1000
        loop .pte
        mov eax, PD
        mov cr3, eax
        mov eax, cr0
        or eax, CR0_PG
        mov cr0, eax
        xor eax, eax
        jmp probe
        times 0x8000 - 0x7C00 - ($ - $$) db 0xCC
probe:  mov eax, [0x40C000]             ; at 0x8000
        STOP_SURVIVED
