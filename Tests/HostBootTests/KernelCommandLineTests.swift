import Testing
import TestSupport
import X86Arch
import VMX
import X86VCPU
import HostBoot

/// Runs `body` over the bytes of `s`.
func withBytes<R>(_ s: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try Array(s.utf8).withUnsafeBytes(body)
}

/// The warnings of a parsed line as (kind, option, token) strings.
func warnings(_ c: KernelCommandLine) -> [(KernelCommandLine.Warning.Kind, String, String)] {
    (0..<c.warningCount).compactMap { i in c.warning(at: i).map { ($0.kind, text($0.option)!, text($0.token)!) } }
}

func size(_ s: String) -> UInt64? { withBytes(s) { KernelCommandLine.parseSize($0) } }

@Suite struct KernelCommandLineTests {
    @Test func defaultsWithoutACommandLine() {
        for c in [KernelCommandLine(), withBytes("") { KernelCommandLine($0) }, withBytes("   \t ") { KernelCommandLine($0) }] {
            #expect(c.logLevel == .info && c.guestMemory == 64 << 20 && c.serialPort == 0x3F8)
            #expect(c.testName == nil && !c.bench && !c.noscreen && !c.isTest("ud2"))
            #expect(c.warningCount == 0 && c.droppedWarnings == 0 && c.warning(at: 0) == nil)
        }
    }

    @Test func theIssueExampleLine() {
        withBytes("log=debug guest_mem=64M ud2 serial=0x3f8") { line in
            var seen: [String] = []
            let c = KernelCommandLine(line) { seen.append(text($0.token)!) }
            #expect(c.logLevel == .debug && c.guestMemory == 64 << 20 && c.serialPort == 0x3F8)
            #expect(warnings(c).map(\.0) == [.unknownOption] && warnings(c).map(\.2) == ["ud2"])
            #expect(seen == ["ud2"])
        }
    }

    @Test func everyKnownOption() {
        withBytes("log=warn guest_mem=0x2000000 test=ud2 serial=760 bench noscreen") { line in
            let c = KernelCommandLine(line)
            #expect(c.logLevel == .warn && c.guestMemory == 32 << 20 && c.serialPort == 0x2F8)
            #expect(text(c.testName) == "ud2" && c.isTest("ud2") && !c.isTest("ud") && !c.isTest("ud2x"))
            #expect(c.bench && c.noscreen && c.warningCount == 0)
        }
        for (level, expected) in [("error", KernelCommandLine.LogLevel.error), ("warn", .warn), ("info", .info), ("debug", .debug)] {
            withBytes("log=" + level) { #expect(KernelCommandLine($0).logLevel == expected) }
        }
        #expect(KernelCommandLine.LogLevel.error < .warn && KernelCommandLine.LogLevel.info < .debug)
    }

    @Test func platformChoosesPassthroughOrIsolatedAndRejectsOthers() {
        #expect(KernelCommandLine().platform == nil)
        withBytes("platform=passthrough") { #expect(KernelCommandLine($0).platform == .passthrough) }
        withBytes("platform=passthrough platform=isolated") { #expect(KernelCommandLine($0).platform == .isolated) }
        withBytes("platform=isolated platform=shared platform") { line in
            let c = KernelCommandLine(line)
            #expect(c.platform == .isolated)
            #expect(warnings(c).map(\.0) == [.malformedValue, .missingValue])
        }
    }

    @Test func smpGivesThePassthroughGuestEveryCPU() {
        withBytes("") { #expect(KernelCommandLine($0).guestSMP) }
        withBytes("smp=off") { #expect(!KernelCommandLine($0).guestSMP) }
        withBytes("smp=off smp=on") { #expect(KernelCommandLine($0).guestSMP) }
        withBytes("smp=off smp=yes") { line in
            let c = KernelCommandLine(line)
            #expect(!c.guestSMP)
            #expect(warnings(c).map(\.0) == [.malformedValue])
        }
    }

    @Test func apicvTurnsTheCPUsAPICVirtualizationOnOrOff() {
        #expect(KernelCommandLine().apicVirtualization)
        withBytes("apicv=off") { #expect(!KernelCommandLine($0).apicVirtualization) }
        withBytes("apicv=off apicv=on") { #expect(KernelCommandLine($0).apicVirtualization) }
        withBytes("apicv=off apicv=maybe apicv") { line in
            let c = KernelCommandLine(line)
            #expect(!c.apicVirtualization)
            #expect(warnings(c).map(\.0) == [.malformedValue, .missingValue])
        }
    }

    @Test func laterOptionsOverrideEarlierOnesAndBlanksSeparate() {
        withBytes("log=debug\tlog=error\n  guest_mem=1G\r\ntest=a test=bench") { line in
            let c = KernelCommandLine(line)
            #expect(c.logLevel == .error && c.guestMemory == 1 << 30 && text(c.testName) == "bench")
            #expect(!c.bench && c.warningCount == 0)
        }
    }

    @Test func aNulEndsTheLine() {
        Array("bench\0noscreen".utf8).withUnsafeBytes { line in
            let c = KernelCommandLine(line)
            #expect(c.bench && !c.noscreen)
        }
    }

    @Test func badValuesWarnWithTheOptionNameAndKeepDefaults() {
        withBytes("guest_mem=12Q log=verbose serial=0x10000 serial=0 serial=com1 guest_mem=0 guest_mem=4097") { line in
            let c = KernelCommandLine(line)
            #expect(c.guestMemory == KernelCommandLine.defaultGuestMemory)
            #expect(c.logLevel == KernelCommandLine.defaultLogLevel && c.serialPort == KernelCommandLine.defaultSerialPort)
            let w = warnings(c)
            #expect(w.map(\.0) == Array(repeating: .malformedValue, count: 7))
            #expect(w.map(\.1) == ["guest_mem", "log", "serial", "serial", "serial", "guest_mem", "guest_mem"])
            #expect(w.first?.2 == "guest_mem=12Q")
        }
        // Sizes that parse but no guest could have: refused, not rounded up past 2^64 later.
        withBytes("guest_mem=0xFFFFFFFFFFFFF000 guest_mem=262145G") { line in
            let c = KernelCommandLine(line)
            #expect(c.guestMemory == KernelCommandLine.defaultGuestMemory)
            #expect(warnings(c).map(\.0) == [.valueOutOfRange, .valueOutOfRange])
        }
        withBytes("guest_mem=262144G") { line in
            let c = KernelCommandLine(line)
            #expect(c.guestMemory == KernelCommandLine.maximumGuestMemory && c.guestMemoryGiven)
        }
        withBytes("guest_mem=0 log=info") { line in
            #expect(!KernelCommandLine(line).guestMemoryGiven)   // refused: the guest's format decides
        }
        withBytes("guest_mem=99999999999G") { line in
            let c = KernelCommandLine(line)
            #expect(c.guestMemory == 64 << 20 && warnings(c).map(\.0) == [.malformedValue])
        }
    }

    @Test func missingAndUnexpectedValues() {
        withBytes("log log= test= guest_mem= serial= bench=1 noscreen= =x") { line in
            let c = KernelCommandLine(line)
            #expect(!c.bench && !c.noscreen && c.testName == nil && c.logLevel == .info)
            #expect(warnings(c).map(\.0) == [.missingValue, .missingValue, .missingValue, .missingValue,
                                              .missingValue, .unexpectedValue, .unexpectedValue, .unknownOption])
            #expect(warnings(c).map(\.1) == ["log", "log", "test", "guest_mem", "serial", "bench", "noscreen", ""])
            #expect(warnings(c).last?.2 == "=x" && c.droppedWarnings == 0)
        }
    }

    @Test func warningsBeyondCapacityAreCountedAndStillReported() {
        let line = (1...11).map { "u\($0)" }.joined(separator: " ")
        withBytes(line) { bytes in
            var calls = 0
            let c = KernelCommandLine(bytes) { _ in calls += 1 }
            #expect(calls == 11)
            #expect(c.warningCount == KernelCommandLine.warningCapacity && c.droppedWarnings == 3)
            #expect(text(c.warning(at: 7)?.token) == "u8" && c.warning(at: 8) == nil && c.warning(at: -1) == nil)
        }
    }

    @Test func warningMessagesDiffer() {
        withBytes("zz log bench=1 log=x") { line in
            let c = KernelCommandLine(line)
            let messages = (0..<c.warningCount).map { c.warning(at: $0)!.message.description }
            #expect(Set(messages).count == 4 && messages.allSatisfy { !$0.isEmpty })
        }
    }

    @Test func parseSizeEdgeCases() {
        #expect(size("0") == 0)
        #expect(size("4096") == 4096)
        #expect(size("1K") == 1024 && size("1k") == 1024)
        #expect(size("64M") == 64 << 20 && size("2m") == 2 << 20)
        #expect(size("1G") == 1 << 30 && size("3g") == 3 << 30)
        #expect(size("0x10M") == 16 << 20 && size("0X1f") == 31 && size("0xABCdef") == 0xAB_CDEF)
        #expect(size("0x1G") == 1 << 30)
        #expect(size("18446744073709551615") == UInt64.max)
        #expect(size("0xFFFFFFFFFFFFFFFF") == UInt64.max)
        #expect(size("17179869183G") == 17_179_869_183 << 30)
        // Rejected.
        #expect(size("") == nil)
        #expect(size("M") == nil && size("k") == nil)
        #expect(size("0x") == nil && size("0xM") == nil)
        #expect(size("18446744073709551616") == nil)    // overflow in the digits
        #expect(size("0x10000000000000000") == nil)
        #expect(size("17179869184G") == nil)            // overflow from the suffix
        #expect(size("16777216T") == nil && size("12Q") == nil && size("1KB") == nil)
        #expect(size("-1") == nil && size(" 1") == nil && size("1.5M") == nil && size("0xg") == nil)
        #expect(size("12a") == nil) // hex digit without 0x
    }

    @Test func parseNumberAndEqual() {
        withBytes("0x3F8") { #expect(KernelCommandLine.parseNumber($0) == 0x3F8) }
        withBytes("x") { #expect(KernelCommandLine.parseNumber($0) == nil) }
        withBytes("debug") { #expect(KernelCommandLine.equal($0, "debug") && !KernelCommandLine.equal($0, "debuG")) }
        withBytes("") { #expect(KernelCommandLine.equal($0, "") && KernelCommandLine.parseNumber($0) == nil) }
    }

    @Test func parsesTheCommandLineTagOfABootImage() throws {
        var b = MBIBuilder()
        b.commandLine("test=ud2 guest_mem=128M")
        b.end()
        try withInfo(b.finish()) { info in
            let c = KernelCommandLine(try #require(info.commandLine))
            #expect(c.isTest("ud2") && c.guestMemory == 128 << 20)
        }
    }

    @Test func cpusLimitsTheCPUs() {
        #expect(KernelCommandLine().cpuLimit == nil)
        withBytes("cpus=1") { #expect(KernelCommandLine($0).cpuLimit == 1) }
        withBytes("cpus=0x10") { #expect(KernelCommandLine($0).cpuLimit == 16) }
        withBytes("cpus=0 cpus=two cpus= cpus=5000") { line in
            let c = KernelCommandLine(line)
            #expect(c.cpuLimit == nil)
            #expect(warnings(c).map(\.0) == [.valueOutOfRange, .malformedValue, .missingValue, .valueOutOfRange])
        }
    }
}
