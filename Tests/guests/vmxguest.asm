; vmxguest: a 32-bit protected-mode guest that tries VMX. CPUID.1:ECX.VMX
; must read 0, and every VMX instruction must raise #UD in the guest: its IDT
; gate 6 (fault32) checks the fault came from the instruction tried and
; resumes after it. CR4.VMXE is left clear, as the hypervisor masks it.
%define GUEST "vmx"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
VMX_REGION      equ 0x20000             ; 4 KiB-aligned free RAM

; EXPECT_UD name, instruction: try it, report "vmx: #UD on name".
%macro EXPECT_UD 2+
        TRY32 %2
        cmp byte [faulted], 1
        REPORT32 e, %%ok, %%bad
        jmp %%next
%%ok:   db "vmx: #UD on ", %1, 10, 0
%%bad:  db "vmx: FAIL no #UD on ", %1, 10, 0
%%next:
%endmacro

        GUEST_ENTRY
        call init_ivt
        ENTER_PM32 protected
        BOOT_SIGNATURE

        bits 32
protected:
        call init_idt32
        SET_IDT32 6, fault32

        mov eax, 1
        cpuid
        bt ecx, 5
        REPORT32 nc, s_cpuid_ok, s_cpuid_bad

        mov dword [vmx_ptr], VMX_REGION
        mov dword [vmx_ptr + 4], 0
        xor eax, eax
        mov ebx, 0x4402                 ; VMCS field: exit reason
        EXPECT_UD "VMXON", vmxon [vmx_ptr]
        EXPECT_UD "VMCLEAR", vmclear [vmx_ptr]
        EXPECT_UD "VMPTRLD", vmptrld [vmx_ptr]
        EXPECT_UD "VMPTRST", vmptrst [vmx_ptr]
        EXPECT_UD "VMREAD", vmread eax, ebx
        EXPECT_UD "VMWRITE", vmwrite ebx, eax
        EXPECT_UD "VMLAUNCH", vmlaunch
        EXPECT_UD "VMRESUME", vmresume
        EXPECT_UD "INVEPT", invept eax, [invalidation]
        EXPECT_UD "INVVPID", invvpid eax, [invalidation]
        EXPECT_UD "VMXOFF", vmxoff
        jmp finish32

        align 16
invalidation:   dq 0, 0                 ; INVEPT/INVVPID descriptor
vmx_ptr:        dq 0
        LIB32
        LIB16
        LIB_GDT
s_cpuid_ok:  db "vmx: CPUID hides VMX", 10, 0
s_cpuid_bad: db "vmx: FAIL CPUID.1:ECX.VMX set", 10, 0
