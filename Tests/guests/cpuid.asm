; cpuid: the CPUID policy seen from a real-mode guest. Leaf 0's vendor is
; printed as-is; leaf 1 ECX must show the hypervisor bit (31) and hide VMX
; (5); leaf 0x40000000 must give max leaf 0x40000001 and "SwiftVMXhv\0\0".
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
        FINISH
        BOOT_SIGNATURE

        LIB16
s_vendor:   db "cpuid: vendor "
vendor:     db "????????????", 10, 0
sig:        dd 0, 0, 0
s_hv_ok:    db "cpuid: hypervisor bit set", 10, 0
s_hv_bad:   db "cpuid: FAIL hypervisor bit clear", 10, 0
s_vmx_ok:   db "cpuid: VMX hidden", 10, 0
s_vmx_bad:  db "cpuid: FAIL VMX visible", 10, 0
s_max_ok:   db "cpuid: max hypervisor leaf 0x40000001", 10, 0
s_max_bad:  db "cpuid: FAIL max hypervisor leaf", 10, 0
s_sig_ok:   db "cpuid: signature SwiftVMXhv", 10, 0
s_sig_bad:  db "cpuid: FAIL signature", 10, 0
