; mblow: a multiboot (v1) test kernel linked low, as real-mode-era test
; kernels are: a flat image at 0x8000 (the "a.out kludge" address fields),
; whose bss reaches 0x10000 and so covers the loader's usual structure
; addresses (info 0x8000, mmap 0x9000, modules 0x9400, command line 0xA000,
; stack top 0x10000). The loader must put its structures elsewhere. It checks
; and prints:
;   mblow: magic ok
;   mblow: info <hex> mmap <hex> cmdline <hex> mods <hex> name <hex> esp <hex>
;   mblow: structures outside the image
;   mblow: image intact, bss zero
;   mblow: cmdline '<kernel command line>'
;   mblow: all checks passed                      (out 0xF4 <- 0)
; or a line with FAIL (out 0xF4 <- 1).
; Built by the Makefile's test-guest rule: nasm -f bin.

MB_MAGIC        equ 0x1BADB002
MB_BOOT_MAGIC   equ 0x2BADB002
MB_FLAGS        equ (1 << 1) | (1 << 16)        ; memory info, address fields
LOAD_ADDR       equ 0x8000
BSS_END         equ 0x10000

        org LOAD_ADDR
bits 32

mb_header:
        dd MB_MAGIC
        dd MB_FLAGS
        dd -(MB_MAGIC + MB_FLAGS)
        dd mb_header                    ; header_addr
        dd LOAD_ADDR                    ; load_addr
        dd image_end                    ; load_end_addr
        dd BSS_END                      ; bss_end_addr
        dd _start                       ; entry_addr

_start:
        cli
        cld
        mov [entry_esp], esp            ; the loader's stack, checked below
        mov esp, BSS_END                ; our own stack: the top of the bss
        mov ebp, ebx                    ; EBP = the multiboot information
        cmp eax, MB_BOOT_MAGIC
        je .magic_ok
        mov esi, s_badmagic
        jmp fail
.magic_ok:
        mov esi, s_magic
        call puts

        ; The addresses, printed, then each checked.
        mov esi, s_info
        call puts
        mov eax, ebp
        call puthex32
        mov esi, s_mmap
        call puts
        mov eax, [ebp + 48]
        call puthex32
        mov esi, s_cmdline
        call puts
        mov eax, [ebp + 16]
        call puthex32
        mov esi, s_mods
        call puts
        mov eax, [ebp + 24]
        call puthex32
        mov esi, s_name
        call puts
        mov eax, [ebp + 64]
        call puthex32
        mov esi, s_esp
        call puts
        mov eax, [entry_esp]
        call puthex32
        call newline

        mov eax, ebp
        call check_outside
        mov eax, [ebp + 48]             ; mmap_addr
        call check_outside
        mov eax, [ebp + 16]             ; cmdline
        call check_outside
        mov eax, [ebp + 24]             ; mods_addr
        call check_outside
        mov eax, [ebp + 64]             ; boot_loader_name
        call check_outside
        mov eax, [entry_esp]
        dec eax                         ; the first byte pushed
        call check_outside
        mov esi, s_outside
        call puts

        ; The image as linked, the bss zeroed (below our own stack's page).
        cmp dword [canary], 0x6D626C6F
        jne .bad_image
        mov edi, bss_start
        mov ecx, BSS_END - 0x1000
        sub ecx, edi
        shr ecx, 2
        xor eax, eax
        repe scasd
        jne .bad_image
        mov esi, s_intact
        call puts

        mov esi, s_cmdline_is
        call puts
        mov esi, [ebp + 16]
        call puts
        mov esi, s_quote_nl
        call puts
        mov esi, s_passed
        call puts
        xor eax, eax
        jmp power_off
.bad_image:
        mov esi, s_badimage
        ; fall through

; fail: ESI = the message; prints it and powers off with status 1.
fail:
        call puts
        mov al, 1
        ; fall through

%include "Tests/guests/mbserial.inc"

; check_outside: EAX must lie outside [LOAD_ADDR, BSS_END), and in the
; memory map's RAM (below 0x9F000 or from 1 MiB), not in page 0.
check_outside:
        cmp eax, 0x1000
        jb .bad
        cmp eax, LOAD_ADDR
        jb .low
        cmp eax, BSS_END
        jb .bad
.low:   cmp eax, 0x9F000
        jb .ok
        cmp eax, 0x100000
        jb .bad
.ok:    ret
.bad:   push eax
        mov esi, s_inside
        call puts
        pop eax
        call puthex32
        call newline
        mov al, 1
        jmp power_off

s_magic:        db "mblow: magic ok", 10, 0
s_badmagic:     db "mblow: FAIL: EAX is not 0x2BADB002", 10, 0
s_info:         db "mblow: info ", 0
s_mmap:         db " mmap ", 0
s_cmdline:      db " cmdline ", 0
s_mods:         db " mods ", 0
s_name:         db " name ", 0
s_esp:          db " esp ", 0
s_inside:       db "mblow: FAIL: a loader structure inside the image or outside RAM: ", 0
s_outside:      db "mblow: structures outside the image", 10, 0
s_badimage:     db "mblow: FAIL: image corrupted or bss not zero", 10, 0
s_intact:       db "mblow: image intact, bss zero", 10, 0
s_cmdline_is:   db "mblow: cmdline '", 0
s_quote_nl:     db "'", 10, 0
s_passed:       db "mblow: all checks passed", 10, 0
canary:         dd 0x6D626C6F
align 4
image_end:

; The bss (not in the file): from image_end to BSS_END.
absolute image_end
entry_esp:      resd 1
bss_start:
