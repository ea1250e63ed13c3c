; The memory primitives Swift's generated code calls.
bits 64
section .text
global memset, memcpy, memmove, memcmp

; void *memset(void *dst, int c, size_t n)
memset:
    mov r8, rdi
    mov eax, esi
    mov rcx, rdx
    rep stosb
    mov rax, r8
    ret

; void *memcpy(void *dst, const void *src, size_t n)
memcpy:
    mov rax, rdi
    mov rcx, rdx
    rep movsb
    ret

; void *memmove(void *dst, const void *src, size_t n)
memmove:
    mov rax, rdi
    mov rcx, rdx
    cmp rdi, rsi
    jbe .forward
    lea r8, [rsi + rdx]
    cmp rdi, r8
    jae .forward
    ; overlapping with dst above src: copy backwards
    lea rsi, [rsi + rdx - 1]
    lea rdi, [rdi + rdx - 1]
    std
    rep movsb
    cld
    ret
.forward:
    rep movsb
    ret

; int memcmp(const void *a, const void *b, size_t n)
memcmp:
    xor eax, eax
    test rdx, rdx
    jz .done
.loop:
    movzx eax, byte [rdi]
    movzx ecx, byte [rsi]
    sub eax, ecx
    jnz .done
    inc rdi
    inc rsi
    dec rdx
    jnz .loop
.done:
    ret
