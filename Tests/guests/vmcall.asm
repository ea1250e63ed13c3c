; vmcall: the hypercall ABI from a real-mode guest (EAX = number, EBX, ECX
; arguments, result in EAX): console write (1) and its length limit, null
; (0) and the registers it must preserve, read TSC (3), an unknown number,
; and power off (2) with status 0 as the last act.
%define GUEST "vmcall"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
        GUEST_ENTRY
        call init_ivt

        mov eax, HC_WRITE
        mov ebx, s_write                ; DS=0: offset = linear address
        mov ecx, s_write_len
        vmcall
        cmp eax, s_write_len
        REPORT e, s_wlen_ok, s_wlen_bad
        mov eax, HC_WRITE
        mov ebx, s_write
        mov ecx, 4097
        vmcall
        cmp eax, -2
        REPORT e, s_big_ok, s_big_bad

        mov eax, HC_NULL
        xor ebx, ebx
        xor ecx, ecx
        vmcall
        test eax, eax
        REPORT e, s_null_ok, s_null_bad
        mov edx, 0x44444444
        mov esi, 0x55555555
        mov edi, 0x66666666
        mov ebp, 0x77777777
        mov eax, HC_NULL
        vmcall
        cmp edx, 0x44444444
        jne .kept
        cmp esi, 0x55555555
        jne .kept
        cmp edi, 0x66666666
        jne .kept
        cmp ebp, 0x77777777
.kept:
        REPORT e, s_kept_ok, s_kept_bad

        mov eax, HC_READ_TSC
        vmcall
        mov [tsc], eax
        mov eax, HC_READ_TSC
        vmcall
        sub eax, [tsc]                  ; the low halves, wrap-safe
        cmp eax, 0
        REPORT g, s_tsc_ok, s_tsc_bad

        mov eax, 99
        vmcall
        cmp eax, -1
        REPORT e, s_unk_ok, s_unk_bad

        cmp byte [failures], 0
        jne .finish
        PRINT s_off
        mov eax, HC_POWER_OFF
        xor ebx, ebx
        vmcall
        PRINT s_off_bad
        inc byte [failures]
.finish:
        FINISH
        BOOT_SIGNATURE

        LIB16
s_write:    db "vmcall: console write", 10
s_write_len equ $ - s_write
tsc:        dd 0
s_wlen_ok:  db "vmcall: console write returned its length", 10, 0
s_wlen_bad: db "vmcall: FAIL console write result", 10, 0
s_big_ok:   db "vmcall: console write of 4097 bytes returns -2", 10, 0
s_big_bad:  db "vmcall: FAIL console write of 4097 bytes", 10, 0
s_null_ok:  db "vmcall: null returns 0", 10, 0
s_null_bad: db "vmcall: FAIL null result", 10, 0
s_kept_ok:  db "vmcall: EDX, ESI, EDI, EBP preserved", 10, 0
s_kept_bad: db "vmcall: FAIL registers changed by a hypercall", 10, 0
s_tsc_ok:   db "vmcall: TSC advances", 10, 0
s_tsc_bad:  db "vmcall: FAIL TSC did not advance", 10, 0
s_unk_ok:   db "vmcall: unknown returns -1", 10, 0
s_unk_bad:  db "vmcall: FAIL unknown hypercall result", 10, 0
s_off:      db "vmcall: power off", 10, 0
s_off_bad:  db "vmcall: FAIL power off returned", 10, 0
