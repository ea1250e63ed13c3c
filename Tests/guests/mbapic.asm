; mbapic: a multiboot (v1) test kernel for the passthrough platform
; (platform=passthrough), a flat image at 2 MiB. It reads the machine's own
; local APIC through its MMIO page and the memory map the hypervisor passed:
;   mbapic: magic ok
;   mbapic: apic base <hex> id <hex> version <hex>
;   mbapic: apic ok                 (ID = CPUID.1:EBX[31:24], an integrated APIC's version 1xH)
;   mbapic: 1 MiB is type <n>       (the hypervisor's image: reserved, 2)
;   mbapic: all checks passed       (out 0xF4 <- 0)
; With `probe=<hex>` on its command line it then reads that address, as a
; guest looking for the hypervisor's memory would, and prints what it found:
; the hypervisor must stop it before (an EPT violation), so
;   mbapic: FAIL: read <hex> = <hex>
; is printed only if the read succeeded. Other failures print FAIL too
; (out 0xF4 <- 1). On the passthrough platform COM1 is the real UART.

MB_MAGIC        equ 0x1BADB002
MB_BOOT_MAGIC   equ 0x2BADB002
MB_FLAGS        equ (1 << 1) | (1 << 16)        ; memory info, address fields
LOAD_ADDR       equ 0x200000
STACK_TOP       equ 0x210000

        org LOAD_ADDR
bits 32

mb_header:
        dd MB_MAGIC
        dd MB_FLAGS
        dd -(MB_MAGIC + MB_FLAGS)
        dd mb_header                    ; header_addr
        dd LOAD_ADDR                    ; load_addr
        dd image_end                    ; load_end_addr
        dd STACK_TOP                    ; bss_end_addr: the stack
        dd _start                       ; entry_addr

_start:
        cli
        cld
        mov esp, STACK_TOP
        mov ebp, ebx                    ; EBP = the multiboot information
        cmp eax, MB_BOOT_MAGIC
        je .magic_ok
        mov esi, s_badmagic
        jmp fail
.magic_ok:
        mov esi, s_magic
        call puts

        ; IA32_APIC_BASE, then the ID (0x20) and version (0x30) registers.
        mov ecx, 0x1B
        rdmsr
        and eax, 0xFFFFF000
        mov edi, eax
        mov esi, s_base
        call puts
        mov eax, edi
        call puthex32
        mov esi, s_id
        call puts
        mov eax, [edi + 0x20]
        mov ebx, eax
        call puthex32
        mov esi, s_version
        call puts
        mov eax, [edi + 0x30]
        mov [apic_version], eax
        call puthex32
        call newline
        ; SDM 11.4.8 "Local APIC Version Register": 1xH is an integrated APIC.
        mov eax, [apic_version]
        and eax, 0xF0
        cmp eax, 0x10
        jne .bad_apic
        mov eax, 1
        cpuid
        shr ebx, 24                     ; CPUID.1:EBX[31:24]: the initial APIC ID
        mov eax, [edi + 0x20]
        shr eax, 24                     ; xAPIC ID register: bits 31:24
        cmp eax, ebx
        jne .bad_apic
        mov esi, s_apic_ok
        call puts

        ; The memory map entry holding 1 MiB, where GRUB put the hypervisor.
        test dword [ebp], 1 << 6
        jz .no_map
        mov esi, [ebp + 48]             ; mmap_addr
        mov ecx, [ebp + 44]             ; mmap_length
        add ecx, esi
.entry: cmp esi, ecx
        jae .no_map
        mov eax, [esi + 4]              ; base (low half; the high half is 0 here)
        mov edx, eax
        add edx, [esi + 12]             ; + length
        cmp dword [esi + 8], 0
        jne .next_entry
        cmp eax, 0x100000
        ja .next_entry
        cmp edx, 0x100000
        jbe .next_entry
        push esi
        mov esi, s_type
        call puts
        pop esi
        mov eax, [esi + 20]
        call puthex32
        call newline
        jmp .mapped
.next_entry:
        add esi, [esi]
        add esi, 4
        jmp .entry
.no_map:
        mov esi, s_nomap
        jmp fail
.mapped:

        ; probe=<hex>: read there (the hypervisor should stop us first).
        mov esi, [ebp + 16]             ; cmdline
.scan:  mov eax, [esi]
        test al, al
        jz .done
        cmp eax, 'prob'
        jne .step
        cmp word [esi + 4], 'e='
        je .probe
.step:  inc esi
        jmp .scan
.probe: add esi, 6
        xor edi, edi
.hex:   lodsb
        sub al, '0'
        cmp al, 9
        jbe .digit
        sub al, 'a' - '0' - 10
        cmp al, 15
        ja .read
.digit: shl edi, 4
        movzx eax, al
        or edi, eax
        jmp .hex
.read:  mov ebx, [edi]
        mov esi, s_read
        call puts
        mov eax, edi
        call puthex32
        mov esi, s_equals
        call puts
        mov eax, ebx
        call puthex32
        call newline
        mov al, 1
        jmp power_off

.done:  mov esi, s_passed
        call puts
        xor eax, eax
        jmp power_off
.bad_apic:
        mov esi, s_badapic
        ; fall through

; fail: ESI = the message; prints it and powers off with status 1.
fail:
        call puts
        mov al, 1
        ; fall through

%include "Tests/guests/mbserial.inc"

s_magic:        db "mbapic: magic ok", 10, 0
s_badmagic:     db "mbapic: FAIL: EAX is not 0x2BADB002", 10, 0
s_base:         db "mbapic: apic base ", 0
s_id:           db " id ", 0
s_version:      db " version ", 0
s_apic_ok:      db "mbapic: apic ok", 10, 0
s_badapic:      db "mbapic: FAIL: not an integrated local APIC, or its ID differs from CPUID's", 10, 0
s_type:         db "mbapic: 1 MiB is type ", 0
s_nomap:        db "mbapic: FAIL: no memory map entry holds 1 MiB", 10, 0
s_read:         db "mbapic: FAIL: read ", 0
s_equals:       db " = ", 0
s_passed:       db "mbapic: all checks passed", 10, 0
align 4
apic_version:   dd 0
image_end:
