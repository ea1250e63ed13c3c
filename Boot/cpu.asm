; Thin wrappers for the instructions Swift cannot emit (System V AMD64 ABI:
; arguments in rdi, rsi, rdx, rcx; result in rax).
bits 64
section .text

%macro FUNC 1
global %1
%1:
%endmacro

FUNC port_out8
    mov edx, edi
    mov eax, esi
    out dx, al
    ret
FUNC port_in8
    mov edx, edi
    xor eax, eax
    in al, dx
    ret

; uint64 cpu_rdmsr(uint32 msr)
FUNC cpu_rdmsr
    mov ecx, edi
    rdmsr
    shl rdx, 32
    or rax, rdx
    ret
; void cpu_wrmsr(uint32 msr, uint64 value)
FUNC cpu_wrmsr
    mov ecx, edi
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    wrmsr
    ret

; void cpu_cpuid(uint32 leaf, uint32 subleaf, uint32 out[4])
FUNC cpu_cpuid
    push rbx
    mov r8, rdx
    mov eax, edi
    mov ecx, esi
    cpuid
    mov [r8], eax
    mov [r8 + 4], ebx
    mov [r8 + 8], ecx
    mov [r8 + 12], edx
    pop rbx
    ret

FUNC cpu_read_cr0
    mov rax, cr0
    ret
FUNC cpu_read_cr2
    mov rax, cr2
    ret
; bool cpu_take_host_nmi(void): this CPU's NMI flag (byte 0 of its GS data),
; cleared in the same instruction.
FUNC cpu_take_host_nmi
    xor eax, eax
    xchg al, [gs:0]
    ret
FUNC cpu_write_cr2
    mov cr2, rdi
    ret
FUNC cpu_read_cr3
    mov rax, cr3
    ret
FUNC cpu_read_cr4
    mov rax, cr4
    ret
FUNC cpu_write_cr0
    mov cr0, rdi
    ret
FUNC cpu_write_cr4
    mov cr4, rdi
    ret

; uint64 cpu_xgetbv(uint32 index)
FUNC cpu_xgetbv
    mov ecx, edi
    xgetbv
    shl rdx, 32
    or rax, rdx
    ret
; void cpu_xsetbv(uint32 index, uint64 value)
FUNC cpu_xsetbv
    mov ecx, edi
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    xsetbv
    ret

FUNC cpu_rdtsc
    rdtsc
    shl rdx, 32
    or rax, rdx
    ret

; void cpu_sgdt(void *out10) / cpu_sidt
FUNC cpu_sgdt
    sgdt [rdi]
    ret
FUNC cpu_sidt
    sidt [rdi]
    ret
; uint16 selectors
FUNC cpu_read_tr
    xor eax, eax
    str ax
    ret
FUNC cpu_read_cs
    mov eax, cs
    ret
FUNC cpu_read_ss
    mov eax, ss
    ret
FUNC cpu_read_ds
    mov eax, ds
    ret
FUNC cpu_read_es
    mov eax, es
    ret
FUNC cpu_read_fs
    mov eax, fs
    ret
FUNC cpu_read_gs
    mov eax, gs
    ret

FUNC cpu_halt_forever
    cli
.l: hlt
    jmp .l
; Bochs magic breakpoint (xchg bx, bx): a no-op elsewhere.
FUNC cpu_magic_break
    xchg bx, bx
    ret
FUNC cpu_ud2
    ud2
    ret

; The kernel image's extent, from the linker script.
extern _kernel_start, _kernel_end
FUNC kernel_image_start
    mov rax, _kernel_start
    ret
FUNC kernel_image_end
    mov rax, _kernel_end
    ret

; uint64 kernel_entry_tsc(void): the TSC at the first instruction of _start.
extern boot_entry_tsc
FUNC kernel_entry_tsc
    mov rax, [rel boot_entry_tsc]
    ret
