// The guest's console output as the hypervisor prints it: whole lines, each
// under the "[guest] " prefix the kernel adds, with every byte that could
// end, hide or restyle a line (NUL, CR, escape sequences, other control
// characters, bytes above ASCII) shown as '?'. A guest therefore cannot
// print a line that reads as the hypervisor's own.

public struct GuestConsole: Sendable {
    public static let lineCapacity = 200
    var line = InlineArray<200, UInt8>(repeating: 0)
    public private(set) var count = 0

    public init() {}

    /// The byte as printed: printable ASCII and tab as they are, '?' otherwise.
    public static func visible(_ byte: UInt8) -> UInt8 {
        (byte >= 0x20 && byte < 0x7F) || byte == 0x09 ? byte : UInt8(ascii: "?")
    }

    /// Appends `byte`; calls `emit` with a finished line (at a newline, or
    /// when the line is full). CR is dropped, as a terminal's CR LF would be.
    public mutating func append(_ byte: UInt8, emit: (UnsafeRawBufferPointer) -> Void) {
        if byte == 0x0A { flush(emit: emit); return }
        if byte == 0x0D { return }
        line[count] = Self.visible(byte)
        count += 1
        if count == Self.lineCapacity { flush(emit: emit) }
    }

    /// Emits the pending partial line, if any.
    public mutating func flush(emit: (UnsafeRawBufferPointer) -> Void) {
        guard count > 0 else { return }
        let length = count
        count = 0
        withUnsafeBytes(of: &line) { all in emit(UnsafeRawBufferPointer(rebasing: all[0..<length])) }
    }
}
