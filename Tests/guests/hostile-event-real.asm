; hostile-event-real: exceptions the hypervisor injects into a real-mode guest
; (#GP from WRMSR to an MSR that does not exist, SDM Vol. 4 / WRMSR; #GP from
; XSETBV with XCR0 bit 0 clear, SDM 13.3) go through the guest's IVT with a
; 6-byte frame, FLAGS, CS, IP: real mode pushes no error code (SDM 20.1.4).
; Then again after CR0.PE was set by a MOV that exits (the hypervisor sees
; PE=1) and cleared by one that does not (only PE changes, guest-owned with
; unrestricted guest, SDM 26.1.3): the guest is in real mode all the same.
%define GUEST "hostile-event-real"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

; PROBES round: the checks, each line tagged with the round.
%macro PROBES 1
        mov ecx, MSR_BOGUS
        xor eax, eax
        xor edx, edx
        TRYSP wrmsr
        call frame_check
        CHECK16 e, {"wrmsr unknown MSR (", %1, "): #GP via IVT, no error code"}
        xor ecx, ecx
        xor edx, edx
        xor eax, eax                    ; XCR0 without x87
        TRYSP xsetbv
        call frame_check
        CHECK16 e, {"xsetbv XCR0=0 (", %1, "): #GP via IVT, no error code"}
%endmacro

        GUEST_ENTRY
        jmp start
        BOOT_SIGNATURE
start:
        call init_ivt
        SET_IVT 13, fault16sp
        mov eax, cr4
        or eax, CR4_OSXSAVE             ; XSETBV needs it (SDM 13.3)
        mov cr4, eax

        PROBES "from reset"
        SAY16 "CR0.PE set by an exiting MOV, cleared by a plain one"
        mov eax, cr0
        or eax, CR0_PE | CR0_NE         ; NE is host-owned: exits
        mov cr0, eax
        and eax, ~CR0_PE                ; only PE: no exit
        mov cr0, eax
        mov eax, cr0
        test al, CR0_PE
        CHECK16 z, "back in real mode (CR0.PE=0)"
        PROBES "after PE on and off"
        FINISH


; ZF=1 if exactly one fault, from the TRY'd instruction, with a 6-byte frame.
frame_check:
        cmp byte [faulted], 1
        jne .r
        call frame_is_6
.r:     ret

        HOSTILE16
        LIB16
        HOSTILE_VARS
