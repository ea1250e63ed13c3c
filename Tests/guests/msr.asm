; msr: RDMSR/WRMSR from a real-mode guest (CPL 0). The MSRs the host depends
; on (LSTAR, STAR, KERNEL_GS_BASE, FMASK) must keep the guest's values; the
; bases (FS_BASE, GS_BASE) too; the TSC must advance; a non-canonical LSTAR
; and an MSR that does not exist must raise #GP in the guest (IVT entry 13,
; fault16 resumes after the 2-byte RDMSR/WRMSR).
%define GUEST "msr"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
        GUEST_ENTRY
        call init_ivt
        SET_IVT 13, fault16

        mov si, switched
        call write_read
        REPORT e, s_sw_ok, s_sw_bad
        mov si, bases
        call write_read
        REPORT e, s_fs_ok, s_fs_bad

        mov ecx, 0x10                   ; IA32_TIME_STAMP_COUNTER
        rdmsr
        mov [tsc], eax
        mov [tsc + 4], edx
        rdmsr
        sub eax, [tsc]
        sbb edx, [tsc + 4]
        jc .tsc
        or eax, edx                     ; above: later and not equal
.tsc:
        REPORT a, s_tsc_ok, s_tsc_bad

        mov ecx, 0xC0000082             ; IA32_LSTAR := non-canonical
        mov edx, 0x00008000
        xor eax, eax
        TRY wrmsr
        cmp byte [faulted], 1
        jne .canon
        mov si, switched                ; and LSTAR kept its value
        call read_compare
.canon:
        REPORT e, s_nc_ok, s_nc_bad

        mov ecx, 0x12345678             ; no such MSR
        TRY rdmsr
        cmp byte [faulted], 1
        REPORT e, s_rd_ok, s_rd_bad
        mov ecx, 0x12345678
        xor eax, eax
        xor edx, edx
        TRY wrmsr
        cmp byte [faulted], 1
        REPORT e, s_wr_ok, s_wr_bad
        FINISH

; write_read: si = table of (MSR, low, high) ending with MSR 0. Writes all,
; then reads all back: ZF set if every value came back.
write_read:
        push si
.write:
        mov ecx, [si]
        jecxz .written
        mov eax, [si + 4]
        mov edx, [si + 8]
        wrmsr
        add si, 12
        jmp .write
.written:
        pop si
read_compare:
        mov ecx, [si]
        jecxz .same                     ; ZF is set: the end of the table
        rdmsr
        cmp eax, [si + 4]
        jne .ret
        cmp edx, [si + 8]
        jne .ret
        add si, 12
        jmp read_compare
.same:
        cmp ecx, ecx
.ret:
        ret
        BOOT_SIGNATURE

        LIB16
        align 4
switched:
        dd 0xC0000082, 0x12345670, 0xFFFF8000   ; IA32_LSTAR
        dd 0xC0000081, 0x5EC0ABCD, 0x00230010   ; IA32_STAR
        dd 0xC0000102, 0x0BADF000, 0xFFFF8880   ; IA32_KERNEL_GS_BASE
        dd 0xC0000084, 0x00047700, 0x00000000   ; IA32_FMASK
        dd 0
bases:
        dd 0xC0000100, 0x56789000, 0x00001234   ; IA32_FS_BASE
        dd 0xC0000101, 0x9ABCD000, 0x00004321   ; IA32_GS_BASE
        dd 0
tsc:    dd 0, 0
s_sw_ok:    db "msr: switched MSRs read back", 10, 0
s_sw_bad:   db "msr: FAIL LSTAR, STAR, KERNEL_GS_BASE or FMASK read back wrong", 10, 0
s_fs_ok:    db "msr: FS_BASE read back", 10, 0
s_fs_bad:   db "msr: FAIL FS_BASE or GS_BASE read back wrong", 10, 0
s_tsc_ok:   db "msr: TSC advances", 10, 0
s_tsc_bad:  db "msr: FAIL TSC did not advance", 10, 0
s_nc_ok:    db "msr: #GP on non-canonical LSTAR, value kept", 10, 0
s_nc_bad:   db "msr: FAIL non-canonical LSTAR accepted or value lost", 10, 0
s_rd_ok:    db "msr: #GP on unknown MSR read", 10, 0
s_rd_bad:   db "msr: FAIL no #GP on unknown MSR read", 10, 0
s_wr_ok:    db "msr: #GP on unknown MSR write", 10, 0
s_wr_bad:   db "msr: FAIL no #GP on unknown MSR write", 10, 0
