public import CoreProxy
import Foundation
import NIOCore
public import SIP
public import Logging
import Metrics

/// Registration state learnt from a registrar's `reg` NOTIFYs (RFC 3680; Kamailio's pua_reginfo):
/// Tern as a presence and IM application server behind another registrar (an S-CSCF) hears when a
/// user comes online and goes offline. Each active contact becomes a binding reached through the
/// registrar that reported it, so stored messages flow to the user at once (TS 24.229 I14);
/// terminated contacts and registrations remove theirs. Only trusted peers are believed.
public final class RegInfoNotifyHandler: SIPRequestHandler, Sendable {
    public let methods: [SIPMethod] = [.notify]
    public let acceptedBodyTypes: [String]? = ["application/reginfo+xml"]
    /// Call-IDs of bindings this handler made start with this: they are the registrar's, not a device's.
    static let callIDPrefix = "reginfo-"

    private let policy: IMSPolicy
    private let location: LocationService
    private let logger: Logger
    private let applied = Counter(label: "tern.ims.reginfo_notifies", dimensions: [("outcome", "applied")])
    private let refused = Counter(label: "tern.ims.reginfo_notifies", dimensions: [("outcome", "refused")])

    public init(policy: IMSPolicy, location: LocationService, logger: Logger) {
        self.policy = policy
        self.location = location
        self.logger = logger
    }

    /// Only `reg` NOTIFYs: every other NOTIFY is routed as before.
    public func claims(_ request: SIPMessage) -> Bool {
        guard let event = (try? request.event()) ?? nil else { return false }
        return event.package.caseInsensitiveEquals("reg")
    }

    public func handle(_ transaction: ServerTransaction) {
        let request = transaction.request
        let source = transaction.inbound.source.ipAddress ?? ""
        guard policy.isTrusted(host: source) else {
            refused.increment()
            transaction.respond(SIPStatus(403, "Registration State Only From The Trust Domain"))
            return
        }
        guard request.body.readableBytes > 0 else {
            // An empty NOTIFY (a pending subscription, RFC 6665 §4.2.2) changes nothing.
            transaction.respond(SIPStatus(200))
            return
        }
        guard let type = (try? request.contentType()) ?? nil, type.essence == "application/reginfo+xml" else {
            refused.increment()
            transaction.respond(SIPStatus(415), headers: [(.accept, "application/reginfo+xml")])
            return
        }
        let document: RegInfoDocument
        do {
            document = try RegInfoDocument(parsing: Array(request.body.readableBytesView))
        } catch {
            refused.increment()
            transaction.respond(SIPStatus(400, error.description))
            return
        }
        let registrar = Self.registrarRoute(request, source: transaction.inbound.source, transport: transaction.inbound.transport)
        let now = location.clock.nowMilliseconds()
        let cseq = ((try? request.cseq()) ?? nil)?.sequence ?? 0
        for registration in document.registrations {
            guard let uri = try? SIPURI(parsing: registration.aor),
                  let aor = policy.locationAOR(for: uri) ?? AddressOfRecord.canonical(uri) else { continue }
            apply(registration, aor: aor, full: document.state == "full", registrar: registrar, callID: request.callID ?? "",
                  cseq: cseq, now: now)
        }
        applied.increment()
        transaction.respond(SIPStatus(200))
    }

    private func apply(_ registration: RegInfoDocument.Registration, aor: String, full: Bool, registrar: String?, callID: String,
                       cseq: UInt32, now: Int64) {
        let ours: (Binding) -> Bool = { $0.callID.hasPrefix(Self.callIDPrefix) }
        location.update(aor: aor) { bindings in
            // Full state, or a registration that ended, replaces everything this registrar said before.
            if full || registration.state == "terminated" { bindings.removeAll(where: ours) }
            guard registration.state != "terminated" else { return }
            for contact in registration.contacts {
                guard let uri = try? SIPURI(parsing: contact.uri) else { continue }
                var binding = Binding(aor: aor, contact: uri, contactParameters: SIPParameters(),
                                      expiresAt: now + Int64(max(1, contact.expires ?? 3600)) * 1000,
                                      callID: Self.callIDPrefix + callID, cseq: cseq, transport: .udp, flow: nil, source: nil)
                bindings.removeAll { ours($0) && $0.key == binding.key }
                guard contact.state == "active" else { continue }
                binding.path = registrar.map { [$0] } ?? []
                binding.registeredAt = now
                bindings.append(binding)
            }
        }
        logger.debug("registration state from the registrar", metadata: ["aor": "\(aor)", "state": "\(registration.state)"])
    }

    /// The registrar that reported the state, as the route toward its users: the NOTIFY's Contact
    /// (where the registrar says it is reached), else the address it came from.
    static func registrarRoute(_ request: SIPMessage, source: SocketAddress, transport: SIPTransportProtocol) -> String? {
        if case .addresses(let contacts) = (try? request.contacts()) ?? .none, var contact = contacts.first?.uri {
            contact.parameters.set("lr", nil)
            return "<" + contact.description + ">"
        }
        guard let ip = source.ipAddress, let port = source.port else { return nil }
        let host = ip.utf8.contains(UInt8(ascii: ":")) ? "[" + ip + "]" : ip
        return "<sip:" + host + ":" + String(port) + (transport == .udp ? "" : ";transport=" + transport.rawValue) + ";lr>"
    }
}
