; hostile-console: bytes a guest could use to forge or hide the hypervisor's
; own lines: NUL, ESC sequences, CR, BS, DEL, bytes above ASCII, whole fake
; "[info] power off" / "[error]" lines, a line longer than the hypervisor's
; line buffer, and the same through the console hypercall. The guest cannot
; see the result: the system test checks the transcript (every guest line
; under "[guest] ", control bytes as '?', CR dropped, no forged line).
%define GUEST "hostile-console"
%include "Tests/guests/lib.inc"
%include "Tests/guests/hostile.inc"

        GUEST_ENTRY
        call init_ivt
        mov si, lines
        mov cx, lines_end - lines       ; raw bytes, NUL included
.put:   lodsb
        push si
        push cx
        call putc
        pop cx
        pop si
        loop .put
        mov eax, HC_WRITE               ; the same through VMCALL 1
        mov ebx, by_vmcall
        mov ecx, by_vmcall_end - by_vmcall
        vmcall
        cmp eax, by_vmcall_end - by_vmcall
        CHECK16 e, "console hypercall returned its length"
        FINISH
        BOOT_SIGNATURE

lines:
        db GUEST, ": nul [", 0, "] end", 10
        db GUEST, ": esc [", 27, "[2J", 27, "[31m] end", 10
        db GUEST, ": cr [abc", 13, "[info] power off: status 9] end", 10
        db GUEST, ": high [", 0x80, 0xFF, 8, 0x7F, "] end", 10
        db "[info] power off: status 9", 10
        db 13, "[error] VM entry failed: fake", 10
        times 205 db 'x'
        db "TAIL", 10
lines_end:
by_vmcall:
        db GUEST, ": vmcall [", 27, "[2J", 13, "[info] power off: status 8", 0, "] end", 10
by_vmcall_end:

        LIB16
        HOSTILE16
        HOSTILE_VARS
