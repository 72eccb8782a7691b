import SIP
import Testing

/// ISUP in SIP-I bodies (ITU-T Q.763, RFC 3204) against real vectors (../shared/ims-and-sipi.md B.2.5),
/// including a known answer produced by Kamailio's sipt module.
@Suite struct ISUPMessageTests {
    static func bytes(_ hex: String) -> [UInt8] {
        hex.split(separator: " ").compactMap { UInt8($0, radix: 16) }
    }

    /// (a) osmo_ss7's IAM without its CIC, with an unknown optional parameter 0xF2.
    static let iamA = bytes("01 10 48 00 0a 03 02 0a 08 83 10 29 99 24 00 80 0f 0a 08 03 13 94 03 42 30 93 20 f2 15 36 19 08 00 00 15 ff ff ff ff ff ff ff ff ff ff 1d 45 38 cb 20 00")
    /// (b) jss7's IAM without its CIC.
    static let iamB = bytes("01 10 00 01 0a 03 02 0a 08 03 10 83 60 38 04 10 65 0a 07 03 13 09 32 36 11 37 00")
    /// (c) RFC 3204's example: the optional pointer is 0 and bytes trail the message.
    static let iamC = bytes("01 00 49 00 00 03 02 00 07 04 10 00 33 63 21 43 00 00 03 06 0d 03 80 90 a2 07 03 10 03 63 53 00 10 0a 07 03 10 27 80 88 03 00 00 89 8b 0e 95 1e 1e 1e 06 26 05 0d f5 01 06 10 04 00")
    /// (d) a REL in a BYE: cause 31, location transit network.
    static let relD = bytes("0c 02 00 02 83 9f")
    /// (e) Kamailio 5.6.3 sipt on (a): sipt_destination("4930123456","31","4"); sipt_set_calling("4930999","4","1","3").
    static let iamE = bytes("01 10 48 00 0a 03 02 0a 08 84 10 94 03 21 43 65 0f 0a 06 84 17 94 03 99 09 f2 15 36 19 08 00 00 15 ff ff ff ff ff ff ff ff ff ff 1d 45 38 cb 20 3d 01 1f 00")

    @Test(arguments: [iamA, iamB, iamC, relD, iamE])
    func everyVectorReadsBackByteForByte(_ vector: [UInt8]) throws {
        let message = try ISUPMessage(parsing: vector)
        #expect(message.encoded == vector)
    }

    @Test func numbersDecodeAsTsharkReadsThem() throws {
        let a = try ISUPMessage(parsing: Self.iamA)
        #expect(a.type == 0x01)
        let called = try #require(a.calledPartyNumber)
        #expect(called.digits == "9299420008F" && called.natureOfAddress == 3 && called.numberingPlan == 1)
        let calling = try #require(a.callingPartyNumber)
        #expect(calling.digits == "493024033902" && calling.natureOfAddress == 3 && calling.presentation == 0 && calling.screening == 3)
        #expect(a.optionalValue(0xF2)?.count == 21, "an unknown parameter is kept")
        #expect(a.hopCounter == nil)
        let b = try ISUPMessage(parsing: Self.iamB)
        #expect(b.calledPartyNumber?.digits == "380683400156" && b.callingPartyNumber?.digits == "9023631173")
        let c = try ISUPMessage(parsing: Self.iamC)
        #expect(c.calledPartyNumber?.digits == "0033361234" && c.calledPartyNumber?.natureOfAddress == 4)
        #expect(c.optional.isEmpty, "optional pointer 0: what trails is not read as parameters")
        let release = try ISUPMessage(parsing: Self.relD)
        #expect(release.variable.first == [0x83, 0x9F], "location 3, cause 31")
        // Odd and even counts, filler and end of pulsing (Q.763 §3.9).
        #expect(ISUPPartyNumber(natureOfAddress: 4, indicators: 0x10, digits: "4930999").encoded == Self.bytes("84 10 94 03 99 09"))
        #expect(ISUPPartyNumber(natureOfAddress: 3, indicators: 0x10, digits: "12").encoded == Self.bytes("03 10 21"))
    }

    @Test func rewritingGivesKamailiosKnownAnswer() throws {
        var message = try ISUPMessage(parsing: Self.iamA)
        let pointed = message.setDestination("4930123456", hops: 31, nature: 4)
        let calling = message.setCalling("4930999", nature: 4, presentation: 1, screening: 3)
        #expect(pointed && calling)
        #expect(message.encoded == Self.iamE)
        // Once more: the hop counter goes down instead of being added again.
        message.setDestination("4930123456", hops: 31, nature: 4)
        #expect(message.hopCounter == 30)
        var release = try ISUPMessage(parsing: Self.relD)
        let changed = release.setDestination("1", hops: 31, nature: 4)
        #expect(!changed, "only an IAM has a destination")
        #expect(release.encoded == Self.relD)
    }

    @Test func malformedBytesAreRefusedNotCrashedOn() {
        #expect(throws: ISUPMessage.Error.self) { try ISUPMessage(parsing: []) }
        #expect(throws: ISUPMessage.Error.self) { try ISUPMessage(parsing: [0x01, 0x10]) }
        #expect(throws: ISUPMessage.Error.self) { try ISUPMessage(parsing: Array(Self.iamA.prefix(30))) }
        var generator = SplitMix64(seed: 3204)
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 64)
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if !bytes.isEmpty, generator.next() % 2 == 0 { bytes[0] = [0x01, 0x06, 0x09, 0x0C, 0x10, 0x2C][Int(generator.next() % 6)] }
            if let message = try? ISUPMessage(parsing: bytes) { _ = message.encoded }
        }
    }
}

/// What SIP-I routing reads, and causes mapped per RFC 3398.
@Suite struct ISUPFieldTests {
    @Test func sipTFieldsOfAnIAMAndARelease() throws {
        var iam = try ISUPMessage(parsing: ISUPMessageTests.iamA)
        iam.setForwarding("4930777", nature: 4)
        let fields = Dictionary(iam.fields, uniquingKeysWith: { first, _ in first })
        #expect(fields["message_type"] == "1" && fields["calling_party_category"] == "10")
        #expect(fields["called_party_number"] == "9299420008F" && fields["called_party_number.nai"] == "3")
        #expect(fields["calling_party_number"] == "493024033902" && fields["calling_party_number.screening"] == "3")
        #expect(fields["calling_party_number.presentation"] == "0" && fields["hop_counter"] == "-1")
        #expect(fields["redirecting_number"] == "4930777" && fields["redirecting_number.nai"] == "4")
        let release = Dictionary(try ISUPMessage(parsing: ISUPMessageTests.relD).fields, uniquingKeysWith: { first, _ in first })
        #expect(release["cause"] == "31" && release["sip_status"] == "480")
    }

    @Test(arguments: [(17, 486), (18, 408), (1, 404), (34, 503), (28, 484), (102, 504), (127, 500), (200, 500)])
    func causesBecomeStatuses(_ cause: Int, _ status: Int) {
        #expect(ISUPCause.sipStatus(forCause: cause) == status)
    }

    @Test(arguments: [(486, 17), (404, 1), (480, 18), (503, 41), (603, 21), (483, 25), (406, 79), (487, 31)])
    func statusesBecomeCauses(_ status: Int, _ cause: Int) {
        #expect(ISUPCause.cause(forStatus: status) == cause)
        #expect(ISUPCause.reasonHeader(cause) == "Q.850;cause=\(cause)")
    }
}
