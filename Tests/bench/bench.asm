; The exit benchmark: a multiboot v1 kernel, so one binary runs bare from
; GRUB (`multiboot`) and as the hypervisor's guest. It times each operation
; ITER times with RDTSC around it and prints the median in TSC ticks; under
; Bochs the TSC counts instructions, so the figures are deterministic.
;
; Output lines (COM1):  bench: mode hypervisor|native
;                       bench: first-tsc <decimal>
;                       bench: <op> <median>
; then it powers off: port 0xF4 (the hypervisor, QEMU), else Bochs's magic
; breakpoint (xchg bx, bx) ends a bare Bochs run.

bits 32
ITER    equ 101
COM1    equ 0x3F8
SCRATCH equ 0x3FF                       ; COM1 scratch register: emulated, or real bare
MSR_BENCH equ 0xC0000080            ; EFER: on every CPU, intercepted under the hypervisor

; BENCH name, op: times op ITER times, prints "bench: name median".
%macro BENCH 2
    mov esi, %1
    mov edi, %2
    call bench_one
%endmacro

section .multiboot progbits alloc align=4
    dd 0x1BADB002
    dd 0x00000003                       ; page-align modules, memory info
    dd -(0x1BADB002 + 0x00000003)

section .text
global _start
_start:
    rdtsc                               ; first: the boot-cost figure
    mov [first_tsc], eax
    mov [first_tsc + 4], edx
    mov esp, stack_top
    cld

    mov eax, 1
    cpuid
    bt ecx, 31                          ; CPUID.1:ECX.hypervisor
    setc [under_hv]

    mov esi, s_mode
    call puts
    mov esi, s_native
    cmp byte [under_hv], 0
    je .m
    mov esi, s_hv
.m: call puts
    mov esi, s_first
    call puts
    mov eax, [first_tsc]
    mov edx, [first_tsc + 4]
    call putdec64
    call newline

    BENCH s_empty, op_empty
    BENCH s_cpuid, op_cpuid
    BENCH s_in, op_in
    BENCH s_out, op_out
    BENCH s_rdmsr, op_rdmsr
    BENCH s_wrmsr, op_wrmsr
    BENCH s_cr0, op_cr0
    call apic_setup
    BENCH s_ipi, op_ipi
    BENCH s_oneshot, op_oneshot
    mov dword [APIC + 0x320], LVT_DEADLINE | V_TIMER
    BENCH s_timer, op_timer
    BENCH s_deadline, op_deadline
    xor eax, eax                        ; disarmed again
    xor edx, edx
    mov ecx, 0x6E0
    wrmsr
    cli
    cmp byte [under_hv], 0
    je .done
    BENCH s_vmcall, op_vmcall
.done:
    mov esi, s_end
    call puts
    mov dx, COM1 + 5                    ; wait until the UART has sent it all
.drain:
    in al, dx
    test al, 0x40
    jz .drain
    mov dx, 0xF4
    xor eax, eax
    out dx, al
    xchg bx, bx
.halt:
    cli
    hlt
    jmp .halt

; --- the operations: each preserves nothing the harness needs -------------
op_empty:
    ret
op_cpuid:
    xor eax, eax
    xor ecx, ecx
    cpuid
    ret
op_in:
    mov dx, SCRATCH
    in al, dx
    ret
op_out:
    mov dx, SCRATCH
    mov al, 0x5A
    out dx, al
    ret
op_rdmsr:
    mov ecx, MSR_BENCH
    rdmsr
    ret
op_wrmsr:
    mov ecx, MSR_BENCH
    mov eax, [msr_value]
    mov edx, [msr_value + 4]
    wrmsr
    ret
op_cr0:                                 ; two MOVs to CR0, NE off then on:
    mov eax, cr0                        ; NE is host-owned, so both exit
    xor eax, 0x20
    mov cr0, eax
    xor eax, 0x20
    mov cr0, eax
    ret
op_vmcall:
    xor eax, eax                        ; hypercall 0: null
    vmcall
    ret

; The local APIC's interrupts (xAPIC page at its reset base; paging is off):
; a self-IPI with its EOI; the one-shot timer armed to fire at once, from
; arming to its handler; the TSC-deadline timer armed DEADLINE ticks ahead,
; which times the path from its expiry (a preemption-timer exit under the
; hypervisor) to the handler: arming (a WRMSR exit) is over before the
; deadline, so only the expiry's cost is added to the DEADLINE ticks.
APIC     equ 0xFEE00000
V_IPI    equ 0x40
V_TIMER  equ 0x41
LVT_DEADLINE equ 2 << 17                ; LVT timer mode 10B
DEADLINE equ 4000
op_ipi:                                 ; ICR: fixed, self shorthand (18:19 = 01)
    mov byte [seen], 0
    mov dword [APIC + 0x300], 0x00040000 | V_IPI
.w: cmp byte [seen], 0
    je .w
    ret
op_oneshot:                             ; initial count 1, divide by 1
    mov byte [seen], 0
    mov dword [APIC + 0x380], 1
.w: cmp byte [seen], 0
    je .w
    ret
op_timer:                               ; IA32_TSC_DEADLINE = now + DEADLINE
    mov byte [seen], 0
    rdtsc
    add eax, DEADLINE
    adc edx, 0
    mov ecx, 0x6E0
    wrmsr
.w: cmp byte [seen], 0
    je .w
    ret
op_deadline:                            ; IA32_TSC_DEADLINE = now + 2^32: armed ahead, as
    rdtsc                               ; Linux does every tick, and never reached
    inc edx
    mov ecx, 0x6E0
    wrmsr
    ret

isr_apic:                               ; both vectors: note it, EOI
    mov byte [seen], 1
    mov dword [APIC + 0xB0], 0
    iret

; Masks the 8259s (GRUB may leave the PIT's IRQ 0 open at vector 8), points
; the two vectors at isr_apic, enables the APIC (SVR) and its timer, STI.
apic_setup:
    mov al, 0xFF
    out 0x21, al
    out 0xA1, al
    mov eax, isr_apic
    mov ecx, cs
    shl ecx, 16
    mov cx, ax                          ; offset 15:0, selector
    and eax, 0xFFFF0000
    or eax, 0x8E00                      ; present, DPL 0, 32-bit interrupt gate
    mov [idt + V_IPI * 8], ecx
    mov [idt + V_IPI * 8 + 4], eax
    mov [idt + V_TIMER * 8], ecx
    mov [idt + V_TIMER * 8 + 4], eax
    lidt [idt_descriptor]
    mov eax, [APIC + 0xF0]
    or eax, 0x1FF                       ; software enable, spurious vector 0xFF
    mov [APIC + 0xF0], eax
    mov dword [APIC + 0x3E0], 0xB       ; divide by 1
    mov dword [APIC + 0x320], V_TIMER   ; one-shot, unmasked
    sti
    ret

; --- harness ----------------------------------------------------------------

bench_one:
    push esi
    mov ecx, MSR_BENCH            ; the value WRMSR writes back
    rdmsr
    mov [msr_value], eax
    mov [msr_value + 4], edx
    xor ebx, ebx
.loop:
    push ebx
    push edi
    rdtsc
    mov [t0], eax
    call edi
    rdtsc
    sub eax, [t0]
    pop edi
    pop ebx
    mov [samples + ebx * 4], eax
    inc ebx
    cmp ebx, ITER
    jne .loop
    ; insertion sort of the samples, then the middle one
    mov ecx, 1
.outer:
    cmp ecx, ITER
    jae .sorted
    mov eax, [samples + ecx * 4]
    mov edx, ecx
.inner:
    test edx, edx
    jz .place
    mov ebx, [samples + edx * 4 - 4]
    cmp ebx, eax
    jbe .place
    mov [samples + edx * 4], ebx
    dec edx
    jmp .inner
.place:
    mov [samples + edx * 4], eax
    inc ecx
    jmp .outer
.sorted:
    mov esi, s_prefix
    call puts
    pop esi
    call puts
    mov al, ' '
    call putc
    mov eax, [samples + (ITER / 2) * 4]
    xor edx, edx
    call putdec64
    call newline
    ret

; putc(al): polls the transmitter, then writes.
putc:
    push edx
    push eax
    mov dx, COM1 + 5
.w: in al, dx
    test al, 0x20
    jz .w
    pop eax
    mov dx, COM1
    out dx, al
    pop edx
    ret

puts:                                   ; esi = NUL-terminated string
    lodsb
    test al, al
    jz .r
    call putc
    jmp puts
.r: ret

newline:
    mov al, 10
    jmp putc

; putdec64(edx:eax): unsigned decimal.
putdec64:
    push ebx
    push ecx
    push esi
    mov esi, digits_end
    mov ecx, 10
.d: ; divide edx:eax by 10 in two steps
    mov ebx, eax
    mov eax, edx
    xor edx, edx
    div ecx
    xchg eax, ebx                       ; ebx = high quotient
    div ecx                             ; edx = remainder
    add dl, '0'
    dec esi
    mov [esi], dl
    mov edx, ebx
    mov ebx, eax
    or ebx, edx
    jnz .d
.p: mov al, [esi]
    call putc
    inc esi
    cmp esi, digits_end
    jne .p
    pop esi
    pop ecx
    pop ebx
    ret

section .rodata
s_mode:   db "bench: mode ", 0
s_hv:     db "hypervisor", 10, 0
s_native: db "native", 10, 0
s_first:  db "bench: first-tsc ", 0
s_prefix: db "bench: ", 0
s_empty:  db "empty", 0
s_cpuid:  db "cpuid", 0
s_in:     db "in", 0
s_out:    db "out", 0
s_rdmsr:  db "rdmsr", 0
s_wrmsr:  db "wrmsr", 0
s_cr0:    db "cr0", 0
s_vmcall: db "vmcall", 0
s_ipi:    db "ipi", 0
s_timer:  db "timer", 0
s_oneshot: db "oneshot", 0
s_deadline: db "deadline", 0
idt_descriptor:
    dw (V_TIMER + 1) * 8 - 1
    dd idt
s_end:    db "bench: done", 10, 0

section .bss
alignb 8
first_tsc:   resq 1
msr_value: resq 1
t0:          resd 1
under_hv:    resb 1
seen:        resb 1
alignb 8
idt:         resq V_TIMER + 1
alignb 4
samples:     resd ITER
digits:      resb 24
digits_end:
alignb 16
stack:       resb 4096
stack_top:
