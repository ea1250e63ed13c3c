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
; uint64 vmx_read_value(uint64 field): the value, or all ones when VMREAD
; failed; a caller that gets all ones asks vmx_read, which tells the two apart.
FUNC vmx_read_value
    vmread rax, rdi
    jbe .fail
    ret
.fail:
    mov rax, -1
    ret
; int vmx_write(uint64 field, uint64 value)
FUNC vmx_write
    vmwrite rdi, rsi
    jbe .fail                           ; CF or ZF: VMX_STATUS tells which
    xor eax, eax
    ret
.fail:
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

; ExitFastPathBlock (Sources/X86VCPU/ExitFastPath.swift) and its CPUID cache
; entries; a host test checks these against the Swift layout.
F_ENABLED      equ 0
F_VMCALL_COUNT equ 8
F_CPUID_COUNT  equ 16
F_CPUID_CACHE  equ 24
E_VALID        equ 0
E_LEAF         equ 4
E_SUBLEAF_MASK equ 8
E_SUBLEAF      equ 12
E_EAX          equ 16
E_EBX          equ 20
E_ECX          equ 24
E_EDX          equ 28
E_SIZE         equ 32
F_QUICK_REASON equ 2072
F_QUICK_STATE  equ 2076
F_QUICK_COUNTS equ 2080                 ; I/O, RDMSR, WRMSR: 8 bytes each
F_QUICK_TIMER_COUNT equ 2120
F_TIMER_DEADLINE equ 2128
F_TIMER_SHIFT  equ 2136
FAST_NULL_HYPERCALL equ 1
FAST_CPUID          equ 2
FAST_QUICK          equ 4
; vmx_quick_exit's answers (QuickExit in Sources/X86VCPU/QuickExits.swift).
QUICK_COMPLETE equ 1                    ; done but RIP: advance and resume
QUICK_RESUMED  equ 4                    ; done, RIP as it is: resume

; VMCS fields and exit reasons the fast path uses (SDM Appendix B, C).
VMCS_EXIT_REASON      equ 0x4402
VMCS_EXIT_INSTR_LEN   equ 0x440C
VMCS_GUEST_SS_AR      equ 0x4818
VMCS_GUEST_INTR_STATE equ 0x4824
VMCS_GUEST_RIP        equ 0x681E
VMCS_GUEST_RFLAGS     equ 0x6820
VMCS_PREEMPTION_TIMER equ 0x482E
EXIT_CPUID            equ 10
EXIT_VMCALL           equ 18
EXIT_IO               equ 30
EXIT_WRMSR            equ 32
EXIT_PREEMPTION_TIMER equ 52

; Undoes vmx_run's prologue: drops the regs and fast-path pointers, restores
; the host's RFLAGS and callee-saved registers.
%macro RESTORE_HOST 0
    add rsp, 16                         ; regs, fast path
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
%endmacro

; Stores the guest GPRs (in the registers) into *regs, regs = [rsp] on entry,
; and leaves rdi = regs. Only MOV and POP: RFLAGS survive.
%macro SAVE_GUEST 0
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
%endmacro

; Loads the guest GPRs from *regs, regs = rdi, but RAX, RCX, RDX, RSI and
; RDI (vmx_run loads those last). Only MOV: RFLAGS survive.
%macro LOAD_GUEST_KEPT 0
    mov rbx, [rdi + R_RBX]
    mov rbp, [rdi + R_RBP]
    mov r8,  [rdi + R_R8]
    mov r9,  [rdi + R_R9]
    mov r10, [rdi + R_R10]
    mov r11, [rdi + R_R11]
    mov r12, [rdi + R_R12]
    mov r13, [rdi + R_R13]
    mov r14, [rdi + R_R14]
    mov r15, [rdi + R_R15]
%endmacro

; The VMX-preemption timer counts only while the guest runs (SDM 26.5.1
; "VMX-Preemption Timer"): just before every entry, its value is the time
; left to the deadline in the block (host TSC, rounded up to the timer's
; unit; 0: none), so neither the host's time at exits nor the time since
; the deadline was set delays the guest's timer. Past: 0, an exit before
; the guest's first instruction; beyond 32 bits: the longest wait.
; %1: the block, not RAX or RDX; uses RAX, RCX and RDX (so %1 may be RCX),
; but keeps RCX with a second argument, keep. A failed VMWRITE leaves the
; old value.
%macro ARM_PREEMPTION 1-2
    cmp qword [%1 + F_TIMER_DEADLINE], 0
    je %%done
%ifidn %2, keep
    push rcx
%endif
%ifnidn %1, rcx
    mov rcx, %1
%endif
    call arm_preemption
%ifidn %2, keep
    pop rcx
%endif
%%done:
%endmacro

; ARM_PREEMPTION's work, with a deadline set: rcx = the block.
arm_preemption:
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rdx, [rcx + F_TIMER_DEADLINE]
    sub rdx, rax
    mov eax, 0
    cmovb rdx, rax
    mov ecx, [rcx + F_TIMER_SHIFT]
    shr rdx, cl
    mov eax, 0xFFFFFFFF
    cmp rdx, rax
    cmova rdx, rax
    mov eax, VMCS_PREEMPTION_TIMER
    vmwrite rax, rdx
    ret

; int vmx_run(GeneralRegisters *regs, uint64 launched, ExitFastPathBlock *fast)
; Enters the guest with its GPRs from *regs (VMLAUNCH when launched == 0, else
; VMRESUME). Returns 0 after a VM exit with the guest GPRs stored back into
; *regs, or the failure status when the VM instruction itself failed.
; The host's callee-saved registers and RFLAGS are saved on the stack; a VM
; exit loads RSP = HOST_RSP (this frame) and clears RFLAGS except bit 1 (SDM
; 28.5.3 "Loading Host RIP, RSP, RFLAGS, and SSP"), so both come back from here.
FUNC vmx_run
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    pushfq
    push rdx                            ; [rsp + 8] = fast path
    push rdi                            ; [rsp] = regs, found again at the exit
    mov rax, VMCS_HOST_RSP
    vmwrite rax, rsp
    jbe .setup_failed
    ; The preemption timer as late as it can be: after every load but
    ; those of the registers it and the entry still need.
    LOAD_GUEST_KEPT
    mov rcx, rdx
    ARM_PREEMPTION rcx
    cmp rsi, 0                          ; flags survive the movs below
    mov rax, [rdi + R_RAX]
    mov rcx, [rdi + R_RCX]
    mov rdx, [rdi + R_RDX]
    mov rsi, [rdi + R_RSI]
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

; RIP past the exiting instruction, unless the guest has STI or MOV SS
; blocking (which completing the instruction would clear: left to Swift),
; SMI blocking (Bochs saves it after a SIPI start; Swift clears it) or
; RFLAGS.TF (the completed instruction owes a single-step #DB, SDM 18.3.1.4
; "Single-Step Exception Condition": Swift sets the pending BS).
; Uses rax and rdx; any VMREAD/VMWRITE failure goes to %1.
%macro FAST_ADVANCE 1
    mov eax, VMCS_GUEST_INTR_STATE
    vmread rax, rax
    jbe %1
    test al, 7
    jnz %1
    mov eax, VMCS_GUEST_RFLAGS
    vmread rax, rax
    jbe %1
    test eax, 0x100
    jnz %1
    mov eax, VMCS_EXIT_INSTR_LEN
    vmread rax, rax
    jbe %1
    mov edx, VMCS_GUEST_RIP
    vmread rdx, rdx
    jbe %1
    add rax, rdx
    mov edx, VMCS_GUEST_RIP
    vmwrite rdx, rax
    jbe %1
%endmacro

; The quick handlers (Swift, C ABI) get the registers a call may change in
; *regs (the handlers use RAX, RCX, RDX; they never see RBX, RBP or
; R12-R15, which stay live: SysV keeps them). The guest's RBX waits on the
; stack, which stays 16-aligned for the call. Leaves rbx = regs, rdi = the
; fast path block (the handler's argument).
%macro QUICK_SAVE 0
    mov [rbx + F_QUICK_REASON], eax
    mov rbx, [rsp + 32]                 ; regs: kept by the call
    mov [rbx + R_RSI], rsi
    mov [rbx + R_RDI], rdi
    mov [rbx + R_R8],  r8
    mov [rbx + R_R9],  r9
    mov [rbx + R_R10], r10
    mov [rbx + R_R11], r11
    mov rax, [rsp + 24]
    mov [rbx + R_RAX], rax
    mov rax, [rsp + 16]
    mov [rbx + R_RCX], rax
    mov rax, [rsp + 8]
    mov [rbx + R_RDX], rax
    mov rdi, [rsp + 40]
%endmacro

; HOST_RIP: the VMCS setup writes this address once.
; The fast path first: with four guest registers on the stack it answers the
; null hypercall and cached CPUID leaves and resumes; I/O, MSR and
; preemption-timer exits go to Swift's quick handler without leaving
; vmx_run; anything else restores them and takes the full path back to Swift.
global vmx_exit_entry
extern vmx_quick_exit, vmx_quick_timer_exit
vmx_exit_entry:
    push rax                            ; [rsp + 24]
    push rcx                            ; [rsp + 16]
    push rdx                            ; [rsp + 8]
    push rbx                            ; [rsp]; regs at +32, fast path at +40
    mov rbx, [rsp + 40]
    mov rcx, [rbx + F_ENABLED]
    test ecx, ecx
    jz .full
    mov eax, VMCS_EXIT_REASON
    vmread rax, rax
    jbe .full
    cmp eax, EXIT_CPUID
    je .cpuid
    cmp eax, EXIT_VMCALL
    je .vmcall
    test ecx, FAST_QUICK
    jz .full
    lea edx, [rax - EXIT_IO]            ; I/O, RDMSR, WRMSR: 0...2
    cmp edx, EXIT_WRMSR - EXIT_IO
    jbe .quick
    cmp eax, EXIT_PREEMPTION_TIMER
    jne .full
    QUICK_SAVE
    call vmx_quick_timer_exit
    jmp .quick_back
.quick:
    QUICK_SAVE
    call vmx_quick_exit
.quick_back:
    mov rsi, [rsp + 40]                 ; the fast path block
    cmp eax, QUICK_COMPLETE
    jne .quick_not_complete
    FAST_ADVANCE .quick_unadvanced
    mov eax, [rsi + F_QUICK_REASON]
    inc qword [rsi + rax * 8 + F_QUICK_COUNTS - EXIT_IO * 8]
.quick_resume:
    mov rdi, [rbx + R_RDI]
    mov r8,  [rbx + R_R8]
    mov r9,  [rbx + R_R9]
    mov r10, [rbx + R_R10]
    mov r11, [rbx + R_R11]
    ARM_PREEMPTION rsi
    mov rax, [rbx + R_RAX]
    mov rcx, [rbx + R_RCX]
    mov rdx, [rbx + R_RDX]
    mov rsi, [rbx + R_RSI]
    pop rbx
    add rsp, 24                         ; the guest's old RDX, RCX, RAX
    vmresume
    jmp .fast_failed
.quick_not_complete:
    cmp eax, QUICK_RESUMED
    jne .quick_return
    inc qword [rsi + F_QUICK_TIMER_COUNT]
    jmp .quick_resume
.quick_unadvanced:
    mov eax, QUICK_COMPLETE             ; Swift advances
.quick_return:
    ; Back to Swift: *regs gets the registers the handler did not see.
    mov [rsi + F_QUICK_STATE], eax
    pop rax
    mov [rbx + R_RBX], rax
    mov [rbx + R_RBP], rbp
    mov [rbx + R_R12], r12
    mov [rbx + R_R13], r13
    mov [rbx + R_R14], r14
    mov [rbx + R_R15], r15
    add rsp, 24
    RESTORE_HOST
    xor eax, eax
    ret

.vmcall:
    ; Hypercall 0 (null) from CPL 0: RAX is already its result, 0.
    test ecx, FAST_NULL_HYPERCALL
    jz .full
    cmp qword [rsp + 24], 0
    jne .full
    mov eax, VMCS_GUEST_SS_AR
    vmread rax, rax
    jbe .full
    test al, 0x60                       ; SS.DPL is the CPL
    jnz .full
    FAST_ADVANCE .full
    inc qword [rbx + F_VMCALL_COUNT]
    ARM_PREEMPTION rbx
    pop rbx
    pop rdx
    pop rcx
    pop rax
    vmresume
    jmp .fast_failed

.cpuid:
    test ecx, FAST_CPUID
    jz .full
    mov eax, [rsp + 24]                 ; leaf
    mov ecx, eax                        ; slot = leaf[3:0] | leaf[31:30] << 4
    and ecx, 0xF
    mov edx, eax
    shr edx, 26
    and edx, 0x30
    or ecx, edx
    shl ecx, 5                          ; * E_SIZE
    lea rcx, [rbx + rcx + F_CPUID_CACHE]
    cmp dword [rcx + E_VALID], 0
    je .full
    cmp eax, [rcx + E_LEAF]
    jne .full
    mov edx, [rsp + 16]                 ; subleaf
    and edx, [rcx + E_SUBLEAF_MASK]
    cmp edx, [rcx + E_SUBLEAF]
    jne .full
    FAST_ADVANCE .full
    inc qword [rbx + F_CPUID_COUNT]
    ARM_PREEMPTION rbx, keep
    ; CPUID writes the 32-bit registers, which zero-extends them.
    mov eax, [rcx + E_EAX]
    mov ebx, [rcx + E_EBX]
    mov edx, [rcx + E_EDX]
    mov ecx, [rcx + E_ECX]
    add rsp, 32                         ; the guest's old values
    vmresume

.fast_failed:
    ; VMRESUME failed: the guest's GPRs are live in the registers and *regs
    ; is stale, so store them all before returning the status.
    SAVE_GUEST
    VMX_STATUS
    RESTORE_HOST
    ret

.full:
    pop rbx
    pop rdx
    pop rcx
    pop rax
    SAVE_GUEST
    RESTORE_HOST
    xor eax, eax
    ret

; uint64 vmx_exit_entry_address(void): HOST_RIP for the VMCS setup.
FUNC vmx_exit_entry_address
    lea rax, [rel vmx_exit_entry]
    ret
