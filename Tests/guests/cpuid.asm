; cpuid: the CPUID policy seen from a real-mode guest. Leaf 0's vendor is
; printed as-is; leaf 1 ECX must show the hypervisor bit (31) and hide VMX
; (5); leaf 0x40000000 must give max leaf 0x40000001 and "SwiftVMXhv\0\0".
; Repeated leaves are answered by the exit fast path's cache (Boot/vmx.asm):
; a repeat must equal the first answer, subleaves must stay apart, and a
; CR4.OSXSAVE change must show in leaf 1 although leaf 1 was cached.
%define GUEST "cpuid"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
        GUEST_ENTRY
        call init_ivt

        xor eax, eax
        cpuid
        mov [vendor], ebx
        mov [vendor + 4], edx
        mov [vendor + 8], ecx
        PRINT s_vendor

        mov eax, 1
        cpuid
        bt ecx, 31
        REPORT c, s_hv_ok, s_hv_bad
        bt ecx, 5
        REPORT nc, s_vmx_ok, s_vmx_bad

        mov eax, 0x40000000
        xor ecx, ecx
        cpuid
        mov [sig], ebx
        mov [sig + 4], ecx
        mov [sig + 8], edx
        cmp eax, 0x40000001
        REPORT e, s_max_ok, s_max_bad
        cmp dword [sig], 'Swif'
        jne .sig
        cmp dword [sig + 4], 'tVMX'
        jne .sig
        cmp dword [sig + 8], `hv\0\0`
.sig:
        REPORT e, s_sig_ok, s_sig_bad

        ; Leaf 1 again (now cached), with a different ECX: leaf 1 ignores it.
        mov eax, 1
        xor ecx, ecx
        cpuid
        mov [first], ebx
        mov [first + 4], ecx
        mov [first + 8], edx
        mov eax, 1
        mov ecx, 0x1234
        cpuid
        cmp ebx, [first]
        jne .repeat
        cmp ecx, [first + 4]
        jne .repeat
        cmp edx, [first + 8]
.repeat:
        REPORT e, s_repeat_ok, s_repeat_bad

        ; Leaf 4 describes one cache per subleaf: L1 data (type 1), then L1
        ; instruction (type 2). Both cached, neither may answer for the other.
        mov eax, 4
        xor ecx, ecx
        cpuid
        mov esi, eax
        mov eax, 4
        mov ecx, 1
        cpuid
        mov edi, eax
        mov eax, 4
        xor ecx, ecx
        cpuid
        and eax, 0x1F
        and esi, 0x1F
        and edi, 0x1F
        cmp eax, esi                    ; subleaf 0 asked again: the same
        jne .subleaves
        cmp esi, 1                      ; data cache
        jne .subleaves
        cmp edi, 2                      ; instruction cache
.subleaves:
        REPORT e, s_sub_ok, s_sub_bad

        ; OSXSAVE (leaf 1 ECX bit 27) mirrors CR4.OSXSAVE (bit 18).
        mov eax, cr4
        bts eax, 18
        mov cr4, eax
        mov eax, 1
        cpuid
        bt ecx, 27
        REPORT c, s_osx_on_ok, s_osx_on_bad
        mov eax, cr4
        btr eax, 18
        mov cr4, eax
        mov eax, 1
        cpuid
        bt ecx, 27
        REPORT nc, s_osx_off_ok, s_osx_off_bad
        FINISH
        BOOT_SIGNATURE

        LIB16
s_vendor:   db "cpuid: vendor "
vendor:     db "????????????", 10, 0
sig:        dd 0, 0, 0
first:      dd 0, 0, 0
s_repeat_ok:   db "cpuid: repeated leaf 1 answers the same", 10, 0
s_repeat_bad:  db "cpuid: FAIL repeated leaf 1 differs", 10, 0
s_sub_ok:      db "cpuid: leaf 4 subleaves 0 and 1 kept apart", 10, 0
s_sub_bad:     db "cpuid: FAIL leaf 4 subleaves mixed up", 10, 0
s_osx_on_ok:   db "cpuid: OSXSAVE follows CR4 on", 10, 0
s_osx_on_bad:  db "cpuid: FAIL OSXSAVE clear with CR4.OSXSAVE set", 10, 0
s_osx_off_ok:  db "cpuid: OSXSAVE follows CR4 off", 10, 0
s_osx_off_bad: db "cpuid: FAIL OSXSAVE set with CR4.OSXSAVE clear", 10, 0
s_hv_ok:    db "cpuid: hypervisor bit set", 10, 0
s_hv_bad:   db "cpuid: FAIL hypervisor bit clear", 10, 0
s_vmx_ok:   db "cpuid: VMX hidden", 10, 0
s_vmx_bad:  db "cpuid: FAIL VMX visible", 10, 0
s_max_ok:   db "cpuid: max hypervisor leaf 0x40000001", 10, 0
s_max_bad:  db "cpuid: FAIL max hypervisor leaf", 10, 0
s_sig_ok:   db "cpuid: signature SwiftVMXhv", 10, 0
s_sig_bad:  db "cpuid: FAIL signature", 10, 0
