# Build, boot and test the hypervisor. `make run` and `make test` are the two
# entry points; both install the Debian packages they need.

BUILD      := build
SWIFTC     ?= swiftc
ENGINE     ?= auto
# The library's modules in dependency order: Package.swift's `layers` table is
# the one list; every folder of Sources/ must be in it.
MODULES    := $(shell sed -n 's/^ *("\([A-Za-z0-9]*\)", \[.*\]),.*/\1/p' Package.swift)
MODULE_DIRS := $(notdir $(shell find Sources -mindepth 1 -maxdepth 1 -type d))
$(foreach d,$(MODULE_DIRS),$(if $(filter $(d),$(MODULES)),,$(error Sources/$(d) is not in Package.swift's layers)))
module_src  = $(sort $(shell find Sources/$(1) -name '*.swift'))
LIB_SRC    := $(foreach m,$(MODULES),$(call module_src,$(m)))
MODULE_OBJ := $(foreach m,$(MODULES),$(BUILD)/modules/$(m).o)
KERNEL_SRC := $(sort $(shell find Kernel -name '*.swift'))
ASM_SRC    := $(sort $(shell find Boot -name '*.asm'))
ASM_OBJ    := $(patsubst Boot/%.asm,$(BUILD)/boot/%.o,$(ASM_SRC))
KERNEL     := $(BUILD)/kernel.elf
GUESTS     := $(patsubst Tests/guests/%.asm,$(BUILD)/guests/%.bin,$(wildcard Tests/guests/*.asm))
ISO        := $(BUILD)/hypervisor.iso

BUILD_PKGS := nasm binutils grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools
QEMU_PKGS  := qemu-system-x86 ovmf
BOCHS_PKGS := bochs bochsbios vgabios bochs-term

# Embedded Swift for a freestanding x86-64 kernel (see shared PLATFORM-NOTES):
# no red zone (interrupts), no stack protector, no heap at all.
EMBEDDED := -target x86_64-unknown-none-elf -swift-version 6 \
    -enable-experimental-feature Embedded -enable-experimental-feature Extern \
    -wmo -parse-as-library -Osize -Xcc -mno-red-zone -Xcc -mno-sse -Xcc -mno-mmx -Xcc -msoft-float \
    -Xfrontend -disable-stack-protector -Xfrontend -function-sections \
    -no-allocations -warnings-as-errors

# Keep built guests: they are prerequisites of the test ISOs.
.SECONDARY:

.PHONY: all kernel guests linux-assets iso run test unit-test embedded-check system-test debug bench bench-profile clean deps-build deps-qemu deps-bochs fuzz

all: kernel

deps-build:
	@tools/ensure-packages.sh $(BUILD_PKGS)
deps-qemu:
	@tools/ensure-packages.sh $(QEMU_PKGS)
deps-bochs:
	@tools/ensure-packages.sh $(BOCHS_PKGS)

kernel: $(KERNEL)

# The library alone, in Embedded mode: the check that it stays inside the subset.
embedded-check: $(MODULE_OBJ)

# One rule per module; each depends on the modules listed before it, and
# Embedded Swift serializes its generics into the .swiftmodule for the next.
define module_rule
$(BUILD)/modules/$(1).o: $(call module_src,$(1)) $(2) Makefile Package.swift
	@mkdir -p $(BUILD)/modules
	@echo "swiftc (Embedded) $(1)"
	@$(SWIFTC) $(EMBEDDED) -module-name $(1) -package-name X86VCPU -I $(BUILD)/modules -emit-module \
	    -emit-module-path $(BUILD)/modules/$(1).swiftmodule -c $(call module_src,$(1)) -o $$@
	@touch $$@  # swiftc keeps an unchanged .o's time; the module may still have changed
endef
# The modules listed before $(1) in $(2).
modules_before = $(if $(filter $(1),$(firstword $(2))),,$(firstword $(2)) $(call modules_before,$(1),$(wordlist 2,$(words $(2)),$(2))))
$(foreach m,$(MODULES),$(eval $(call module_rule,$(m),$(patsubst %,$(BUILD)/modules/%.o,$(call modules_before,$(m),$(MODULES))))))

# Embedded Swift specializes the library's generics here, from the modules.
$(BUILD)/Kernel.o: $(KERNEL_SRC) $(LIB_SRC) $(MODULE_OBJ)
	@echo "swiftc (Embedded) Kernel"
	@$(SWIFTC) $(EMBEDDED) -module-name Kernel -I $(BUILD)/modules -c $(KERNEL_SRC) -o $@

$(BUILD)/boot/%.o: Boot/%.asm | deps-build
	@mkdir -p $(dir $@)
	nasm -f elf64 -w+all -w-unknown-warning -w+error -o $@ $<

$(KERNEL): $(ASM_OBJ) $(BUILD)/Kernel.o $(MODULE_OBJ) linker.ld
	ld -n -nostdlib -static --gc-sections -z noexecstack -T linker.ld -o $@ \
	    $(ASM_OBJ) $(BUILD)/Kernel.o $(MODULE_OBJ)
	@grub-file --is-x86-multiboot2 $@ || { echo "$@ is not a multiboot2 kernel"; exit 1; }
	@size -A $@ | awk '$$1 ~ /^\.(text|rodata|data|bss)$$/ { printf "%s %s %d", sep, $$1, $$2; sep = "," } END { print " bytes" }' | sed 's/^/kernel:/'

# Test guests: boot-sector images (see Tests/guests/README.md).
guests: $(GUESTS)

$(BUILD)/guests/%.bin: Tests/guests/%.asm $(wildcard Tests/guests/*.inc) | deps-build
	@mkdir -p $(dir $@)
	nasm -f bin -w+all -w+error -I Tests/guests/ -o $@ $<

# The benchmark kernel: multiboot v1 (ELF32), runs bare and as the guest.
$(BUILD)/bench.elf: Tests/bench/bench.asm Tests/bench/bench.ld | deps-build
	@mkdir -p $(BUILD)/bench
	nasm -f elf32 -w+all -w-unknown-warning -w+error -o $(BUILD)/bench/bench.o $<
	ld -m elf_i386 --no-warn-rwx-segments -T Tests/bench/bench.ld -o $@ $(BUILD)/bench/bench.o

bench: $(KERNEL) $(BUILD)/bench.elf deps-bochs
	Tests/bench/run.sh $(KERNEL) $(BUILD)/bench.elf

# One exit's instructions per hypervisor function (OP: empty cpuid in out rdmsr wrmsr vmcall).
OP ?= cpuid
bench-profile: $(KERNEL) $(BUILD)/bench.elf deps-bochs
	Tests/bench/profile.sh $(KERNEL) $(BUILD)/bench.elf $(OP)

# The multiboot (v1) test guest, as an ELF.
$(BUILD)/guests/mbtest.elf: Tests/guests/mbtest.asm Tests/guests/mbtest.ld Tests/guests/mbserial.inc | deps-build
	@mkdir -p $(dir $@)
	nasm -f elf32 -w+all -w-unknown-warning -w+error -o $(BUILD)/guests/mbtest.o $<
	ld -m elf_i386 -n -nostdlib -static --no-warn-rwx-segments -T Tests/guests/mbtest.ld -o $@ $(BUILD)/guests/mbtest.o

# The Debian kernel and busybox initramfs for the Linux guest tests (downloaded
# with apt-get into build/linux; never committed).
LINUX := $(BUILD)/linux
linux-assets: $(LINUX)/initramfs.cpio.gz
$(LINUX)/initramfs.cpio.gz: tools/linux/fetch.sh tools/linux/mkinitramfs.sh tools/linux/init tools/linux/mkcpio.py \
		tools/linux/rdtsc.asm tools/linux/vecstate.asm
	tools/ensure-packages.sh xz-utils python3 binutils nasm
	tools/linux/fetch.sh $(LINUX)
	tools/linux/mkinitramfs.sh $(LINUX)

# The passthrough tests' known disk image and initramfs (ATA modules from the
# cached linux-image .deb, tools/linux/init-passthrough as /init).
.PHONY: linux-pt-assets
linux-pt-assets: $(LINUX)/initramfs-pt.cpio.gz $(LINUX)/disk.img
$(LINUX)/initramfs-pt.cpio.gz $(LINUX)/disk.img &: $(LINUX)/initramfs.cpio.gz tools/linux/mkinitramfs-pt.sh tools/linux/init-passthrough \
		tools/linux/mkdisk.py
	tools/linux/mkinitramfs-pt.sh $(LINUX)

iso: $(ISO)

$(ISO): $(KERNEL) $(GUESTS) tools/mkiso.sh
	tools/mkiso.sh $@ $(KERNEL) user

# GUEST=linux (default: the Debian kernel on the passthrough platform, with a
# disk, to a busybox shell), linux-bzimage, linux-isolated, menu, or a test
# guest's name (hello, timer, modeswitch, ...).
GUEST ?= linux
# The Linux guests need only tools/; the test guests are built on demand.
run: $(KERNEL) deps-qemu deps-bochs
	@case "$(GUEST)" in linux|linux-bzimage|linux-isolated) $(MAKE) --no-print-directory linux-assets linux-pt-assets ;; \
	    *) $(MAKE) --no-print-directory guests ;; esac
	@opts=$$(tools/guest-iso.sh $(GUEST) $(BUILD)/run-$(GUEST).iso $(KERNEL)) && \
	    tools/boot.sh --engine $(ENGINE) $$opts --interactive $(BUILD)/run-$(GUEST).iso

debug: $(ISO) deps-qemu
	@echo "QEMU waits for gdb on localhost:1234. In another terminal:"
	@echo "  gdb $(KERNEL) -ex 'target remote localhost:1234'"
	qemu-system-x86_64 -accel tcg -m 256 -cdrom $(ISO) -serial stdio -display none \
	    -no-reboot -monitor none -device isa-debug-exit,iobase=0xf4,iosize=0x04 -s -S

unit-test:
	Tests/scripts/unit-tests.sh

system-test: $(KERNEL) $(GUESTS) $(BUILD)/guests/mbtest.elf $(BUILD)/bench.elf linux-assets linux-pt-assets deps-qemu deps-bochs
	Tests/system/run.sh $(KERNEL)

test: deps-build unit-test embedded-check system-test

# The exit-handler fuzzer alone: N cases from SEED (random if unset), or one
# case with REPLAY=<case seed>; STRICT=1 fails on known findings too.
N ?= 1000000
SEED ?=
REPLAY ?=
STRICT ?=
fuzz:
	Tests/scripts/fuzz.sh "$(N)" "$(SEED)" "$(REPLAY)" "$(STRICT)"

clean:
	rm -rf $(BUILD)
