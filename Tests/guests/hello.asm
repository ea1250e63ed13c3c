; hello: the smallest guest. Real mode, one line on COM1, power off with 0.
%define GUEST "hello"
%include "Tests/guests/lib.inc"           ; assemble from the repository root
        GUEST_ENTRY
        PRINT s_hello
        EXIT 0

        LIB16
s_hello: db "Hello from a real-mode guest", 10, 0
        BOOT_SIGNATURE
