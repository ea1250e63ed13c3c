// What an application processor runs once Boot/ap.asm has it in long mode on
// its own GDT, TSS and stack: its VMX capabilities against the boot CPU's,
// VMXON on the region the boot CPU reserved, the check-in, then its vCPU of
// the passthrough guest (GuestCPUs.swift), or for an isolated guest it parks
// in VMX root mode (INIT is blocked there: SDM Vol. 3C 24.8 "Restrictions on
// VMX Operation"). Until its guest stops, the boot CPU reports for it.
import X86Arch
import VMX
import X86VCPU
import HostBoot

@_extern(c, "mem_load32") func mem_load32(_ pointer: UnsafeRawPointer) -> UInt32
@_extern(c, "mem_store32") func mem_store32(_ pointer: UnsafeMutableRawPointer, _ value: UInt32)
@_extern(c, "cpu_pause") func cpu_pause()
@_extern(c, "ap_trampoline_address") func ap_trampoline_address() -> UInt64
@_extern(c, "ap_trampoline_size") func ap_trampoline_size() -> UInt64
@_extern(c, "ap_kernel_entry_address") func ap_kernel_entry_address() -> UInt64

/// The boot CPU's capabilities and CR4, written before any AP starts.
nonisolated(unsafe) var bootCPUCapabilities: VMXCapabilities? = nil
nonisolated(unsafe) var bootCPUCR4: UInt64 = 0

/// The frame the boot CPU reserved for an AP's VMXON region: `VMXRoot`
/// allocates through a FrameAllocator, and the kernel's is not thread-safe.
/// It hands out its one frame; freeing is a no-op (the AP never leaves VMX root mode).
struct ReservedFrame: FrameAllocator {
    let address: UInt64
    func allocateFrame() -> UInt64? { address }
    func allocateContiguous(count: Int, alignment: UInt64) -> UInt64? { nil }
    func freeFrame(_ address: UInt64) {}
    func freeContiguous(_ address: UInt64, count: Int) {}
    func pointer(to address: UInt64) -> UnsafeMutableRawPointer { KernelFrames().pointer(to: address) }
}

/// An AP's control block and the room for its VMX error, in its tables frame.
struct APRecord {
    static let errorOffset = PerCPUTables.controlBlockOffset + 256
    let tables: UInt64
    var block: UnsafeMutablePointer<APControlBlock> {
        KernelFrames().pointer(to: tables + UInt64(PerCPUTables.controlBlockOffset)).assumingMemoryBound(to: APControlBlock.self)
    }
    var error: UnsafeMutablePointer<VMXError?> {
        KernelFrames().pointer(to: tables + UInt64(Self.errorOffset)).assumingMemoryBound(to: VMXError?.self)
    }
    var statePointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(block) }

    /// The fields first, then the state (the boot CPU reads the fields once it sees the state).
    func checkIn(_ state: APControlBlock.State, _ failure: APControlBlock.Failure = .none, detail: UInt64 = 0) {
        block.pointee.failure = failure.rawValue
        block.pointee.detail = detail
        mem_store32(statePointer, state.rawValue)
    }
}

@c(apMain)
func apMain(_ tables: UInt64, _ entryTSC: UInt64) {
    let record = APRecord(tables: tables)
    record.block.pointee.entryTSC = entryTSC
    if bootCPUCR4 & CR4Bits.osxsave.rawValue != 0 {
        cpu_write_cr4(cpu_read_cr4() | CR4Bits.osxsave.rawValue)
    }
    let hw = Hardware()
    guard let boot = bootCPUCapabilities else { record.checkIn(.failed, .vmxon); park() }
    do throws(VMXError) {
        let caps = try VMXCapabilities.read(from: hw)
        if let difference = VMXCapabilityDifference(caps, boot) {
            record.checkIn(.failed, .capabilityMismatch, detail: UInt64(difference.rawValue))
            park()
        }
        let root = try VMXRoot(enabling: hw, allocator: ReservedFrame(address: record.block.pointee.vmxonRegion))
        record.block.pointee.vmxRootTSC = cpu_rdtsc()
        record.checkIn(.vmxRoot)
        // The passthrough guest gets this CPU too; an isolated guest has one vCPU.
        if let guest = sharedGuest { runAPVCPU(root, guest, record) }
        parkInVMXRoot(root)
    } catch {
        record.error.pointee = error
        record.checkIn(.failed, .vmxon)
        park()
    }
}

/// Keeps the VMXON region's owner alive while the AP halts.
func parkInVMXRoot(_ root: consuming VMXRoot<ReservedFrame>) -> Never { park() }

/// cli; hlt forever. An NMI wakes it and returns to the hlt.
func park() -> Never {
    cpu_halt_forever()
    while true {}
}
