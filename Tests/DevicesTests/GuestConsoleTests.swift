import Testing
import Devices

@Suite struct GuestConsoleTests {
    func lines(_ bytes: [UInt8], flush: Bool = false) -> [String] {
        var console = GuestConsole()
        var out: [String] = []
        let emit: (UnsafeRawBufferPointer) -> Void = { out.append(String(decoding: $0, as: UTF8.self)) }
        for b in bytes { console.append(b, emit: emit) }
        if flush { console.flush(emit: emit) }
        return out
    }

    @Test func linesEndAtNewlineAndCRIsDropped() {
        #expect(lines(Array("one\r\ntwo\nthree".utf8)) == ["one", "two"])
        #expect(lines(Array("three".utf8), flush: true) == ["three"])
    }

    @Test func controlBytesEscapesAndNonASCIIBecomeVisible() {
        // NUL would end a C string, ESC [2K would erase the prefix, 0x08 backs over it.
        let hostile: [UInt8] = [0x41, 0x00, 0x42, 0x1B, 0x5B, 0x32, 0x4B, 0x08, 0x7F, 0xC3, 0xA9, 0x09, 0x43, 0x0A]
        #expect(lines(hostile) == ["A?B?[2K????\tC"])
    }

    @Test func aGuestCannotStartAHostLineWithoutANewline() {
        // Every emitted line is the guest's own: the kernel prefixes each one.
        let fake = Array("x\rpower off: status 0\n".utf8)
        #expect(lines(fake) == ["xpower off: status 0"])
    }

    @Test func aFullLineIsEmittedAtCapacity() {
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: GuestConsole.lineCapacity + 5)
        let out = lines(long, flush: true)
        #expect(out.map(\.count) == [GuestConsole.lineCapacity, 5])
    }
}
