import CoreProxy
import EventBus
import SIP
import NIOCore

/// The location table: look a user up, remove bindings, dump everything a page at a time.
enum LocationMethods {
    static func methods(_ location: LocationService) -> [ManagementMethod] {
        [
            ManagementMethod("location.lookup", "A user's current bindings, highest q first.", parameters: ["aor"]) { params in
                let aor = try ManagementAddress.aor(params, "aor")
                let now = SystemLocationClock().nowMilliseconds()
                return .object([("aor", .string(aor)), ("bindings", .array(location.bindings(for: aor).map { encode($0, now: now) }))])
            },
            ManagementMethod("location.remove", "Removes a user's binding with this contact URI, or all of them without one.",
                             parameters: ["aor", "contact"], changesState: true) { params in
                let aor = try ManagementAddress.aor(params, "aor")
                let contact = try params.optionalString("contact")
                let removed = location.update(aor: aor) { bindings -> Int in
                    let before = bindings.count
                    bindings.removeAll { binding in contact.map { matches(binding, contact: $0) } ?? true }
                    return before - bindings.count
                }
                if removed == 0, let contact { throw ManagementError.notFound("no binding of \(aor) has contact \(contact)") }
                return .object([("aor", .string(aor)), ("removed", .int(Int64(removed)))])
            },
            ManagementMethod("location.dump", "Every current binding, ordered by AOR, a page at a time.",
                             parameters: ManagementPaging.parameters) { params in
                let now = SystemLocationClock().nowMilliseconds()
                let all = location.allBindings.sorted { ($0.aor, $0.key) < ($1.aor, $1.key) }
                return try ManagementPaging.page(all, params, key: "bindings") { encode($0, now: now) }
            },
        ]
    }

    /// The contact as registered, or its key (the instance id for an outbound device).
    private static func matches(_ binding: Binding, contact: String) -> Bool {
        if binding.contactText == contact || binding.key == contact { return true }
        guard let uri = try? SIPURI(parsing: contact) else { return false }
        return binding.contact == uri
    }

    static func encode(_ binding: Binding, now: Int64) -> JSONValue {
        .object([
            ("aor", .string(binding.aor)),
            ("contact", .string(binding.contactText)),
            ("expires", .int(Int64(binding.remainingSeconds(at: now)))),
            ("q", .double(binding.q)),
            ("instance", binding.instanceID.map { .string($0) } ?? .null),
            ("reg_id", binding.regID.map { .int(Int64($0)) } ?? .null),
            ("transport", .string(binding.transport.rawValue)),
            ("source", binding.source.map { .string($0.description) } ?? .null),
            ("behind_nat", .bool(binding.isBehindNAT)),
            ("path", .array(binding.path.map { .string($0) })),
            ("user_agent", binding.userAgent.map { .string($0) } ?? .null),
            ("call_id", .string(binding.callID)),
            ("cseq", .int(Int64(binding.cseq))),
            ("registered_at", binding.registeredAt > 0 ? .string(TernEvent.rfc3339String(binding.registeredAt)) : .null),
        ])
    }
}
