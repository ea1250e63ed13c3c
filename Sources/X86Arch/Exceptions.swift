// Exception vectors. SDM Vol. 3A 7.2 "Exception and Interrupt Vectors".

/// The architecturally defined exception vectors (0-31 are reserved for
/// exceptions; vectors the SDM leaves reserved have no case).
// SDM 7.2 "Exception and Interrupt Vectors", Table "Protected-Mode Exceptions and Interrupts"
public enum ExceptionVector: UInt8, Sendable {
    case divideError = 0
    case debug = 1
    case nmi = 2
    case breakpoint = 3
    case overflow = 4
    case boundRangeExceeded = 5
    case invalidOpcode = 6
    case deviceNotAvailable = 7
    case doubleFault = 8
    case coprocessorSegmentOverrun = 9
    case invalidTSS = 10
    case segmentNotPresent = 11
    case stackSegmentFault = 12
    case generalProtection = 13
    case pageFault = 14
    case x87FloatingPoint = 16
    case alignmentCheck = 17
    case machineCheck = 18
    case simdFloatingPoint = 19
    case virtualization = 20
    case controlProtection = 21

    /// The SDM mnemonic, e.g. "#GP".
    public var mnemonic: StaticString {
        switch self {
        case .divideError: return "#DE"
        case .debug: return "#DB"
        case .nmi: return "NMI"
        case .breakpoint: return "#BP"
        case .overflow: return "#OF"
        case .boundRangeExceeded: return "#BR"
        case .invalidOpcode: return "#UD"
        case .deviceNotAvailable: return "#NM"
        case .doubleFault: return "#DF"
        case .coprocessorSegmentOverrun: return "CSO"
        case .invalidTSS: return "#TS"
        case .segmentNotPresent: return "#NP"
        case .stackSegmentFault: return "#SS"
        case .generalProtection: return "#GP"
        case .pageFault: return "#PF"
        case .x87FloatingPoint: return "#MF"
        case .alignmentCheck: return "#AC"
        case .machineCheck: return "#MC"
        case .simdFloatingPoint: return "#XM"
        case .virtualization: return "#VE"
        case .controlProtection: return "#CP"
        }
    }
}
