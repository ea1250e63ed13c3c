; VMX instruction wrappers and the VM entry/exit trampoline.
; Status convention (SDM 31.2 "Conventions"): 0 = VMsucceed,
; 1 = VMfailInvalid (CF=1), 2 = VMfailValid (ZF=1; the error number is in
; the VM-instruction error field).
bits 64
section .text

VMCS_HOST_RSP equ 0x6C14

; GeneralRegisters (Sources/X86VCPU/GeneralRegisters.swift): x86 register
; number * 8. A layout test there checks these offsets.
R_RAX equ 0
R_RCX equ 8
R_RDX equ 16
R_RBX equ 24
R_RBP equ 40
R_RSI equ 48
R_RDI equ 56
R_R8  equ 64
R_R9  equ 72
R_R10 equ 80
R_R11 equ 88
R_R12 equ 96
R_R13 equ 104
R_R14 equ 112
R_R15 equ 120

%macro FUNC 1
global %1
%1:
%endmacro

; eax = status from CF/ZF of the instruction just executed.
%macro VMX_STATUS 0
    mov eax, 1
    jc %%done
    mov eax, 2
    jz %%done
    xor eax, eax
%%done:
%endmacro

; int vmx_on(uint64 region_pa)
FUNC vmx_on
    push rdi
    vmxon [rsp]
    VMX_STATUS
    pop rdi
    ret
FUNC vmx_off
    vmxoff
    VMX_STATUS
    ret
; int vmx_clear(uint64 vmcs_pa)
FUNC vmx_clear
    push rdi
    vmclear [rsp]
    VMX_STATUS
    pop rdi
    ret
; int vmx_ptrld(uint64 vmcs_pa)
FUNC vmx_ptrld
    push rdi
    vmptrld [rsp]
    VMX_STATUS
    pop rdi
    ret
; int vmx_read(uint64 field, uint64 *value)
FUNC vmx_read
    vmread rax, rdi
    jbe .fail                           ; CF or ZF: the value is not valid
    mov [rsi], rax
    xor eax, eax
    ret
.fail:
    VMX_STATUS
    ret
; int vmx_write(uint64 field, uint64 value)
FUNC vmx_write
    vmwrite rdi, rsi
    VMX_STATUS
    ret
; int vmx_invept(uint64 type, uint64 eptp)
FUNC vmx_invept
    push 0
    push rsi
    invept rdi, [rsp]
    VMX_STATUS
    add rsp, 16
    ret
; int vmx_invvpid(uint64 type, uint64 vpid, uint64 linear)
FUNC vmx_invvpid
    push rdx
    push rsi
    invvpid rdi, [rsp]
    VMX_STATUS
    add rsp, 16
    ret

; Undoes vmx_run's prologue: drops the regs pointer, restores the host's
; RFLAGS and callee-saved registers.
%macro RESTORE_HOST 0
    add rsp, 8                          ; regs
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
%endmacro

; int vmx_run(GeneralRegisters *regs, uint64 launched)
; Enters the guest with its GPRs from *regs (VMLAUNCH when launched == 0, else
; VMRESUME). Returns 0 after a VM exit with the guest GPRs stored back into
; *regs, or the failure status when the VM instruction itself failed.
; The host's callee-saved registers and RFLAGS are saved on the stack; a VM
; exit loads RSP = HOST_RSP (this frame) and clears RFLAGS, so both come back
; from here (the Rust reference never restored RFLAGS).
FUNC vmx_run
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    pushfq
    push rdi                            ; [rsp] = regs, found again at the exit
    mov rax, VMCS_HOST_RSP
    vmwrite rax, rsp
    jbe .setup_failed

    cmp rsi, 0                          ; flags survive the movs below
    mov rax, [rdi + R_RAX]
    mov rcx, [rdi + R_RCX]
    mov rdx, [rdi + R_RDX]
    mov rbx, [rdi + R_RBX]
    mov rbp, [rdi + R_RBP]
    mov rsi, [rdi + R_RSI]
    mov r8,  [rdi + R_R8]
    mov r9,  [rdi + R_R9]
    mov r10, [rdi + R_R10]
    mov r11, [rdi + R_R11]
    mov r12, [rdi + R_R12]
    mov r13, [rdi + R_R13]
    mov r14, [rdi + R_R14]
    mov r15, [rdi + R_R15]
    mov rdi, [rdi + R_RDI]
    jne .resume
    vmlaunch
    jmp .entry_failed
.resume:
    vmresume
.entry_failed:
    ; Still in the host, guest values in the GPRs; *regs is unchanged.
.setup_failed:
    VMX_STATUS
    RESTORE_HOST
    ret

; HOST_RIP: the VMCS setup writes this address once.
global vmx_exit_entry
vmx_exit_entry:
    push rdi                            ; guest rdi
    mov rdi, [rsp + 8]                  ; regs
    mov [rdi + R_RAX], rax
    mov [rdi + R_RCX], rcx
    mov [rdi + R_RDX], rdx
    mov [rdi + R_RBX], rbx
    mov [rdi + R_RBP], rbp
    mov [rdi + R_RSI], rsi
    mov [rdi + R_R8],  r8
    mov [rdi + R_R9],  r9
    mov [rdi + R_R10], r10
    mov [rdi + R_R11], r11
    mov [rdi + R_R12], r12
    mov [rdi + R_R13], r13
    mov [rdi + R_R14], r14
    mov [rdi + R_R15], r15
    pop rax
    mov [rdi + R_RDI], rax
    RESTORE_HOST
    xor eax, eax
    ret

; uint64 vmx_exit_entry_address(void): HOST_RIP for the VMCS setup.
FUNC vmx_exit_entry_address
    lea rax, [rel vmx_exit_entry]
    ret
