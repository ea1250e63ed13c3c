// The memory type the MTRRs give each physical address, from the raw MSR
// values. SDM 12.11 "Memory Type Range Registers (MTRRs)"; the rules are
// those of 12.11.4.1 "MTRR Precedences".

import X86Arch

/// One variable-range pair: IA32_MTRR_PHYSBASEn and IA32_MTRR_PHYSMASKn.
@frozen
public struct MTRRVariableRange: Equatable, Sendable {
    public var base: UInt64
    public var mask: UInt64
    public init(base: UInt64, mask: UInt64) {
        self.base = base
        self.mask = mask
    }
    public var isValid: Bool { mask & MTRRVariableRangeFormat.validBit != 0 }
    public var rawType: UInt8 { UInt8(truncatingIfNeeded: base & MTRRVariableRangeFormat.typeMask) }
}

/// The processor's MTRR settings, as read from the MSRs.
public struct MTRRState: Sendable {
    /// Variable pairs kept; a CPU reporting more has its extra pairs ignored
    /// (real parts have 8 to 10).
    public static let variableCapacity = 32

    public let capability: MTRRCapability
    public let defaultType: MTRRDefType
    public let fixed: [11 of UInt64]
    public let variable: [32 of MTRRVariableRange]
    /// min(MTRRCAP.VCNT, variableCapacity).
    public let variableCount: Int
    /// MAXPHYADDR, clamped to 32...52: address bits the masks cover.
    public let physicalAddressBits: Int

    /// No MTRRs (CPUID.01H:EDX.MTRR = 0, or an emulator that reports none):
    /// everything is UC by the precedence rules; callers choose a fallback.
    public static let absent = MTRRState(capability: 0, defaultType: 0, fixed: .init(repeating: 0),
                                         variable: .init(repeating: MTRRVariableRange(base: 0, mask: 0)),
                                         physicalAddressBits: 36)

    public init(capability: UInt64, defaultType: UInt64, fixed: [11 of UInt64],
                variable: [32 of MTRRVariableRange], physicalAddressBits: Int) {
        self.capability = MTRRCapability(rawValue: capability)
        self.defaultType = MTRRDefType(rawValue: defaultType)
        self.fixed = fixed
        self.variable = variable
        self.variableCount = min(self.capability.variableCount, Self.variableCapacity)
        self.physicalAddressBits = min(max(physicalAddressBits, 32), 52)
    }

    /// Reads the registers MTRRCAP says exist: the fixed ranges only when
    /// MTRRCAP.FIX and DEF_TYPE.FE are set, and VCNT variable pairs.
    public static func read(_ rdmsr: (UInt32) -> UInt64, physicalAddressBits: Int) -> MTRRState {
        let capability = rdmsr(MSR.ia32MTRRCap.address)
        let defaultType = rdmsr(MSR.ia32MTRRDefType.address)
        var fixed: [11 of UInt64] = .init(repeating: 0)
        if MTRRCapability(rawValue: capability).hasFixedRanges && defaultType & MTRRDefType.fixedEnableBit != 0 {
            for i in 0..<11 { fixed[i] = rdmsr(MTRRFixedRanges.msrs[i]) }
        }
        var variable: [32 of MTRRVariableRange] = .init(repeating: MTRRVariableRange(base: 0, mask: 0))
        let count = min(MTRRCapability(rawValue: capability).variableCount, variableCapacity)
        for n in 0..<count {
            let msr = MTRRVariableRangeFormat.baseMSR(n)
            variable[n] = MTRRVariableRange(base: rdmsr(msr), mask: rdmsr(msr + 1))
        }
        return MTRRState(capability: capability, defaultType: defaultType, fixed: fixed, variable: variable,
                         physicalAddressBits: physicalAddressBits)
    }

    /// 2^MAXPHYADDR: no address at or above it exists.
    public var addressLimit: UInt64 { 1 << UInt64(physicalAddressBits) }

    /// DEF_TYPE.E: with it clear, all memory is UC.
    public var isEnabled: Bool { defaultType.rawValue & MTRRDefType.enableBit != 0 }

    /// The fixed ranges decide below 1 MiB: E, FE and MTRRCAP.FIX all set.
    public var fixedRangesActive: Bool {
        isEnabled && capability.hasFixedRanges && defaultType.rawValue & MTRRDefType.fixedEnableBit != 0
    }

    /// The memory type at `address`. SDM 12.11.4.1 "MTRR Precedences".
    /// A reserved type value (2, 3, 7 or above; WRMSR refuses them) reads as UC.
    public func type(at address: UInt64) -> MemoryType {
        guard isEnabled else { return .uncacheable }
        if address < MTRRFixedRanges.end && fixedRangesActive {
            let at = MTRRFixedRanges.locate(address)
            return Self.decode(UInt8(truncatingIfNeeded: fixed[at.register] >> UInt64(8 * at.byte)))
        }
        var matched: MemoryType? = nil
        let ranges = variable.span
        for n in 0..<variableCount where ranges[n].isValid && matches(ranges[n], address) {
            let type = Self.decode(ranges[n].rawType)
            guard let previous = matched, previous != type else { matched = type; continue }
            // Overlaps: UC wins; WT and WB give WT; anything else is undefined
            // by the SDM, and UC is the safe reading.
            if previous == .uncacheable || type == .uncacheable { return .uncacheable }
            if (previous == .writeThrough && type == .writeBack) || (previous == .writeBack && type == .writeThrough) {
                matched = .writeThrough
            } else {
                return .uncacheable
            }
        }
        return matched ?? Self.decode(UInt8(truncatingIfNeeded: defaultType.rawValue & MTRRDefType.typeMask))
    }

    /// The one type of every address in `range`, or nil if it is mixed (or empty).
    public func uniformType(in range: Range<UInt64>) -> MemoryType? {
        guard !range.isEmpty else { return nil }
        let type = type(at: range.lowerBound)
        var at = range.lowerBound
        while true {
            at = nextBoundary(after: at)
            guard at < range.upperBound else { return type }
            guard self.type(at: at) == type else { return nil }
        }
    }

    /// The smallest address above `address` where the type may differ from
    /// the type at `address`: every type is constant on [address, result).
    /// `addressLimit` if nothing changes below it; UInt64.max when `address`
    /// is already at or above the limit. Always 4 KiB-aligned otherwise.
    public func nextBoundary(after address: UInt64) -> UInt64 {
        let limit = addressLimit
        guard address < limit else { return UInt64.max }
        guard isEnabled else { return limit }
        if address < MTRRFixedRanges.end && fixedRangesActive {
            let size = MTRRFixedRanges.locate(address).size
            return address / size * size + size
        }
        var next = limit
        // Below 1 MiB with fixed ranges off, the variable ranges decide there too.
        let ranges = variable.span
        for n in 0..<variableCount where ranges[n].isValid {
            next = min(next, nextChange(ranges[n], after: address))
        }
        return next
    }

    /// The end of the highest address a valid variable range matches (0 if
    /// none is valid or the MTRRs are off).
    public var highestVariableRangeEnd: UInt64 {
        guard isEnabled else { return 0 }
        var highest: UInt64 = 0
        let ranges = variable.span
        for n in 0..<variableCount where ranges[n].isValid {
            let mask = addressMask(ranges[n])
            let top = (ranges[n].base & mask) | (~mask & (addressLimit - 1))
            highest = max(highest, top + 1)
        }
        return highest
    }

    // MARK: Variable-range arithmetic

    /// PHYSMASK bits MAXPHYADDR-1:12, the address bits a range compares.
    // SDM 12.11.2.3 "Variable Range MTRRs": match iff addr & mask == base & mask
    func addressMask(_ range: MTRRVariableRange) -> UInt64 {
        range.mask & MTRRVariableRangeFormat.addressMask & (addressLimit - 1)
    }

    func matches(_ range: MTRRVariableRange, _ address: UInt64) -> Bool {
        let mask = addressMask(range)
        return address & mask == range.base & mask
    }

    /// The smallest address above `address` where `range` stops or starts
    /// matching; `addressLimit` if none. Handles non-contiguous masks (legal,
    /// if discouraged) exactly.
    func nextChange(_ range: MTRRVariableRange, after address: UInt64) -> UInt64 {
        let limit = addressLimit
        let mask = addressMask(range)
        guard mask != 0 else { return limit } // matches everything
        if matches(range, address) {
            // Constant on blocks of the lowest mask bit's size; the next block
            // flips that bit, so it no longer matches.
            let block = mask & (~mask &+ 1)
            return min(address / block * block + block, limit)
        }
        return nextMatch(range, atOrAbove: address + 1) ?? limit
    }

    /// The smallest x >= `start`, below the limit, with x & mask == base & mask.
    func nextMatch(_ range: MTRRVariableRange, atOrAbove start: UInt64) -> UInt64? {
        let limit = addressLimit
        guard start < limit else { return nil }
        let mask = addressMask(range)
        let target = range.base & mask
        // Walk from the top bit keeping x equal to start; at the first masked
        // bit where they differ: if target has 1, x > start with the rest
        // minimal; if 0, raise the lowest free bit above where start has 0.
        var raise: Int? = nil
        var bit = physicalAddressBits - 1
        while bit >= 0 {
            let b = UInt64(1) << UInt64(bit)
            if mask & b == 0 {
                if start & b == 0 { raise = bit }
            } else if (start ^ target) & b != 0 {
                if target & b != 0 { return (start & ~(b - 1) & ~b) | b | (target & (b - 1)) }
                guard let r = raise else { return nil }
                let rb = UInt64(1) << UInt64(r)
                return (start & ~(rb - 1)) | rb | (target & (rb - 1))
            }
            bit -= 1
        }
        return start
    }

    static func decode(_ raw: UInt8) -> MemoryType {
        guard let type = MemoryType(rawValue: raw), type != .uncached else { return .uncacheable }
        return type
    }
}
