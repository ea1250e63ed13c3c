; hostile-cr: MOV to CR0/CR3/CR4 with values the SDM forbids must raise
; #GP(0) and leave the register unchanged (SDM Vol. 2B "MOV—Move to/from
; Control Registers", Protected Mode and 64-Bit Mode Exceptions). CR0/CR4
; writes exit only when they change a host-owned bit (SDM 26.1.3), so each
; bad value also flips one: CR0.NE (VMX-fixed, always masked) or CR4.OSXSAVE
; (tracked by the hypervisor). CR3 loads do not exit with EPT: those probes
; check the CPU itself. CR0 is first written with an exit (PE|NE), so the
; CR0 read shadow is fresh; hostile-cr-stale covers the other case.
%define GUEST "hostile-cr"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

        GUEST_ENTRY
        jmp start
        BOOT_SIGNATURE
start:
        call init_ivt
        xor eax, eax
        cpuid
        mov [maxleaf], eax
        mov eax, 1
        cpuid
        mov [f1ecx], ecx
        xor ecx, ecx
        xor edx, edx
        cmp dword [maxleaf], 7
        jb .nof7
        mov eax, 7
        xor ecx, ecx
        cpuid
.nof7:  mov [f7ecx], ecx
        mov [f7edx], edx
        bt dword [f1ecx], 26            ; XSAVE: CR4.OSXSAVE must exist
        jc .xsave
        SAY16 "FAIL needs CPUID.1:ECX.XSAVE"
        inc byte [failures]
        FINISH
.xsave:
        ENTER_PM32_FRESH
        SET_IDT32 13, fault32e
        mov eax, cr4
        or eax, CR4_OSXSAVE
        mov cr4, eax

        ; SDM 2.5: reserved CR4 bits (15) must be 0.
        mov ebx, cr4
        or ebx, 1 << 15
        call try_cr4_32
        CHECK32 e, "cr4-reserved-bit #GP"

        ; SDM MOV: setting CR4.PCIDE outside IA-32e mode is #GP (4.10.1).
        bt dword [f1ecx], 17
        jc .pcid
        SAY32 "skip cr4-pcide-legacy (no PCID)"
        jmp .pcid_done
.pcid:  mov ebx, cr4
        xor ebx, CR4_OSXSAVE
        or ebx, CR4_PCIDE
        call try_cr4_32
        CHECK32 e, "cr4-pcide-legacy #GP"
.pcid_done:

        ; SDM MOV: CR4.CET=1 needs CR0.WP=1, and WP cannot be cleared while
        ; CET=1 (SDM 2.5, 18.1.3 "Enabling CET").
        test dword [f7ecx], 1 << 7      ; CET_SS
        jnz .cet
        test dword [f7edx], 1 << 20     ; CET_IBT
        jnz .cet
        SAY32 "skip cr4-cet-with-wp0, cr0-wp-clear-with-cet (no CET)"
        jmp .cet_done
.cet:   mov ebx, cr4
        xor ebx, CR4_OSXSAVE
        or ebx, CR4_CET
        call try_cr4_32                 ; CR0.WP is 0 here
        CHECK32 e, "cr4-cet-with-wp0 #GP"
        mov eax, cr0
        or eax, CR0_WP
        mov cr0, eax
        mov eax, cr4
        or eax, CR4_CET
        mov cr4, eax
        mov ebx, cr0
        and ebx, ~CR0_WP
        xor ebx, CR0_NE
        call try_cr0_32
        CHECK32 e, "cr0-wp-clear-with-cet #GP"
        mov eax, cr4
        and eax, ~CR4_CET
        mov cr4, eax
.cet_done:

        ; SDM MOV: PG=1 with PE=0, and NW=1 with CD=0, are #GP.
        mov ebx, cr0
        and ebx, ~CR0_PE
        or ebx, CR0_PG
        xor ebx, CR0_NE
        call try_cr0_32
        CHECK32 e, "cr0-pg-without-pe #GP"
        mov ebx, cr0
        or ebx, CR0_NW
        and ebx, ~CR0_CD
        xor ebx, CR0_NE
        call try_cr0_32
        CHECK32 e, "cr0-nw-without-cd #GP"

        ENTER_LONG long_mode
long_mode:
        mov rsp, 0x7C00
        call init_idt64
        mov edi, IDT64 + 13 * 16
        mov rax, fault64e
        call set_gate64

        ; SDM MOV (64-bit mode): CR0[63:32] are reserved.
        mov rbx, cr0
        bts rbx, 32
        call try_cr0_64
        CHECK64 e, "cr0-bit32 #GP"

        ; SDM MOV: CR4 reserved bit in 64-bit mode too.
        mov rbx, cr4
        bts rbx, 15
        call try_cr4_64
        CHECK64 e, "cr4-reserved-bit-long-mode #GP"

        ; SDM MOV: CR4.LA57 cannot change while EFER.LMA=1 (4.1.1).
        test dword [f7ecx], 1 << 16
        jnz .la57
        SAY64 "skip cr4-la57-toggle (no LA57)"
        jmp .la57_done
.la57:  mov rbx, cr4
        xor rbx, CR4_OSXSAVE
        or rbx, CR4_LA57
        call try_cr4_64
        CHECK64 e, "cr4-la57-toggle-in-long-mode #GP"
.la57_done:

        ; SDM 4.5: with PCIDE=0, CR3 bit 63 is above MAXPHYADDR: reserved.
        mov rbx, cr3
        bts rbx, 63
        call try_cr3_64
        CHECK64 e, "cr3-bit63-without-pcide #GP"

        bt dword [f1ecx], 17
        jc .pcid64
        SAY64 "skip cr4-pcide probes in long mode (no PCID)"
        jmp .pcid64_done
.pcid64:
        ; SDM MOV: CR4.PCIDE 0->1 with CR3[11:0] != 0 is #GP (here PWT).
        mov eax, PML4 | 8
        mov cr3, rax
        mov rbx, cr4
        xor rbx, CR4_OSXSAVE
        or rbx, CR4_PCIDE
        call try_cr4_64
        CHECK64 e, "cr4-pcide-with-cr3-low-bits #GP"
        mov eax, PML4
        mov cr3, rax
        ; The same write with CR3[11:0]=0 is legal: the probes can tell.
        mov rax, cr4
        xor rax, CR4_OSXSAVE
        or rax, CR4_PCIDE
        mov rbx, rax
        TRY32 mov cr4, rbx
        mov rax, cr4
        cmp byte [faulted], 0
        jne .pc
        cmp rax, rbx
.pc:    CHECK64 e, "cr4-pcide-in-long-mode accepted"
        ; SDM 4.10.4.1: with PCIDE=1, CR3 bit 63 is a hint, not stored.
        mov rbx, PML4
        bts rbx, 63
        TRY32 mov cr3, rbx
        mov rax, cr3
        cmp byte [faulted], 0
        jne .p63
        cmp rax, PML4
.p63:   CHECK64 e, "cr3-bit63-with-pcide accepted, not stored"
        mov rax, cr4
        and eax, ~CR4_PCIDE
        or eax, CR4_OSXSAVE
        mov cr4, rax
.pcid64_done:
        FINISH64

        HOSTILE64
        LIB64
        HOSTILE32
        LIB32
        LIB16
        HOSTILE16
        HOSTILE_VARS
        LIB_GDT
maxleaf: dd 0
f1ecx:  dd 0
f7ecx:  dd 0
f7edx:  dd 0
