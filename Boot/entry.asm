; Multiboot2 entry: checks the loader, builds an identity map of the first
; 4 GiB, enters long mode with SSE usable, installs GDT/TSS/IDT and calls
; the Swift entry `kmain(magic, info)`.

MB2_MAGIC        equ 0xE85250D6
MB2_LOADER_MAGIC equ 0x36D76289
KERNEL_CS        equ 0x08
KERNEL_DS        equ 0x10
KERNEL_TSS       equ 0x18
COM1             equ 0x3F8

global _start, host_nmi_pending, boot_entry_tsc, boot_gdtr, boot_idtr, boot_tss, boot_pml4
extern kmain, trap_handler

; --- Multiboot2 header (Multiboot2 spec 3.1 "OS image format") ---------------
section .multiboot2 progbits alloc noexec nowrite align=8
mb2_header:
    dd MB2_MAGIC
    dd 0                                ; i386 protected mode
    dd mb2_header_end - mb2_header
    dd -(MB2_MAGIC + 0 + (mb2_header_end - mb2_header))
    ; module alignment tag: modules start on page boundaries
    dw 6, 0
    dd 8
    ; No framebuffer tag (3.1.10): GRUB on EFI has no text mode and hands over
    ; the GOP framebuffer without one; on BIOS even an optional 0x0x0 request
    ; made GRUB 2.06 in Bochs fail ("out of range pointer: 0xfff0000").
    ; end tag
    dw 0, 0
    dd 8
mb2_header_end:

section .text
bits 32
_start:
    mov esi, eax                        ; the loader's magic; RDTSC clobbers EAX
    rdtsc                               ; the boot-cost benchmark starts here
    mov [boot_entry_tsc], eax
    mov [boot_entry_tsc + 4], edx
    mov eax, esi
    cli
    cld
    mov esp, boot_stack_top
    cmp eax, MB2_LOADER_MAGIC
    jne .not_multiboot2
    mov [saved_info], ebx               ; the info pointer for kmain

    ; long mode available? (CPUID.80000001H:EDX.LM[bit 29])
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb .no_long_mode
    mov eax, 0x80000001
    cpuid
    bt edx, 29
    jnc .no_long_mode

    ; identity map 0..4 GiB with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..3] -> PD0..3;
    ; PML4[1] -> the same PDPT: 512 GiB + x reaches physical x, so physical 0
    ; has an address Swift can point at (the passthrough guest's memory view)
    mov eax, boot_pdpt
    or eax, 0x3
    mov [boot_pml4], eax
    mov [boot_pml4 + 8], eax
    mov ecx, 0
.pdpt_loop:
    mov eax, ecx
    shl eax, 12
    add eax, boot_pd
    or eax, 0x3
    mov [boot_pdpt + ecx*8], eax
    inc ecx
    cmp ecx, 4
    jne .pdpt_loop
    mov ecx, 0                          ; 2048 PD entries, each a 2 MiB page
.pd_loop:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                        ; present, writable, page size
    mov [boot_pd + ecx*8], eax
    mov eax, ecx
    shr eax, 11                         ; bits 32+ of the page address
    mov [boot_pd + ecx*8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jne .pd_loop

    ; TSS descriptor base (the linker knows the address, nasm cannot split it)
    mov eax, boot_tss
    mov [gdt_tss + 2], ax
    shr eax, 16
    mov [gdt_tss + 4], al
    mov [gdt_tss + 7], ah

    ; CR4: PAE, OSFXSR, OSXMMEXCPT (Swift code uses SSE)
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax
    mov eax, boot_pml4
    mov cr3, eax
    ; EFER.LME
    mov ecx, 0xC0000080
    rdmsr
    or eax, 1 << 8
    wrmsr
    ; CR0: PG, PE, NE, MP set; EM, CD, NW clear (GRUB can leave caching off)
    mov eax, cr0
    and eax, ~((1 << 2) | (1 << 29) | (1 << 30))
    or eax, (1 << 31) | (1 << 0) | (1 << 5) | (1 << 1)
    mov cr0, eax

    lgdt [boot_gdtr]
    jmp KERNEL_CS:long_mode_entry

.not_multiboot2:
    mov esi, msg_not_mb2
    jmp early_fail
.no_long_mode:
    mov esi, msg_no_lm
    jmp early_fail

; Writes the NUL-terminated string at ESI to COM1 and the VGA screen, then halts.
early_fail:
    mov edi, 0xB8000
.next:
    lodsb
    test al, al
    jz .halt
    mov ah, 0x4F                        ; white on red
    mov [edi], ax
    add edi, 2
    mov dx, COM1 + 5
    mov bl, al
.wait_tx:
    in al, dx
    test al, 0x20
    jz .wait_tx
    mov al, bl
    mov dx, COM1
    out dx, al
    jmp .next
.halt:
    cli
    hlt
    jmp .halt

bits 64
long_mode_entry:
    mov ax, KERNEL_DS
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor ax, ax
    mov fs, ax
    mov gs, ax
    ; GS base: the boot CPU's own data (the NMI flag); each AP points it at its own.
    lea rax, [rel host_nmi_pending]
    mov rdx, rax
    shr rdx, 32
    mov ecx, 0xC0000101                 ; IA32_GS_BASE
    wrmsr
    mov rsp, boot_stack_top
    mov ax, KERNEL_TSS
    ltr ax

    ; 256 interrupt gates from the stub table; #DF, NMI and #MC run on IST1
    lea rsi, [rel isr_table]
    lea rdi, [rel boot_idt]
    xor ecx, ecx
.idt_loop:
    mov rax, [rsi + rcx*8]
    mov [rdi], ax                       ; offset 15:0
    mov word [rdi + 2], KERNEL_CS
    xor edx, edx
    cmp ecx, 2
    je .ist
    cmp ecx, 8
    je .ist
    cmp ecx, 18
    jne .gate
.ist:
    mov edx, 1
.gate:
    mov [rdi + 4], dl                   ; IST index
    mov byte [rdi + 5], 0x8E            ; present, DPL 0, 64-bit interrupt gate
    shr rax, 16
    mov [rdi + 6], ax                   ; offset 31:16
    shr rax, 16
    mov [rdi + 8], eax                  ; offset 63:32
    mov dword [rdi + 12], 0
    add rdi, 16
    inc ecx
    cmp ecx, 256
    jne .idt_loop
    lidt [rel boot_idtr]

    mov rax, ist1_stack_top
    mov [rel boot_tss + 36], rax        ; TSS.IST1
    mov rax, boot_stack_top
    mov [rel boot_tss + 4], rax         ; TSS.RSP0

    ; kmain(magic: UInt32, info: UInt64)
    mov edi, MB2_LOADER_MAGIC
    mov esi, [rel saved_info]
    call kmain
.hang:
    cli
    hlt
    jmp .hang

; --- Exception and interrupt stubs --------------------------------------------
; Each stub leaves the same frame: [error code][vector] on top of the CPU's
; frame, then the common path pushes the GPRs and calls trap_handler(frame).
%macro ISR 1
isr_%1:
%if %1 = 2
    ; An NMI in root mode is noted for the guest and returned from at once
    ; (IRETQ unblocks NMIs); the vCPU's run loop hands it to the guest.
    mov byte [gs:0], 1                  ; this CPU's flag (GS base: its own data)
    iretq
%elif (%1 = 8) || (%1 = 10) || (%1 = 11) || (%1 = 12) || (%1 = 13) || (%1 = 14) || (%1 = 17) || (%1 = 21) || (%1 = 29) || (%1 = 30)
%else
    push 0
%endif
    push %1
    jmp isr_common
%endmacro

%assign i 0
%rep 256
ISR i
%assign i i + 1
%endrep

isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call trap_handler                   ; returns only for a handled interrupt
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

section .rodata
align 8
isr_table:
%assign i 0
%rep 256
    dq isr_ %+ i
%assign i i + 1
%endrep

msg_not_mb2: db "FATAL: not loaded by a Multiboot2 loader (bad magic in EAX); halting.", 13, 10, 0
msg_no_lm:   db "FATAL: this CPU has no long mode (CPUID 80000001h:EDX.LM); halting.", 13, 10, 0

section .data
align 16
boot_gdt:
    dq 0
    dq 0x00AF9A000000FFFF               ; 0x08: 64-bit code, DPL 0
    dq 0x00CF92000000FFFF               ; 0x10: data, DPL 0
gdt_tss:                                ; 0x18: 64-bit available TSS, limit 103
    dw 103, 0
    db 0, 0x89, 0, 0
    dd 0, 0
boot_gdt_end:

align 16
boot_gdtr:
    dw boot_gdt_end - boot_gdt - 1
    dq boot_gdt
align 16
boot_idtr:
    dw 256 * 16 - 1
    dq boot_idt
saved_info: dd 0
host_nmi_pending: db 0
align 8
boot_entry_tsc: dq 0

section .bss
alignb 4096
boot_pml4:  resb 4096
boot_pdpt:  resb 4096
boot_pd:    resb 4 * 4096
boot_idt:   resb 256 * 16
alignb 16
boot_tss:   resb 104
alignb 16
ist1_stack: resb 16384
ist1_stack_top:
boot_stack: resb 262144                 ; the passthrough setup's E820 and ACPI values need ~120 KiB
boot_stack_top:
