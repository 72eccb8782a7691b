import IMS
import SIP
import Testing

/// Trigger points (TS 29.228 §B.2.2): every service point trigger kind, negation, and groups
/// combined as CNF (groups ANDed, triggers within a group ORed) and DNF (the reverse).
@Suite struct InitialFilterCriteriaTests {
    typealias SPT = InitialFilterCriteria.ServicePointTrigger

    static let invite: SIPMessage = {
        let sdp = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n"
        let text = "INVITE sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-ifc\r\nMax-Forwards: 70\r\n"
            + "From: <sip:alice@ims.example>;tag=1\r\nTo: <sip:bob@ims.example>\r\nCall-ID: ifc-1\r\nCSeq: 1 INVITE\r\n"
            + "Accept-Contact: *;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"\r\nContent-Type: application/sdp\r\n"
            + "Content-Length: \(sdp.utf8.count)\r\n\r\n" + sdp
        return (try? SIPMessageParser().parse(text)) ?? SIPMessage.request(method: .invite, uri: SIPURI(scheme: .sip, host: "x"), headers: [])
    }()

    static func criterion(cnf: Bool, _ triggers: [SPT]) -> InitialFilterCriteria {
        InitialFilterCriteria(priority: 0, trigger: .init(conjunctive: cnf, triggers: triggers),
                              applicationServer: .init(serverName: SIPURI(scheme: .sip, host: "as.ims.example")))
    }

    static let cases: [(String, Bool, [SPT], InitialFilterCriteria.SessionCase, Bool)] = [
        ("method", true, [SPT(.method("INVITE"))], .originating, true),
        ("method, other", true, [SPT(.method("MESSAGE"))], .originating, false),
        ("method negated", true, [SPT(negated: true, .method("MESSAGE"))], .originating, true),
        ("request URI", true, [SPT(.requestURI("^sip:bob@"))], .originating, true),
        ("header present", true, [SPT(.header("Accept-Contact", content: nil))], .originating, true),
        ("header content", true, [SPT(.header("Accept-Contact", content: "mmtel"))], .originating, true),
        ("header absent", true, [SPT(.header("P-Asserted-Service", content: nil))], .originating, false),
        ("session case", true, [SPT(.sessionCase(.terminatingRegistered))], .terminatingRegistered, true),
        ("session case, other", true, [SPT(.sessionCase(.terminatingRegistered))], .originating, false),
        ("SDP line", true, [SPT(.sessionDescription(line: "m", content: "^audio"))], .originating, true),
        ("SDP line, no match", true, [SPT(.sessionDescription(line: "m", content: "^video"))], .originating, false),
        // CNF: (INVITE or MESSAGE) and (originating); the second group fails for a terminating request.
        ("CNF both groups", true, [SPT(group: 0, .method("INVITE")), SPT(group: 0, .method("MESSAGE")),
                                   SPT(group: 1, .sessionCase(.originating))], .originating, true),
        ("CNF one group fails", true, [SPT(group: 0, .method("INVITE")), SPT(group: 0, .method("MESSAGE")),
                                       SPT(group: 1, .sessionCase(.originating))], .terminatingRegistered, false),
        // DNF: (MESSAGE and originating) or (INVITE and not terminating-unregistered).
        ("DNF second group", false, [SPT(group: 0, .method("MESSAGE")), SPT(group: 0, .sessionCase(.originating)),
                                     SPT(group: 1, .method("INVITE")), SPT(group: 1, negated: true, .sessionCase(.terminatingUnregistered))],
         .terminatingRegistered, true),
        ("DNF no group", false, [SPT(group: 0, .method("MESSAGE")), SPT(group: 0, .sessionCase(.originating)),
                                 SPT(group: 1, .method("INVITE")), SPT(group: 1, negated: true, .sessionCase(.terminatingUnregistered))],
         .terminatingUnregistered, false),
    ]

    @Test(arguments: cases)
    func triggerPoints(_ name: String, _ cnf: Bool, _ triggers: [SPT], _ sessionCase: InitialFilterCriteria.SessionCase, _ expected: Bool) {
        let context = InitialFilterCriteria.Context(request: Self.invite, sessionCase: sessionCase)
        #expect(Self.criterion(cnf: cnf, triggers).matches(context) == expected, "\(name)")
    }

    @Test func registrationTypeOnlyForRegisters() {
        let criterion = Self.criterion(cnf: true, [SPT(.registrationType([0, 2]))])
        #expect(criterion.matches(.init(request: Self.invite, sessionCase: .originating, registrationType: 0)))
        #expect(!criterion.matches(.init(request: Self.invite, sessionCase: .originating, registrationType: 1)))
        #expect(!criterion.matches(.init(request: Self.invite, sessionCase: .originating)))
    }
}
