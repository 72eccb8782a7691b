/// An ISUP message as SIP-I/SIP-T carries it (RFC 3204: the body starts at the message type code;
/// no routing label, no CIC), with the layout of ITU-T Q.763: mandatory fixed parameters, pointers to
/// the mandatory variable ones and to the optional part, then `tag, length, value` optional
/// parameters ending in 0. Parameters Tern does not know are kept byte for byte; so are bytes after
/// the end of the message, which some stacks leave there.
public struct ISUPMessage: Sendable, Hashable {
    public enum MessageType: UInt8, Sendable {
        case initialAddress = 0x01, subsequentAddress = 0x02, addressComplete = 0x06, connect = 0x07, answer = 0x09
        case release = 0x0C, releaseComplete = 0x10, callProgress = 0x2C
    }

    /// Parameter codes (Q.763 §3).
    public enum Parameter {
        public static let calledPartyNumber: UInt8 = 0x04
        public static let callingPartyNumber: UInt8 = 0x0A
        public static let redirectingNumber: UInt8 = 0x0B
        public static let redirectionNumber: UInt8 = 0x0C
        public static let redirectionInformation: UInt8 = 0x13
        public static let originalCalledNumber: UInt8 = 0x28
        public static let genericNumber: UInt8 = 0xC0
        public static let causeIndicators: UInt8 = 0x12
        public static let hopCounter: UInt8 = 0x3D
    }

    public struct OptionalParameter: Sendable, Hashable {
        public var code: UInt8
        public var value: [UInt8]

        public init(code: UInt8, value: [UInt8]) {
            self.code = code
            self.value = value
        }
    }

    public enum Error: Swift.Error, Sendable, Hashable {
        case empty
        case truncated(String)
        case badPointer(String)
    }

    public var type: UInt8
    /// Mandatory fixed parameters, as bytes.
    public var fixed: [UInt8]
    /// Mandatory variable parameters' values, in order.
    public var variable: [[UInt8]]
    public var optional: [OptionalParameter]
    /// Bytes after the message's end (kept so that a message reads back as it came).
    public var trailing: [UInt8]
    /// The layout is known; otherwise everything after the type byte is in `trailing`.
    public let isStructured: Bool
    private let hasOptionalPart: Bool

    /// The fixed length, number of variable parameters and optional part of each message type Tern reads.
    static func layout(_ type: UInt8) -> (fixed: Int, variable: Int, optional: Bool)? {
        switch MessageType(rawValue: type) {
        case .initialAddress: (5, 1, true)
        case .subsequentAddress: (0, 1, true)
        case .addressComplete, .connect: (2, 0, true)
        case .answer, .releaseComplete: (0, 0, true)
        case .release: (0, 1, true)
        case .callProgress: (1, 0, true)
        case nil: nil
        }
    }

    public init(parsing bytes: [UInt8]) throws(ISUPMessage.Error) {
        guard let type = bytes.first else { throw .empty }
        self.type = type
        guard let layout = Self.layout(type) else {
            fixed = []
            variable = []
            optional = []
            trailing = Array(bytes.dropFirst())
            isStructured = false
            hasOptionalPart = false
            return
        }
        isStructured = true
        hasOptionalPart = layout.optional
        let pointersStart = 1 + layout.fixed
        let pointerCount = layout.variable + (layout.optional ? 1 : 0)
        guard bytes.count >= pointersStart + pointerCount else { throw .truncated("mandatory part") }
        fixed = Array(bytes[1..<pointersStart])
        var end = pointersStart + pointerCount
        var values: [[UInt8]] = []
        for index in 0..<layout.variable {
            let pointerAt = pointersStart + index
            let lengthAt = pointerAt + Int(bytes[pointerAt])
            guard bytes[pointerAt] != 0, lengthAt < bytes.count else { throw .badPointer("mandatory variable parameter \(index + 1)") }
            let length = Int(bytes[lengthAt])
            guard lengthAt + 1 + length <= bytes.count else { throw .truncated("mandatory variable parameter \(index + 1)") }
            values.append(Array(bytes[(lengthAt + 1)..<(lengthAt + 1 + length)]))
            end = max(end, lengthAt + 1 + length)
        }
        variable = values
        var parameters: [OptionalParameter] = []
        if layout.optional {
            let pointerAt = pointersStart + layout.variable
            if bytes[pointerAt] != 0 {
                var cursor = pointerAt + Int(bytes[pointerAt])
                guard cursor < bytes.count else { throw .badPointer("optional part") }
                while true {
                    guard cursor < bytes.count else { throw .truncated("optional part without its end") }
                    let code = bytes[cursor]
                    if code == 0 {
                        cursor += 1
                        break
                    }
                    guard cursor + 1 < bytes.count else { throw .truncated("optional parameter \(code)") }
                    let length = Int(bytes[cursor + 1])
                    guard cursor + 2 + length <= bytes.count else { throw .truncated("optional parameter \(code)") }
                    parameters.append(OptionalParameter(code: code, value: Array(bytes[(cursor + 2)..<(cursor + 2 + length)])))
                    cursor += 2 + length
                }
                end = max(end, cursor)
            }
        }
        optional = parameters
        trailing = Array(bytes[end...])
    }

    /// The message as bytes: variable parameters right after the pointers, in order, then the
    /// optional part (Q.763 §1.8), then whatever trailed it.
    public var encoded: [UInt8] {
        guard isStructured else { return [type] + trailing }
        var out: [UInt8] = [type] + fixed
        let pointerCount = variable.count + (hasOptionalPart ? 1 : 0)
        var body: [UInt8] = []
        var pointers: [UInt8] = []
        for (index, value) in variable.enumerated() {
            // From this pointer octet to the parameter's length octet.
            pointers.append(UInt8(truncatingIfNeeded: pointerCount - index + body.count))
            body.append(UInt8(truncatingIfNeeded: value.count))
            body += value
        }
        if hasOptionalPart {
            if optional.isEmpty {
                pointers.append(0)
            } else {
                pointers.append(UInt8(truncatingIfNeeded: 1 + body.count))
                for parameter in optional {
                    body += [parameter.code, UInt8(truncatingIfNeeded: parameter.value.count)] + parameter.value
                }
                body.append(0)
            }
        }
        out += pointers + body + trailing
        return out
    }

    public func optionalValue(_ code: UInt8) -> [UInt8]? {
        optional.first { $0.code == code }?.value
    }

    /// Replaces an optional parameter in place, or appends it at the end of the optional part.
    public mutating func setOptional(_ code: UInt8, _ value: [UInt8]) {
        if let index = optional.firstIndex(where: { $0.code == code }) {
            optional[index].value = value
        } else {
            optional.append(OptionalParameter(code: code, value: value))
        }
    }

    // MARK: - What SIP-I routing reads and writes (Kamailio's sipt functions)

    /// The IAM's Called Party Number.
    public var calledPartyNumber: ISUPPartyNumber? {
        get {
            guard type == MessageType.initialAddress.rawValue, let value = variable.first else { return nil }
            return ISUPPartyNumber(value)
        }
        set {
            guard type == MessageType.initialAddress.rawValue, let newValue, !variable.isEmpty else { return }
            variable[0] = newValue.encoded
        }
    }

    public var callingPartyNumber: ISUPPartyNumber? {
        get { optionalValue(Parameter.callingPartyNumber).flatMap(ISUPPartyNumber.init) }
        set { if let newValue { setOptional(Parameter.callingPartyNumber, newValue.encoded) } }
    }

    /// The Hop Counter (Q.763 §3.80), nil when absent.
    public var hopCounter: Int? {
        optionalValue(Parameter.hopCounter)?.first.map { Int($0 & 0x1F) }
    }

    /// Points the IAM at `destination` (Kamailio's sipt_destination): the Called Party Number gets
    /// the digits with `nature` and, with `terminator`, the end-of-pulsing signal; the Hop Counter
    /// goes down by one, or is added with `hops` when absent.
    /// - Returns: false when the message is not an IAM.
    @discardableResult
    public mutating func setDestination(_ destination: String, hops: Int, nature: UInt8, terminator: Bool = true) -> Bool {
        guard type == MessageType.initialAddress.rawValue, var number = calledPartyNumber else { return false }
        number.natureOfAddress = nature
        number.digits = destination + (terminator ? "F" : "")
        calledPartyNumber = number
        if let hops = hopCounter {
            setOptional(Parameter.hopCounter, [UInt8(max(0, hops - 1))])
        } else {
            setOptional(Parameter.hopCounter, [UInt8(max(0, min(31, hops)))])
        }
        return true
    }

    /// Sets the Redirecting Number (Kamailio's sipt_forwarding): the number the call was forwarded
    /// from, ISDN numbering plan, presentation allowed.
    @discardableResult
    public mutating func setForwarding(_ origin: String, nature: UInt8) -> Bool {
        guard type == MessageType.initialAddress.rawValue else { return false }
        setOptional(Parameter.redirectingNumber, ISUPPartyNumber(natureOfAddress: nature, indicators: 0x10, digits: origin).encoded)
        return true
    }

    /// Every field Kamailio's `$sipt(...)` reads, by its name there, for what this message carries.
    public var fields: [(name: String, value: String)] {
        var out: [(String, String)] = [("message_type", String(type))]
        func number(_ name: String, _ party: ISUPPartyNumber?) {
            guard let party else { return }
            out.append((name, party.digits))
            out.append((name + ".nai", String(party.natureOfAddress)))
        }
        switch MessageType(rawValue: type) {
        case .initialAddress:
            if fixed.count >= 4 { out.append(("calling_party_category", String(fixed[3]))) }
            number("called_party_number", calledPartyNumber)
            if let calling = callingPartyNumber {
                number("calling_party_number", calling)
                out.append(("calling_party_number.presentation", String(calling.presentation)))
                out.append(("calling_party_number.screening", String(calling.screening)))
            }
            out.append(("hop_counter", hopCounter.map(String.init) ?? "-1"))
            number("redirecting_number", optionalValue(Parameter.redirectingNumber).flatMap(ISUPPartyNumber.init))
            number("original_called_number", optionalValue(Parameter.originalCalledNumber).flatMap(ISUPPartyNumber.init))
            if let info = optionalValue(Parameter.redirectionInformation), info.count >= 2 {
                out.append(("redirection_information.reason", String(info[1] >> 4)))
                out.append(("redirection_information.original_reason", String(info[0] >> 4)))
            }
        case .addressComplete, .connect:
            if let first = fixed.first { out.append(("backward_call_indicator.charge_indicator", String(first & 0x03))) }
        case .callProgress:
            if let event = fixed.first { out.append(("event_info", String(event & 0x7F))) }
        case .release:
            if let cause = variable.first.flatMap(ISUPCause.value(ofIndicators:)) {
                out.append(("cause", String(cause)))
                out.append(("sip_status", String(ISUPCause.sipStatus(forCause: cause))))
            }
        default:
            break
        }
        number("redirection_number", optionalValue(Parameter.redirectionNumber).flatMap(ISUPPartyNumber.init))
        if let generic = optionalValue(Parameter.genericNumber), generic.count >= 3 {
            // The generic number's first octet is its qualifier; the rest is laid out as a party number.
            number("generic_number", ISUPPartyNumber(Array(generic.dropFirst())))
        }
        return out
    }

    /// Sets the Calling Party Number (Kamailio's sipt_set_calling): ISDN numbering plan, number complete.
    @discardableResult
    public mutating func setCalling(_ origin: String, nature: UInt8, presentation: UInt8, screening: UInt8) -> Bool {
        guard type == MessageType.initialAddress.rawValue else { return false }
        callingPartyNumber = ISUPPartyNumber(natureOfAddress: nature, indicators: 0x10 | (presentation & 3) << 2 | (screening & 3),
                                             digits: origin)
        return true
    }
}

/// A Called or Calling Party Number (Q.763 §3.9, §3.10): nature of address, the second octet's
/// indicators, and the address signals two to an octet, the first in the low nibble.
public struct ISUPPartyNumber: Sendable, Hashable {
    /// 1 subscriber, 2 unknown, 3 national, 4 international, 5 network-specific.
    public var natureOfAddress: UInt8
    /// The second octet as it is: INN/NI, numbering plan, and for a calling number presentation and screening.
    public var indicators: UInt8
    /// 0–9, B, C, F (end of pulsing).
    public var digits: String

    public init(natureOfAddress: UInt8, indicators: UInt8, digits: String) {
        self.natureOfAddress = natureOfAddress
        self.indicators = indicators
        self.digits = digits
    }

    public init?(_ value: [UInt8]) {
        guard value.count >= 2 else { return nil }
        natureOfAddress = value[0] & 0x7F
        indicators = value[1]
        let odd = value[0] & 0x80 != 0
        var text = ""
        let symbols = Array("0123456789ABCDEF")
        for (index, byte) in value.dropFirst(2).enumerated() {
            text.append(symbols[Int(byte & 0x0F)])
            let last = index == value.count - 3
            if !(last && odd) { text.append(symbols[Int(byte >> 4)]) }
        }
        digits = text
    }

    public var numberingPlan: UInt8 { (indicators >> 4) & 0x07 }
    /// 0 allowed, 1 restricted, 2 not available (calling numbers).
    public var presentation: UInt8 { (indicators >> 2) & 0x03 }
    /// 1 user provided, verified and passed; 3 network provided (calling numbers).
    public var screening: UInt8 { indicators & 0x03 }

    public var encoded: [UInt8] {
        let nibbles = digits.uppercased().compactMap { Character -> UInt8? in
            guard let value = UInt8(String(Character), radix: 16) else { return nil }
            return value
        }
        let odd = nibbles.count % 2 == 1
        var out: [UInt8] = [(odd ? 0x80 : 0) | (natureOfAddress & 0x7F), indicators]
        var index = 0
        while index < nibbles.count {
            let low = nibbles[index]
            let high: UInt8 = index + 1 < nibbles.count ? nibbles[index + 1] : 0
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
