; rdtsc: a static x86-64 Linux program that prints the time-stamp counter as
; "X86VCPU-TSC <decimal>\n" on standard output and exits 0. Busybox cannot
; read the TSC; /init runs this first. In Bochs the TSC counts emulated
; instructions from reset (plus the ticks skipped while halted), so the value
; is the instruction count to the start of /init.
;   nasm -f elf64 -o rdtsc.o rdtsc.asm && ld -static -nostdlib -o rdtsc rdtsc.o
bits 64
default rel

section .text
global _start
_start:
        rdtsc
        shl     rdx, 32
        or      rax, rdx
        ; Decimal digits, backwards from the end of buf.
        lea     rdi, [buf_end]
        mov     byte [rdi - 1], 10
        lea     rsi, [rdi - 1]
        mov     rcx, 10
.digit: xor     edx, edx
        div     rcx
        add     dl, '0'
        dec     rsi
        mov     [rsi], dl
        test    rax, rax
        jnz     .digit
        ; Prefix.
        mov     rcx, prefix_len
.pre:   dec     rsi
        lea     rdx, [prefix]
        mov     al, [rdx + rcx - 1]
        mov     [rsi], al
        loop    .pre
        ; write(1, rsi, buf_end - rsi)
        mov     eax, 1
        mov     edi, 1
        lea     rdx, [buf_end]
        sub     rdx, rsi
        syscall
        ; exit(0)
        mov     eax, 60
        xor     edi, edi
        syscall

section .rodata
prefix:     db "X86VCPU-TSC "
prefix_len  equ $ - prefix

section .note.GNU-stack noalloc noexec nowrite progbits

section .bss
buf:        resb 64
buf_end:
