; xsetbv: XSETBV/XGETBV from a real-mode guest. Needs CPUID.1:ECX.XSAVE;
; sets CR4.OSXSAVE (CPUID.1:ECX.OSXSAVE must follow it); XCR0=3 (x87|SSE)
; must be accepted and read back; invalid values must raise #GP through the
; guest's own IVT entry 13, whose handler (fault16) resumes after the 3-byte
; XSETBV; XCR0 must be unchanged afterwards.
%define GUEST "xsetbv"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
        GUEST_ENTRY
        call init_ivt
        SET_IVT 13, fault16

        mov eax, 1
        cpuid
        bt ecx, 26
        jc .xsave
        PRINT s_no_xsave
        inc byte [failures]
        FINISH
.xsave:
        mov eax, cr4
        or eax, 1 << 18                 ; CR4.OSXSAVE
        mov cr4, eax
        mov eax, cr4
        bt eax, 18
        jnc .osx
        mov eax, 1
        cpuid
        bt ecx, 27                      ; CPUID.1:ECX.OSXSAVE mirrors CR4
.osx:
        REPORT c, s_osx_ok, s_osx_bad

        xor ecx, ecx
        xor edx, edx
        mov eax, 3
        TRY xsetbv
        cmp byte [faulted], 0
        jne .set3
        call xcr0_is_3
.set3:
        REPORT e, s_set3_ok, s_set3_bad

        xor ecx, ecx
        xor edx, edx
        xor eax, eax                    ; x87 bit clear
        TRY xsetbv
        cmp byte [faulted], 1
        REPORT e, s_gp0_ok, s_gp0_bad

        xor ecx, ecx
        xor edx, edx
        mov eax, 5                      ; x87|AVX without SSE
        TRY xsetbv
        cmp byte [faulted], 1
        REPORT e, s_gp5_ok, s_gp5_bad

        call xcr0_is_3
        REPORT e, s_kept_ok, s_kept_bad
        FINISH

; ZF set if XGETBV(0) = 3.
xcr0_is_3:
        xor ecx, ecx
        xgetbv
        test edx, edx
        jnz .ret
        cmp eax, 3
.ret:
        ret
        BOOT_SIGNATURE

        LIB16
s_no_xsave: db "xsetbv: FAIL CPUID.1:ECX.XSAVE clear", 10, 0
s_osx_ok:   db "xsetbv: CR4.OSXSAVE set, CPUID.1:ECX.OSXSAVE=1", 10, 0
s_osx_bad:  db "xsetbv: FAIL CR4.OSXSAVE or CPUID.1:ECX.OSXSAVE", 10, 0
s_set3_ok:  db "xsetbv: XCR0=3 accepted", 10, 0
s_set3_bad: db "xsetbv: FAIL XCR0=3 not accepted", 10, 0
s_gp0_ok:   db "xsetbv: #GP for invalid XCR0=0 (x87 clear)", 10, 0
s_gp0_bad:  db "xsetbv: FAIL no #GP for XCR0=0", 10, 0
s_gp5_ok:   db "xsetbv: #GP for invalid XCR0=5 (AVX without SSE)", 10, 0
s_gp5_bad:  db "xsetbv: FAIL no #GP for XCR0=5", 10, 0
s_kept_ok:  db "xsetbv: XCR0 still 3", 10, 0
s_kept_bad: db "xsetbv: FAIL XCR0 changed", 10, 0
