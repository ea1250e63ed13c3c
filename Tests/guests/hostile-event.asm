; hostile-event: exceptions the hypervisor injects into a protected-mode guest
; must carry their error code: #GP(0) from WRMSR to an MSR that does not
; exist and from XSETBV with XCR0 bit 0 clear (SDM 7.13 "Error Code", 13.3).
; Protected mode is entered by a MOV to CR0 that changes only PE, which does
; not exit (PE is guest-owned with unrestricted guest, SDM 26.1.3): the
; hypervisor's CR0 read shadow still says real mode. Then the same probes
; after a MOV to CR0 that exits (NE flips, host-owned).
%define GUEST "hostile-event"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

; PROBES round: the checks, each line tagged with the round.
%macro PROBES 1
        mov ecx, MSR_BOGUS
        xor eax, eax
        xor edx, edx
        TRY32 wrmsr
        call gp0
        CHECK32 e, {"wrmsr unknown MSR (", %1, "): #GP(0), error code on the stack"}
        xor ecx, ecx
        xor edx, edx
        xor eax, eax
        TRY32 xsetbv
        call gp0
        CHECK32 e, {"xsetbv XCR0=0 (", %1, "): #GP(0), error code on the stack"}
%endmacro

        GUEST_ENTRY
        call init_ivt
        ENTER_PM32 protected
        BOOT_SIGNATURE

        bits 32
protected:
        call init_idt32
        SET_IDT32 13, fault32e
        mov eax, cr4
        or eax, CR4_OSXSAVE             ; XSETBV needs it (SDM 13.3)
        mov cr4, eax
        PROBES "PE set by a plain MOV"
        SAY32 "CR0.NE set: a MOV to CR0 that exits"
        mov eax, cr0
        or eax, CR0_NE
        mov cr0, eax
        PROBES "after a CR0 exit"
        jmp finish32


; ZF=1 if one fault from the TRY'd instruction with error code 0; fault32e
; fails the guest itself if the frame has no error code.
gp0:
        cmp byte [faulted], 1
        jne .r
        cmp dword [fault_code], 0
.r:     ret

        HOSTILE32
        LIB32
        LIB16
        HOSTILE16
        HOSTILE_VARS
        LIB_GDT
