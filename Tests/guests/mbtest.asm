; mbtest: a multiboot (v1) test kernel. It prints what its loader handed it
; and powers off:
;   mbtest: magic ok
;   mbtest: mem_lower=<n>K mem_upper=<n>K
;   mbtest: mmap <base> <length> <type>            (hex, one per entry)
;   mbtest: cmdline '<kernel command line>'
;   mbtest: modules <n>
;   mbtest: module 0 size=<n> string '<module string>'
;   mbtest: module 0 '<first 16 bytes, non-printables as .>'
;   mbtest: all checks passed                      (out 0xF4 <- 0)
; or a line with FAIL (out 0xF4 <- 1) when EAX is not 0x2BADB002.
; Output goes to COM1 (0x3F8, polling the LSR); the UART is left as the loader
; set it up (GRUB's `serial`, or the hypervisor's COM1).
;
; The ELF build (what a loader should be given; load address 1 MiB):
;   nasm -f elf32 -w+all -w+error -o build/guests/mbtest.o Tests/guests/mbtest.asm
;   ld -m elf_i386 -n -nostdlib -static -T Tests/guests/mbtest.ld -o build/guests/mbtest.elf build/guests/mbtest.o
; It also assembles with -f bin (as the Makefile's test-guest rule does for
; every Tests/guests/*.asm): a flat image at 1 MiB whose header sets flag 16
; and the address fields (the "a.out kludge"), also loadable by `multiboot`.

MB_MAGIC        equ 0x1BADB002
MB_BOOT_MAGIC   equ 0x2BADB002
LOAD_ADDR       equ 0x100000

%ifidn __OUTPUT_FORMAT__, bin
MB_FLAGS        equ (1 << 0) | (1 << 1) | (1 << 16)  ; page-align modules, memory info, address fields
        org LOAD_ADDR
%else
MB_FLAGS        equ (1 << 0) | (1 << 1)              ; page-align modules, memory info
%endif

bits 32

; The header leads .text, which the linker script (and nasm's bin format)
; places first: it must lie 4-aligned in the first 8 KiB of the file.
section .text
align 4
mb_header:
        dd MB_MAGIC
        dd MB_FLAGS
        dd -(MB_MAGIC + MB_FLAGS)
%ifidn __OUTPUT_FORMAT__, bin
        dd mb_header                    ; header_addr
        dd LOAD_ADDR                    ; load_addr
        dd image_end                    ; load_end_addr
        dd bss_end                      ; bss_end_addr
        dd _start                       ; entry_addr
%endif

global _start
_start:
        cli
        cld
        mov esp, stack_top
        mov ebp, ebx                    ; EBP = the multiboot information
        cmp eax, MB_BOOT_MAGIC
        je .magic_ok
        mov esi, s_badmagic
        call puts
        call puthex32                   ; EAX: what the loader passed
        call newline
        mov al, 1
        jmp power_off
.magic_ok:
        mov esi, s_magic
        call puts

        ; flags bit 0: mem_lower, mem_upper (KiB)
        test dword [ebp + 0], 1 << 0
        jz .no_mem
        mov esi, s_memlower
        call puts
        mov eax, [ebp + 4]
        call putdec
        mov esi, s_memupper
        call puts
        mov eax, [ebp + 8]
        call putdec
        mov al, 'K'
        call putc
        call newline
        jmp .mmap
.no_mem:
        mov esi, s_nomem
        call puts

        ; flags bit 6: mmap_length, mmap_addr; each entry is size (not
        ; counting itself), base (64), length (64), type (32).
.mmap:
        test dword [ebp + 0], 1 << 6
        jz .no_mmap
        mov edi, [ebp + 48]             ; entry
        mov ecx, edi
        add ecx, [ebp + 44]             ; end
.mmap_next:
        cmp edi, ecx
        jae .cmdline
        mov esi, s_mmap
        call puts
        mov eax, [edi + 8]
        call puthex32
        mov eax, [edi + 4]
        call puthex32
        mov al, ' '
        call putc
        mov eax, [edi + 16]
        call puthex32
        mov eax, [edi + 12]
        call puthex32
        mov al, ' '
        call putc
        mov eax, [edi + 20]
        call puthex32
        call newline
        mov eax, [edi]
        lea edi, [edi + eax + 4]
        jmp .mmap_next
.no_mmap:
        mov esi, s_nommap
        call puts

        ; flags bit 2: cmdline
.cmdline:
        mov esi, s_cmdline
        call puts
        test dword [ebp + 0], 1 << 2
        jz .cmdline_end
        mov esi, [ebp + 16]
        call puts
.cmdline_end:
        mov esi, s_quote_nl
        call puts

        ; flags bit 3: mods_count, mods_addr; each module is mod_start,
        ; mod_end, string, reserved.
        mov esi, s_modules
        call puts
        xor eax, eax
        test dword [ebp + 0], 1 << 3
        jz .mods_count
        mov eax, [ebp + 20]
.mods_count:
        mov ebx, eax
        call putdec
        call newline
        test ebx, ebx
        jz .done
        mov edi, [ebp + 24]             ; module 0
        mov esi, s_mod0size
        call puts
        mov eax, [edi + 4]
        sub eax, [edi + 0]
        mov ebx, eax                    ; EBX = size
        call putdec
        mov esi, s_mod0string
        call puts
        mov esi, [edi + 8]
        test esi, esi
        jz .mod0_nostring
        call puts
.mod0_nostring:
        mov esi, s_quote_nl
        call puts
        mov esi, s_mod0
        call puts
        mov esi, [edi + 0]
        mov ecx, 16
        cmp ebx, ecx
        jae .mod0_bytes
        mov ecx, ebx
.mod0_bytes:
        jecxz .mod0_end
.mod0_byte:
        lodsb
        cmp al, 0x20
        jb .mod0_dot
        cmp al, 0x7E
        jbe .mod0_put
.mod0_dot:
        mov al, '.'
.mod0_put:
        call putc
        loop .mod0_byte
.mod0_end:
        mov esi, s_quote_nl
        call puts

.done:
        mov esi, s_passed
        call puts
        xor eax, eax
        ; fall through

%include "Tests/guests/mbserial.inc"

; putdec: EAX as unsigned decimal.
putdec:
        push eax
        push ebx
        push ecx
        push edx
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
        pop edx
        pop ecx
        pop ebx
        pop eax
        ret

section .data
s_magic:        db "mbtest: magic ok", 10, 0
s_badmagic:     db "mbtest: FAIL: EAX is not 0x2BADB002: ", 0
s_memlower:     db "mbtest: mem_lower=", 0
s_memupper:     db "K mem_upper=", 0
s_nomem:        db "mbtest: no memory information (flag 0 clear)", 10, 0
s_mmap:         db "mbtest: mmap ", 0
s_nommap:       db "mbtest: no memory map (flag 6 clear)", 10, 0
s_cmdline:      db "mbtest: cmdline '", 0
s_quote_nl:     db "'", 10, 0
s_modules:      db "mbtest: modules ", 0
s_mod0size:     db "mbtest: module 0 size=", 0
s_mod0string:   db " string '", 0
s_mod0:         db "mbtest: module 0 '", 0
s_passed:       db "mbtest: all checks passed", 10, 0
%ifidn __OUTPUT_FORMAT__, bin
image_end:
%endif

section .bss
align 16
stack:          resb 4096
stack_top:
%ifidn __OUTPUT_FORMAT__, bin
bss_end:
%endif

%ifidn __OUTPUT_FORMAT__, elf32
section .note.GNU-stack noalloc noexec nowrite progbits
%endif
