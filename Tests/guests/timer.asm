; timer: the periodic timer hypercall (4) from a real-mode guest. Vector 31
; must be refused; vector 0x20 every 200000 TSC ticks is armed, and HLT with
; IF=1 waits for 10 interrupts (the IVT handler only counts; there is no PIC
; to acknowledge). Then: no delivery while IF=0, the held interrupt arrives
; after STI, and none after the timer is disarmed. Loops are bounded by
; iteration counts or by TSC time (RDTSC), never unbounded.
%define GUEST "timer"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
VECTOR          equ 0x20
PERIOD          equ 200000
IDLE_LIMIT      equ 10000           ; HLT wake-ups without a new interrupt

        GUEST_ENTRY
        call init_ivt
        SET_IVT VECTOR, tick

        mov eax, HC_TIMER
        mov ebx, 31
        mov ecx, PERIOD
        vmcall
        cmp eax, -2
        REPORT e, s_bad_ok, s_bad_bad

        mov eax, HC_TIMER
        mov ebx, VECTOR
        mov ecx, PERIOD
        vmcall
        test eax, eax
        REPORT e, s_arm_ok, s_arm_bad
        cmp byte [failures], 0
        jne .finish

        xor bx, bx                      ; count at the last wake-up
        xor ecx, ecx                    ; wake-ups since it changed
        sti
.wait:
        hlt
        mov ax, [ticks]
        cmp ax, 10
        jae .ten
        cmp ax, bx
        je .idle
        mov bx, ax
        xor ecx, ecx
.idle:
        inc ecx
        cmp ecx, IDLE_LIMIT
        jb .wait
        cli
        PRINT s_stuck
        inc byte [failures]
        jmp .finish
.ten:
        cli
        PRINT s_ten

        mov di, [ticks]                 ; IF=0 for two periods: nothing arrives
        mov ecx, 2 * PERIOD
        call wait_tsc
        cmp [ticks], di
        REPORT e, s_held_ok, s_held_bad

        sti                             ; ... until IF=1
        mov ecx, PERIOD / 2
        call wait_tick
        cli
        cmp [ticks], di
        REPORT ne, s_late_ok, s_late_bad

        mov eax, HC_TIMER
        mov ebx, VECTOR
        xor ecx, ecx
        vmcall
        test eax, eax
        REPORT e, s_off_ok, s_off_bad

        mov di, [ticks]                 ; five periods with IF=1: at most
        sti                             ; one that was already queued
        mov ecx, 5 * PERIOD
        call wait_tsc
        cli
        mov ax, [ticks]
        sub ax, di
        cmp ax, 1
        REPORT be, s_quiet_ok, s_quiet_bad
.finish:
        cli
        FINISH

tick:
        inc word [cs:ticks]
        iret
        BOOT_SIGNATURE

; wait_tsc: busy-wait ECX TSC ticks (clobbers eax, edx, esi).
wait_tsc:
        rdtsc
        mov esi, eax
.spin:
        rdtsc
        sub eax, esi
        cmp eax, ecx
        jb .spin
        ret

; wait_tick: busy-wait until [ticks] differs from DI, at most ECX TSC ticks.
wait_tick:
        rdtsc
        mov esi, eax
.spin:
        cmp [ticks], di
        jne .ret
        rdtsc
        sub eax, esi
        cmp eax, ecx
        jb .spin
.ret:
        ret

        LIB16
ticks:      dw 0
s_bad_ok:   db "timer: vector 31 refused with -2", 10, 0
s_bad_bad:  db "timer: FAIL vector 31 not refused", 10, 0
s_arm_ok:   db "timer: armed vector 0x20, period 200000", 10, 0
s_arm_bad:  db "timer: FAIL arming returned non-zero", 10, 0
s_stuck:    db "timer: FAIL no new interrupt in 10000 HLT wake-ups", 10, 0
s_ten:      db "timer: 10 interrupts", 10, 0
s_held_ok:  db "timer: none delivered while IF=0", 10, 0
s_held_bad: db "timer: FAIL interrupt delivered while IF=0", 10, 0
s_late_ok:  db "timer: held interrupt delivered after STI", 10, 0
s_late_bad: db "timer: FAIL no interrupt within half a period after STI", 10, 0
s_off_ok:   db "timer: disarmed", 10, 0
s_off_bad:  db "timer: FAIL disarming returned non-zero", 10, 0
s_quiet_ok: db "timer: no interrupts after disarm", 10, 0
s_quiet_bad: db "timer: FAIL interrupts after disarm", 10, 0
