; Application processor start-up. The boot CPU copies the trampoline
; (ap_trampoline_start..end) to a page below 1 MiB, fills its data area and
; sends INIT-SIPI-SIPI; the AP starts in real mode at that page (SDM Vol. 3A
; 9.4.4 "MP Initialization Example"), switches to protected mode, then long
; mode on the boot CPU's page tables (9.8.5 "Initializing IA-32e Mode"), and
; jumps to ap_kernel_entry, which loads the AP's own GDT and TSS and the
; shared IDT and calls apMain(tables, entryTSC). apMain does not return; if
; it did, the AP would park here.
;
; Offsets shared with Swift (Sources/HostBoot/PerCPUTables.swift; a unit
; test reads these equ lines):
AP_TABLES_GDTR   equ 0x30
AP_TABLES_PERCPU equ 0xF8
AP_TSS_SELECTOR  equ 0x18
AP_DATA          equ 0xF00
AP_DATA_STARTED  equ 0x00
AP_DATA_TSC      equ 0x08
AP_DATA_CR3      equ 0x10
AP_DATA_STACK    equ 0x18
AP_DATA_ENTRY    equ 0x20
AP_DATA_ARG      equ 0x28

KERNEL_CS        equ 0x08
KERNEL_DS        equ 0x10

%define T(label) ((label) - ap_trampoline_start)

global ap_trampoline_address, ap_trampoline_size, ap_kernel_entry_address
global mem_load32, mem_store32, cpu_pause, console_lock_try, console_unlock
global atomic_cas32, frames_lock, frames_unlock
extern apMain, boot_idtr

section .text
bits 16
; CS = the page >> 4, IP = 0 (9.4.4.1 "Typical BSP Initialization Sequence").
ap_trampoline_start:
    cli
    rdtsc                               ; the bring-up cost is counted from here
    mov bx, cs
    mov ds, bx
    mov [AP_DATA + AP_DATA_TSC], eax
    mov [AP_DATA + AP_DATA_TSC + 4], edx
    mov dword [AP_DATA + AP_DATA_STARTED], 1
    ; Where am I: the linear addresses the far jumps and LGDT need.
    movzx ebx, bx
    shl ebx, 4
    lea eax, [ebx + T(ap_gdt)]
    mov [T(ap_gdtr) + 2], eax
    lea eax, [ebx + T(ap_protected)]
    mov [T(ap_far32)], eax
    lea eax, [ebx + T(ap_long)]
    mov [T(ap_far64)], eax
    o32 lgdt [T(ap_gdtr)]
    mov eax, cr0
    or eax, 1                           ; PE
    mov cr0, eax
    jmp dword far [T(ap_far32)]

bits 32
ap_protected:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    ; As Boot/entry.asm: CR4 PAE, OSFXSR, OSXMMEXCPT; EFER.LME; CR0 PG, PE,
    ; NE, MP with EM, CD, NW clear (caching on: an AP can start with CD set).
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax
    mov eax, [ebx + AP_DATA + AP_DATA_CR3]
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 1 << 8
    wrmsr
    mov eax, cr0
    and eax, ~((1 << 2) | (1 << 29) | (1 << 30))
    or eax, (1 << 31) | (1 << 0) | (1 << 5) | (1 << 1)
    mov cr0, eax
    jmp far [ebx + T(ap_far64)]

bits 64
ap_long:
    mov ebx, ebx                        ; upper halves are undefined after the switch
    mov ax, KERNEL_DS
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, [rbx + AP_DATA + AP_DATA_STACK]
    mov rdi, [rbx + AP_DATA + AP_DATA_ARG]
    mov rsi, [rbx + AP_DATA + AP_DATA_TSC]
    mov rax, [rbx + AP_DATA + AP_DATA_ENTRY]
    jmp rax

align 8
ap_gdt:
    dq 0
    dq 0x00CF9A000000FFFF               ; 0x08: 32-bit code
    dq 0x00CF92000000FFFF               ; 0x10: data
    dq 0x00AF9A000000FFFF               ; 0x18: 64-bit code
ap_gdtr:
    dw 4 * 8 - 1
    dd 0
ap_far32:
    dd 0
    dw 0x08
ap_far64:
    dd 0
    dw 0x18
ap_trampoline_end:

; In the kernel image: rdi = the AP's tables frame, rsi = its entry TSC.
ap_kernel_entry:
    lgdt [rdi + AP_TABLES_GDTR]
    push KERNEL_CS
    lea rax, [rel .reload_cs]
    push rax
    retfq
.reload_cs:
    mov ax, KERNEL_DS
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov ax, AP_TSS_SELECTOR
    ltr ax
    ; GS base: this CPU's data (the NMI stub's flag), before any NMI can come.
    lea rax, [rdi + AP_TABLES_PERCPU]
    mov rdx, rax
    shr rdx, 32
    mov ecx, 0xC0000101                 ; IA32_GS_BASE
    wrmsr
    lidt [rel boot_idtr]
    cld
    call apMain
.park:
    cli
    hlt
    jmp .park

ap_trampoline_address:
    lea rax, [rel ap_trampoline_start]
    ret
ap_trampoline_size:
    mov eax, ap_trampoline_end - ap_trampoline_start
    ret
ap_kernel_entry_address:
    lea rax, [rel ap_kernel_entry]
    ret

; Memory shared between CPUs, read and written exactly once per call (the
; call keeps the compiler from caching or reordering around it; x86 keeps
; stores in order).
; uint32 mem_load32(void *p) / void mem_store32(void *p, uint32 v)
mem_load32:
    mov eax, [rdi]
    ret
mem_store32:
    mov [rdi], esi
    ret
cpu_pause:
    pause
    ret

; bool console_lock_try(void): takes the console lock if it is free.
console_lock_try:
    mov eax, 1
    xchg eax, [rel console_lock]
    xor eax, 1
    ret
console_unlock:
    mov dword [rel console_lock], 0
    ret

; uint32 atomic_cas32(uint32 *p, uint32 expected, uint32 new): the old value
; (== expected when the swap happened).
atomic_cas32:
    mov eax, esi
    lock cmpxchg [rdi], edx
    ret

; The frame allocator's lock: CPUs allocate while others run their guests.
frames_lock:
    mov eax, 1
    xchg eax, [rel frames_lock_word]
    test eax, eax
    jz .taken
    pause
    jmp frames_lock
.taken:
    ret
frames_unlock:
    mov dword [rel frames_lock_word], 0
    ret

section .data
align 4
console_lock: dd 0
frames_lock_word: dd 0
