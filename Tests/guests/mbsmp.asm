; mbsmp: a multiboot (v1) test kernel for the passthrough platform
; (platform=passthrough), a flat image at 2 MiB, 32-bit protected mode, paging
; off. It starts the machine's other CPUs itself, the way an operating system
; does (SDM Vol. 3A 9.4.4 "MP Initialization Example"): it finds them in the
; firmware's MADT, sends each INIT, INIT de-assert, STARTUP (vector 08, a
; second STARTUP only if the CPU has not checked in), and runs a real-mode
; trampoline there that enters protected mode with this image's GDT. Then it
; restarts the first of them with INIT and one STARTUP at vector 09 (INIT
; must put a running CPU back into wait-for-SIPI). It prints:
;   mbsmp: magic ok
;   mbsmp: boot cpu apic id XX
;   mbsmp: MADT lists N CPUs                     (N decimal; enabled or online-capable)
;   mbsmp: other cpu apic id XX                  (each other xAPIC-reachable CPU)
;   mbsmp: other cpu x2apic id XXXXXXXX skipped  (an ID above FE: not reachable through the xAPIC)
;   mbsmp: other cpu apic id XX not started (3 at most)
;   mbsmp: second STARTUP to cpu XX              (it had not checked in 200 us after the first)
;   mbsmp: cpu XX running in protected mode (cpuid apic id YY, hypervisor yes|no)   (printed by the AP)
;   mbsmp: cpu XX workload ok                    (its sum 1..100000 and 300 CPUIDs, checked by the BSP)
;   mbsmp: N CPUs running                        (1 + the CPUs that arrived)
;   mbsmp: INIT and STARTUP 09 to cpu XX
;   mbsmp: cpu XX started again at vector 09     (printed by the AP, from CS in real mode)
;   mbsmp: cpu XX restart ok
;   mbsmp: all checks passed                     (out 0xF4 <- 0)
; With one CPU in the MADT: `mbsmp: no other CPU to start`, then passed.
; Any failure prints a line containing FAIL (out 0xF4 <- 1); a CPU that does
; not arrive within 5 s is a FAIL line naming it, not a hang. Delays use PIT
; channel 2 as a one-shot (the guest owns the PIT on this platform).
; Memory: the image at 2 MiB, the BSP's stack below 0x210000, one 4 KiB stack
; per AP start above it (0x210000-0x218000), the trampoline at 0x8000/0x9000.

MB_MAGIC        equ 0x1BADB002
MB_BOOT_MAGIC   equ 0x2BADB002
MB_FLAGS        equ (1 << 1) | (1 << 16)        ; memory info, address fields
LOAD_ADDR       equ 0x200000
STACK_TOP       equ 0x210000
AP_STACKS       equ 8                           ; AP starts with a stack of their own
BSS_END         equ STACK_TOP + AP_STACKS * 0x1000
MAX_APS         equ 3

APIC_ID         equ 0x20
APIC_SVR        equ 0xF0
APIC_ICR_LO     equ 0x300
APIC_ICR_HI     equ 0x310
; SDM 11.6.1 "Interrupt Command Register (ICR)": delivery mode 10:8 (101 INIT,
; 110 Start-up), bit 12 delivery status, bit 14 level (1 assert), bit 15
; trigger mode (1 level), physical destination in ICR high 31:24.
ICR_INIT_ASSERT   equ 0x0000C500
ICR_INIT_DEASSERT equ 0x00008500
ICR_STARTUP       equ 0x00004600                ; | vector
ICR_BUSY          equ 1 << 12

PIT_HZ          equ 1193182
TICKS_10MS      equ PIT_HZ / 100
TICKS_1MS       equ PIT_HZ / 1000
TICKS_200US     equ PIT_HZ / 5000
ARRIVAL_MS      equ 5000

SUM_N           equ 100000
SUM_LO          equ 0x2A06B550                  ; 100000 * 100001 / 2 = 0x1_2A06_B550
SUM_HI          equ 0x1
CPUID_LOOPS     equ 300

        org LOAD_ADDR
bits 32

mb_header:
        dd MB_MAGIC
        dd MB_FLAGS
        dd -(MB_MAGIC + MB_FLAGS)
        dd mb_header                    ; header_addr
        dd LOAD_ADDR                    ; load_addr
        dd image_end                    ; load_end_addr
        dd BSS_END                      ; bss_end_addr: the stacks
        dd _start                       ; entry_addr

_start:
        cli
        cld
        mov esp, STACK_TOP
        cmp eax, MB_BOOT_MAGIC
        je .magic_ok
        mov esi, s_badmagic
        jmp fail
.magic_ok:
        mov esi, s_magic
        call puts

        ; IA32_APIC_BASE: this guest drives the xAPIC's MMIO page.
        mov ecx, 0x1B
        rdmsr
        test eax, 1 << 10               ; EXTD: x2APIC mode, no MMIO
        jz .xapic
        mov esi, s_x2apic_mode
        jmp fail
.xapic: and eax, 0xFFFFF000
        mov [apic_base], eax
        mov edi, eax
        mov eax, [edi + APIC_ID]
        shr eax, 24
        mov [boot_id], eax
        mov esi, s_bootid
        call puts
        call puthex8
        call newline
        ; 9.4.4: enable the local APIC (SVR bit 8) before sending IPIs. IF
        ; stays 0, so nothing is delivered to us; spurious vector FF.
        ; Read, then write (as Linux's apic_write does): a hypervisor that
        ; takes the APIC page's writes decodes plain MOVs.
        mov eax, [edi + APIC_SVR]
        or eax, 0x1FF
        mov [edi + APIC_SVR], eax

        call find_madt                  ; ESI = the MADT, or a FAIL
        push esi
        call scan_madt                  ; the first pass counts
        mov esi, s_lists
        call puts
        mov eax, [madt_cpus]
        call putdec
        mov esi, s_cpus
        call puts
        pop esi
        inc byte [madt_pass]
        call scan_madt                  ; the second lists the others

        cmp dword [ap_count], 0
        jne .start_aps
        mov esi, s_none
        call puts
        jmp passed

; --- Start each AP in turn (9.4.4), wait for it, check its work. -----------
.start_aps:
        mov esi, tramp_start            ; the trampoline at 0x8000: vector 08
        mov edi, 0x8000
        mov ecx, tramp_end - tramp_start
        rep movsb
        xor ebx, ebx                    ; EBX = index into ap_ids
.next_ap:
        cmp ebx, [ap_count]
        jae .all_started
        movzx edi, byte [ap_ids + ebx]  ; EDI = its APIC ID
        mov byte [ap_checkin + edi], 0
        mov eax, ICR_INIT_ASSERT
        call send_ipi
        mov eax, ICR_INIT_DEASSERT      ; ignored by P4 and later; P6 needs it
        call send_ipi
        mov ecx, TICKS_10MS
        call pit_delay
        mov eax, ICR_STARTUP | 0x08
        call send_ipi
        mov ecx, TICKS_200US
        call pit_delay
        cmp byte [ap_checkin + edi], 0
        jne .checked_in
        call lock_console
        mov esi, s_second
        call puts
        mov eax, edi
        call puthex8
        call newline
        call unlock_console
        mov eax, ICR_STARTUP | 0x08
        call send_ipi
.checked_in:
        lea eax, [ebx + 1]
        call wait_arrivals              ; EDI names the CPU in a FAIL
        call check_work
        inc ebx
        jmp .next_ap

.all_started:
        mov esi, s_prefix
        call puts
        mov eax, [arrived]
        inc eax
        call putdec
        mov esi, s_running
        call puts

; --- Restart the first AP: INIT must return it to wait-for-SIPI. -----------
        mov esi, tramp_start            ; a second copy at 0x9000: vector 09
        mov edi, 0x9000
        mov ecx, tramp_end - tramp_start
        rep movsb
        movzx edi, byte [ap_ids]
        mov esi, s_restart
        call puts
        mov eax, edi
        call puthex8
        call newline
        mov byte [ap_checkin + edi], 0
        mov byte [ap_vector + edi], 0
        mov eax, ICR_INIT_ASSERT
        call send_ipi
        mov eax, ICR_INIT_DEASSERT
        call send_ipi
        mov ecx, TICKS_10MS
        call pit_delay
        mov eax, ICR_STARTUP | 0x09     ; one STARTUP only: a second would be
        call send_ipi                   ; ignored by a running CPU anyway
        mov eax, [ap_count]
        inc eax
        call wait_arrivals
        cmp byte [ap_vector + edi], 0x09
        je .vector_ok
        mov esi, s_badvector
        jmp fail_cpu
.vector_ok:
        call check_work
        mov esi, s_prefix_cpu
        call puts
        mov eax, edi
        call puthex8
        mov esi, s_restart_ok
        call puts

passed:
        mov esi, s_passed
        call puts
        xor eax, eax
        jmp power_off

; --- BSP helpers -------------------------------------------------------------

; send_ipi: EAX = ICR low, EDI = the destination APIC ID. High half first: the
; write to the low half sends (11.6.1). Waits for delivery status idle.
send_ipi:
        push eax
        push ecx
        push edx
        mov edx, [apic_base]
        mov ecx, edi
        shl ecx, 24
        mov [edx + APIC_ICR_HI], ecx
        mov [edx + APIC_ICR_LO], eax
        mov ecx, 1000000
.busy:  test dword [edx + APIC_ICR_LO], ICR_BUSY
        jz .sent
        pause
        dec ecx
        jnz .busy
        mov esi, s_icr_stuck
        jmp fail_cpu
.sent:  pop edx
        pop ecx
        pop eax
        ret

; pit_delay: ECX = PIT ticks (1..65535 at 1.193182 MHz). Channel 2 in mode 0
; (interrupt on terminal count): OUT2 (port 0x61 bit 5) goes high when the
; count runs out; port 0x61 bit 0 is its gate, bit 1 the speaker (kept off).
pit_delay:
        push eax
        push ecx
        push edx
        in al, 0x61
        and al, 0x0C                    ; gate and speaker off, keep NMI enables
        out 0x61, al
        mov al, 0xB0                    ; channel 2, low then high byte, mode 0, binary
        out 0x43, al
        mov al, cl
        out 0x42, al
        mov al, ch
        out 0x42, al
        in al, 0x61
        and al, 0x0C
        or al, 1                        ; gate on: counting starts
        out 0x61, al
        mov edx, 10000000               ; a bound, should the PIT not count
.poll:  in al, 0x61
        test al, 0x20
        jnz .done
        dec edx
        jnz .poll
        mov esi, s_pit
        jmp fail
.done:  pop edx
        pop ecx
        pop eax
        ret

; wait_arrivals: EAX = the arrival count to wait for, at most ARRIVAL_MS ms;
; EDI = the CPU a timeout names.
wait_arrivals:
        push ecx
        push edx
        mov edx, ARRIVAL_MS
.check: cmp [arrived], eax
        jae .done
        mov ecx, TICKS_1MS
        call pit_delay
        dec edx
        jnz .check
        mov esi, s_timeout
        jmp fail_cpu
.done:  pop edx
        pop ecx
        ret

; check_work: EDI = an AP's APIC ID; its sum and CPUID results.
check_work:
        cmp dword [ap_sum_lo + edi * 4], SUM_LO
        jne .badsum
        cmp dword [ap_sum_hi + edi * 4], SUM_HI
        jne .badsum
        cmp byte [ap_cpuid_bad + edi], 0
        jne .badcpuid
        movzx eax, byte [ap_cpuid_id + edi]
        cmp eax, edi
        jne .badcpuid
        mov esi, s_prefix_cpu
        call puts
        mov eax, edi
        call puthex8
        mov esi, s_work_ok
        call puts
        ret
.badsum:
        mov esi, s_badsum
        jmp fail_cpu
.badcpuid:
        mov esi, s_badcpuid
        jmp fail_cpu

; find_madt: ESI = the MADT ("APIC"), checksum checked; a FAIL line if none.
find_madt:
        movzx esi, word [0x40E]         ; the EBDA's segment
        shl esi, 4
        lea edx, [esi + 1024]           ; its first KiB
        test esi, esi
        jz .bios
        call scan_rsdp
        jnc .found
.bios:  mov esi, 0xE0000
        mov edx, 0x100000
        call scan_rsdp
        jnc .found
        mov esi, s_no_rsdp
        jmp fail
.found: ; ESI = the RSDP. XSDT (8-byte entries) if revision >= 2 and below 4 GiB.
        mov ebp, 4
        mov ebx, [esi + 16]             ; RsdtAddress
        cmp byte [esi + 15], 2
        jb .root
        cmp dword [esi + 28], 0
        jne .root
        mov eax, [esi + 24]             ; XsdtAddress
        test eax, eax
        jz .root
        mov ebx, eax
        mov ebp, 8
.root:  mov edx, [ebx + 4]              ; the root table's length
        add edx, ebx
        lea ecx, [ebx + 36]             ; its entries
.entry: cmp ecx, edx
        jae .no_madt
        cmp ebp, 8
        jne .low
        cmp dword [ecx + 4], 0          ; an XSDT entry above 4 GiB: not ours
        jne .skip
.low:   mov esi, [ecx]
        cmp dword [esi], 'APIC'
        je .madt
.skip:  add ecx, ebp
        jmp .entry
.madt:  mov ecx, [esi + 4]
        call checksum
        jz .ok
        mov esi, s_madt_sum
        jmp fail
.ok:    ret
.no_madt:
        mov esi, s_no_madt
        jmp fail

; scan_rsdp: ESI..EDX on 16-byte boundaries for "RSD PTR " with a good ACPI
; 1.0 checksum (its first 20 bytes). CF clear and ESI = it, or CF set.
scan_rsdp:
.try:   cmp esi, edx
        jae .none
        cmp dword [esi], 'RSD '
        jne .next
        cmp dword [esi + 4], 'PTR '
        jne .next
        mov ecx, 20
        call checksum
        jz .hit
.next:  add esi, 16
        jmp .try
.none:  stc
        ret
.hit:   clc
        ret

; checksum: the byte sum of ECX bytes at ESI; ZF set when it is 0.
checksum:
        push eax
        push ecx
        push esi
        xor eax, eax
.add:   add al, [esi]
        inc esi
        dec ecx
        jnz .add
        test al, al
        pop esi
        pop ecx
        pop eax
        ret

; scan_madt: ESI = the MADT. The enabled or online-capable processor local
; APIC (type 0) and x2APIC (type 9) entries: counted while madt_pass is 0,
; then the other CPUs listed and taken.
scan_madt:
        mov edx, [esi + 4]
        add edx, esi                    ; its end
        add esi, 44                     ; the interrupt controller structures
.entry: lea eax, [esi + 2]
        cmp eax, edx
        ja .done
        movzx ecx, byte [esi + 1]       ; length
        cmp ecx, 2
        jb .bad
        cmp byte [esi], 0
        je .lapic
        cmp byte [esi], 9
        je .x2apic
.next:  add esi, ecx
        jmp .entry
.done:  ret
.bad:   mov esi, s_madt_entry
        jmp fail
.lapic: test byte [esi + 4], 3          ; flags: enabled, online capable
        jz .next
        movzx eax, byte [esi + 3]       ; APIC ID
        jmp .count
.x2apic:
        test byte [esi + 8], 3
        jz .next
        mov eax, [esi + 4]              ; x2APIC ID
        cmp byte [madt_pass], 0
        jne .listx2
        inc dword [madt_cpus]
        jmp .next
.listx2:
        cmp eax, 0xFE
        jbe .other
        push esi
        mov esi, s_x2skip
        call puts
        call puthex32
        mov esi, s_skipped
        call puts
        pop esi
        jmp .next
.count: cmp byte [madt_pass], 0
        jne .other
        inc dword [madt_cpus]
        jmp .next
.other: cmp eax, [boot_id]
        je .next
        push esi
        mov esi, s_other
        call puts
        call puthex8
        mov ebx, [ap_count]
        cmp ebx, MAX_APS
        jb .take
        mov esi, s_not_started
        call puts
        pop esi
        jmp .next
.take:  mov [ap_ids + ebx], al
        inc dword [ap_count]
        call newline
        pop esi
        jmp .next

; fail_cpu: ESI = the rest of the message, EDI = the CPU it names.
fail_cpu:
        call lock_console
        push esi
        mov esi, s_fail_cpu
        call puts
        mov eax, edi
        call puthex8
        pop esi
        ; fall through
; fail: ESI = the message; prints it and powers off with status 1.
fail:
        call puts
        mov al, 1
        jmp power_off

; --- Shared by the BSP and the APs ------------------------------------------

; lock_console: the COM1 spinlock (lock xchg); bounded, so that a CPU that
; died holding it cannot keep a FAIL line from being printed.
lock_console:
        push eax
        push ecx
        mov ecx, 100000000
.try:   mov al, 1
        xchg [console_lock], al         ; xchg with memory is locked
        test al, al
        jz .got
.spin:  pause
        dec ecx
        jz .got
        cmp byte [console_lock], 0
        jne .spin
        jmp .try
.got:   pop ecx
        pop eax
        ret

unlock_console:
        mov byte [console_lock], 0
        ret

; puthex8: AL as 2 hex digits.
puthex8:
        push eax
        push ecx
        mov ecx, eax
        shr al, 4
        call .nibble
        mov al, cl
        call .nibble
        pop ecx
        pop eax
        ret
.nibble:
        and al, 0x0F
        add al, '0'
        cmp al, '9'
        jbe .put
        add al, 'a' - '9' - 1
.put:   jmp putc

; putdec: EAX in decimal.
putdec:
        push eax
        push ecx
        push edx
        push ebx
        mov ebx, 10
        xor ecx, ecx
.div:   xor edx, edx
        div ebx
        push edx
        inc ecx
        test eax, eax
        jnz .div
.out:   pop eax
        add al, '0'
        call putc
        loop .out
        pop ebx
        pop edx
        pop ecx
        pop eax
        ret

; --- The AP's real-mode trampoline (copied to vector * 0x1000) -------------
; A STARTUP IPI starts the AP in real mode at CS = vector << 8, IP = 0 (9.4.3
; "MP Initialization Protocol Algorithm"); the code below only uses offsets
; from CS, so each copy runs where it lands. BX keeps CS for the 32-bit code.
bits 16
tramp_start:
        cli
        mov bx, cs
        mov ds, bx
        o32 lgdt [tramp_gdtr - tramp_start]
        mov eax, cr0
        or al, 1                        ; CR0.PE (9.9.1 "Switching to Protected Mode")
        mov cr0, eax
        jmp dword CODE_SEL:ap_entry32   ; a far jump loads CS from the new GDT
align 4
tramp_gdtr:
        dw gdt_end - gdt - 1
        dd gdt                          ; the GDT stays in the image (2 MiB)
tramp_end:

; --- The AP in protected mode ------------------------------------------------
bits 32
ap_entry32:
        mov ax, DATA_SEL
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        cld
        movzx ebx, bx
        shr ebx, 8                      ; the STARTUP vector, from CS
        mov eax, 1
        lock xadd [ap_next_stack], eax  ; a stack of its own
        cmp eax, AP_STACKS
        jae ap_park
        inc eax
        shl eax, 12
        add eax, STACK_TOP
        mov esp, eax
        mov edx, [apic_base]
        mov edi, [edx + APIC_ID]
        shr edi, 24                     ; EDI = its APIC ID
        mov [ap_vector + edi], bl
        mov byte [ap_checkin + edi], 1
        mov eax, 1
        cpuid
        shr ebx, 24                     ; CPUID.1:EBX[31:24]: the initial APIC ID
        mov [ap_cpuid_id + edi], bl
        call lock_console
        cmp byte [ap_vector + edi], 0x08
        je .first
        mov esi, s_prefix_cpu
        call puts
        mov eax, edi
        call puthex8
        mov esi, s_again
        call puts
        movzx eax, byte [ap_vector + edi]
        call puthex8
        call newline
        jmp .said
.first: mov esi, s_prefix_cpu
        call puts
        mov eax, edi
        call puthex8
        mov esi, s_pmode
        call puts
        mov eax, ebx
        call puthex8
        mov esi, s_hv
        call puts
        mov esi, s_no
        test ecx, ecx                   ; CPUID.1:ECX bit 31: hypervisor present
        jns .hv
        mov esi, s_yes
.hv:    call puts
        mov esi, s_close
        call puts
.said:  call unlock_console

        ; The workload: sum 1..SUM_N in 64 bits, counted down.
        xor eax, eax
        xor edx, edx
        mov ecx, SUM_N
.sum:   add eax, ecx
        adc edx, 0
        dec ecx
        jnz .sum
        mov [ap_sum_lo + edi * 4], eax
        mov [ap_sum_hi + edi * 4], edx
        ; CPUIDs (each one a VM exit under a hypervisor): the initial APIC ID
        ; must not change between them.
        mov ebp, CPUID_LOOPS
        movzx esi, byte [ap_cpuid_id + edi]
.cpuid: mov eax, 1
        cpuid
        shr ebx, 24
        cmp ebx, esi
        je .same
        mov byte [ap_cpuid_bad + edi], 1
.same:  dec ebp
        jnz .cpuid
        lock inc dword [arrived]
ap_park:
        cli
        hlt
        jmp ap_park

%include "Tests/guests/mbserial.inc"

; --- Data ---------------------------------------------------------------------
align 8
gdt:    dq 0
        dq 0x00CF9A000000FFFF           ; 0x08: flat 32-bit code
        dq 0x00CF92000000FFFF           ; 0x10: flat data
gdt_end:
CODE_SEL        equ 0x08
DATA_SEL        equ 0x10

s_magic:        db "mbsmp: magic ok", 10, 0
s_badmagic:     db "mbsmp: FAIL: EAX is not 0x2BADB002", 10, 0
s_x2apic_mode:  db "mbsmp: FAIL: the local APIC is in x2APIC mode (this guest drives the xAPIC)", 10, 0
s_bootid:       db "mbsmp: boot cpu apic id ", 0
s_lists:        db "mbsmp: MADT lists ", 0
s_cpus:         db " CPUs", 10, 0
s_none:         db "mbsmp: no other CPU to start", 10, 0
s_other:        db "mbsmp: other cpu apic id ", 0
s_not_started:  db " not started (3 at most)", 10, 0
s_x2skip:       db "mbsmp: other cpu x2apic id ", 0
s_skipped:      db " skipped", 10, 0
s_second:       db "mbsmp: second STARTUP to cpu ", 0
s_prefix:       db "mbsmp: ", 0
s_prefix_cpu:   db "mbsmp: cpu ", 0
s_running:      db " CPUs running", 10, 0
s_pmode:        db " running in protected mode (cpuid apic id ", 0
s_hv:           db ", hypervisor ", 0
s_yes:          db "yes", 0
s_no:           db "no", 0
s_close:        db ")", 10, 0
s_again:        db " started again at vector ", 0
s_work_ok:      db " workload ok", 10, 0
s_restart:      db "mbsmp: INIT and STARTUP 09 to cpu ", 0
s_restart_ok:   db " restart ok", 10, 0
s_passed:       db "mbsmp: all checks passed", 10, 0
s_no_rsdp:      db "mbsmp: FAIL: no RSDP in the EBDA or at E0000-FFFFF", 10, 0
s_no_madt:      db "mbsmp: FAIL: no APIC table (MADT) in the RSDT/XSDT", 10, 0
s_madt_sum:     db "mbsmp: FAIL: the MADT's checksum is wrong", 10, 0
s_madt_entry:   db "mbsmp: FAIL: a MADT entry shorter than 2 bytes", 10, 0
s_pit:          db "mbsmp: FAIL: PIT channel 2 did not count down", 10, 0
s_fail_cpu:     db "mbsmp: FAIL: cpu ", 0
s_icr_stuck:    db ": ICR delivery status stayed busy", 10, 0
s_timeout:      db " did not arrive within 5 s", 10, 0
s_badsum:       db ": wrong sum 1..100000", 10, 0
s_badcpuid:     db ": CPUID.1:EBX[31:24] differs from its APIC ID, or changed", 10, 0
s_badvector:    db ": restart did not report vector 09", 10, 0

align 4
apic_base:      dd 0
boot_id:        dd 0
madt_cpus:      dd 0
ap_count:       dd 0
ap_ids:         times MAX_APS db 0
align 4
arrived:        dd 0                    ; lock inc by each AP when done
ap_next_stack:  dd 0                    ; lock xadd by each AP start
console_lock:   db 0
madt_pass:      db 0
; Per CPU, indexed by APIC ID (0..FF).
ap_checkin:     times 256 db 0
ap_vector:      times 256 db 0
ap_cpuid_id:    times 256 db 0
ap_cpuid_bad:   times 256 db 0
align 4
ap_sum_lo:      times 256 dd 0
ap_sum_hi:      times 256 dd 0
image_end:
