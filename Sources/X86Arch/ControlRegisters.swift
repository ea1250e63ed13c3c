// Control-register bits. SDM Vol. 3A 2.5 "Control Registers".

/// CR0 bits. SDM Vol. 3A 2.5 "Control Registers".
@frozen
public struct CR0Bits: BitFlags {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let pe = Self(rawValue: 1 << 0)
    public static let mp = Self(rawValue: 1 << 1)
    public static let em = Self(rawValue: 1 << 2)
    public static let ts = Self(rawValue: 1 << 3)
    public static let et = Self(rawValue: 1 << 4)
    public static let ne = Self(rawValue: 1 << 5)
    public static let wp = Self(rawValue: 1 << 16)
    public static let am = Self(rawValue: 1 << 18)
    public static let nw = Self(rawValue: 1 << 29)
    public static let cd = Self(rawValue: 1 << 30)
    public static let pg = Self(rawValue: 1 << 31)
}

/// CR4 bits. SDM Vol. 3A 2.5 "Control Registers".
@frozen
public struct CR4Bits: BitFlags {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let vme = Self(rawValue: 1 << 0)
    public static let pvi = Self(rawValue: 1 << 1)
    public static let tsd = Self(rawValue: 1 << 2)
    public static let de = Self(rawValue: 1 << 3)
    public static let pse = Self(rawValue: 1 << 4)
    public static let pae = Self(rawValue: 1 << 5)
    public static let mce = Self(rawValue: 1 << 6)
    public static let pge = Self(rawValue: 1 << 7)
    public static let pce = Self(rawValue: 1 << 8)
    public static let osfxsr = Self(rawValue: 1 << 9)
    public static let osxmmexcpt = Self(rawValue: 1 << 10)
    public static let umip = Self(rawValue: 1 << 11)
    public static let la57 = Self(rawValue: 1 << 12)
    public static let vmxe = Self(rawValue: 1 << 13)
    public static let smxe = Self(rawValue: 1 << 14)
    public static let fsgsbase = Self(rawValue: 1 << 16)
    public static let pcide = Self(rawValue: 1 << 17)
    public static let osxsave = Self(rawValue: 1 << 18)
    public static let kl = Self(rawValue: 1 << 19)
    public static let smep = Self(rawValue: 1 << 20)
    public static let smap = Self(rawValue: 1 << 21)
    public static let pke = Self(rawValue: 1 << 22)
    public static let cet = Self(rawValue: 1 << 23)
    public static let pks = Self(rawValue: 1 << 24)
    public static let uintr = Self(rawValue: 1 << 25)
    public static let lass = Self(rawValue: 1 << 27)
    public static let lamSupervisor = Self(rawValue: 1 << 28)
    public static let fred = Self(rawValue: 1 << 32)
}
