; hostile-cr-stale: protected mode entered by a MOV to CR0 that changes only
; PE (PE is guest-owned with unrestricted guest: no VM exit, SDM 26.1.3), so
; the hypervisor's CR0 read shadow still says real mode. Forbidden CR4/CR0
; writes must still raise #GP(0) with the protected-mode frame: error code,
; EIP, CS (SDM 7.13 "Error Code"; real mode pushes none, SDM 20.1.4).
%define GUEST "hostile-cr-stale"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

        GUEST_ENTRY
        call init_ivt
        ENTER_PM32 protected            ; only CR0.PE changes
        BOOT_SIGNATURE

        bits 32
protected:
        call init_idt32
        SET_IDT32 13, fault32e
        mov eax, cr0
        and eax, CR0_PE | CR0_NE
        cmp eax, CR0_PE                 ; PE set, NE still as at reset
        CHECK32 e, "in protected mode, CR0.NE untouched"

        ; SDM 2.5: reserved CR4 bit 15.
        mov ebx, cr4
        or ebx, 1 << 15
        call try_cr4_32
        CHECK32 e, "cr4-reserved-bit #GP(0) with error code"

        ; SDM MOV: NW=1 with CD=0 is #GP; NE flips so the write exits.
        mov ebx, cr0
        or ebx, CR0_NW | CR0_NE
        and ebx, ~CR0_CD
        call try_cr0_32
        CHECK32 e, "cr0-nw-without-cd #GP(0) with error code"

        ; SDM MOV (32-bit): PG=1 with PE=0 is #GP.
        mov ebx, cr0
        and ebx, ~CR0_PE
        or ebx, CR0_PG | CR0_NE
        call try_cr0_32
        CHECK32 e, "cr0-pg-without-pe #GP(0) with error code"
        jmp finish32

        HOSTILE32
        LIB32
        LIB16
        HOSTILE16
        HOSTILE_VARS
        LIB_GDT
