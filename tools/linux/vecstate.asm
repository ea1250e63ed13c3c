; vecstate: a static x86-64 Linux program that keeps a pattern in its vector
; registers while it spins, and checks after every round that the pattern is
; still there. /init runs three at once, so the guest kernel switches between
; them and saves and restores their XSAVE state each time; a lost register
; means that state did not survive (the guest kernel, the hypervisor, or the
; CPU underneath). Prints one line and exits 0 on success, 1 on a loss:
;   vecstate: ok (AVX-512)          ymm2, zmm2, zmm17 and k3 kept
;   vecstate: ok (AVX)              ymm2 kept (no AVX-512 enabled)
;   vecstate: skipped (no AVX)      CR4.OSXSAVE or XCR0.AVX off: nothing to check
;   vecstate: lost <register>       the first register found changed
;   nasm -f elf64 -o vecstate.o vecstate.asm && ld -static -nostdlib -o vecstate vecstate.o
bits 64
default rel

ROUNDS  equ 1000                        ; each about 40,000 instructions
SPIN    equ 20000

section .text
global _start
_start:
        ; AVX needs CPUID.1:ECX.OSXSAVE[27] and XCR0 SSE|AVX (bits 1, 2).
        mov     eax, 1
        cpuid
        bt      ecx, 27
        jnc     .skip
        xor     ecx, ecx
        xgetbv
        mov     r14d, eax               ; XCR0
        and     eax, 6
        cmp     eax, 6
        jne     .skip
        ; AVX-512 needs CPUID.(7,0):EBX.AVX512F[16] and XCR0 bits 5-7.
        xor     r13d, r13d
        mov     eax, 7
        xor     ecx, ecx
        cpuid
        bt      ebx, 16
        jnc     .fill
        mov     eax, r14d
        and     eax, 0xE0
        cmp     eax, 0xE0
        jne     .fill
        mov     r13d, 1

.fill:  ; A pattern from the PID, so that the three copies differ.
        mov     eax, 39                 ; getpid
        syscall
        lea     rdi, [pattern]
        mov     ecx, 8
.next:  imul    rax, rax, 0x5851F42D
        add     rax, rcx
        mov     [rdi], rax
        add     rdi, 8
        dec     ecx
        jnz     .next

        vmovdqu ymm2, [pattern]
        test    r13d, r13d
        jz      .spin0
        vmovdqu64 zmm2, [pattern]       ; upper half: the ZMM_Hi256 component
        vmovdqu64 zmm17, [pattern]      ; the Hi16_ZMM component
        kmovq   k3, [pattern]           ; the opmask component

.spin0: mov     r15d, ROUNDS
.round: mov     ecx, SPIN
.spin:  dec     ecx
        jnz     .spin
        ; ymm2: the AVX component (its upper 128 bits).
        lea     rbx, [name_ymm2]
        vmovdqu [seen], ymm2
        mov     ecx, 4
        call    compare
        test    r13d, r13d
        jz      .done
        lea     rbx, [name_zmm2]
        vmovdqu64 [seen], zmm2
        mov     ecx, 8
        call    compare
        lea     rbx, [name_zmm17]
        vmovdqu64 [seen], zmm17
        mov     ecx, 8
        call    compare
        lea     rbx, [name_k3]
        kmovq   [seen], k3
        mov     ecx, 1
        call    compare
.done:  dec     r15d
        jnz     .round

        lea     rsi, [msg_ok_avx]
        mov     edx, msg_ok_avx_len
        test    r13d, r13d
        jz      .print
        lea     rsi, [msg_ok_512]
        mov     edx, msg_ok_512_len
.print: call    write
        xor     edi, edi
        jmp     exit

.skip:  lea     rsi, [msg_skip]
        mov     edx, msg_skip_len
        call    write
        xor     edi, edi
        jmp     exit

; Compares ECX quadwords of seen with pattern; on a difference prints
; "vecstate: lost " and the name at RBX (a 6-byte field), and exits 1.
compare:
        lea     rsi, [pattern]
        lea     rdi, [seen]
        repe cmpsq
        jne     .lost
        ret
.lost:  lea     rsi, [msg_lost]
        mov     edx, msg_lost_len
        call    write
        mov     rsi, rbx
        mov     edx, 6
        call    write
        mov     edi, 1
        jmp     exit

write:  mov     eax, 1
        mov     edi, 1
        syscall
        ret

exit:   mov     eax, 60
        syscall

section .rodata
msg_ok_512:     db "vecstate: ok (AVX-512)", 10
msg_ok_512_len  equ $ - msg_ok_512
msg_ok_avx:     db "vecstate: ok (AVX)", 10
msg_ok_avx_len  equ $ - msg_ok_avx
msg_skip:       db "vecstate: skipped (no AVX)", 10
msg_skip_len    equ $ - msg_skip
msg_lost:       db "vecstate: lost "
msg_lost_len    equ $ - msg_lost
name_ymm2:      db "ymm2 ", 10
name_zmm2:      db "zmm2 ", 10
name_zmm17:     db "zmm17", 10
name_k3:        db "k3   ", 10

section .bss
alignb 64
pattern:        resq 8
seen:           resq 8
