import NIOCore

extension SIPMessage {
    /// The media types (`type/subtype`, lower-cased) of the body parts a receiver must understand
    /// to act on this message: those whose Content-Disposition says `handling=required`, and
    /// ISUP or QSIG parts not marked optional (RFC 3204 §2: gateways mark what may be ignored).
    /// A receiver that cannot handle one answers 415 (RFC 3261 §20.11, RFC 3204 §3).
    ///
    /// Bodies without a disposition are left out although RFC 3261 makes `required` the default:
    /// an SDP or a message/sip body sent to a registrar is ignored by every server in practice.
    public var requiredBodyTypes: [String] {
        guard body.readableBytes > 0, let type = (try? contentType()) ?? nil else { return [] }
        if type.type == "multipart", let boundary = type.parameters.unquoted("boundary"),
           let multipart = try? MultipartBody(parsing: body, boundary: boundary) {
            return multipart.parts.compactMap { part in
                guard let partType = part.contentType.flatMap({ try? SIPMediaType(parsing: $0) }) else { return nil }
                return Self.isRequired(partType, disposition: part.contentDisposition) ? partType.essence : nil
            }
        }
        return Self.isRequired(type, disposition: firstValue(.contentDisposition)) ? [type.essence] : []
    }

    private static func isRequired(_ type: SIPMediaType, disposition: String?) -> Bool {
        let handling: String?? = disposition.flatMap { try? SIPContentDisposition(parsing: $0) }?.parameters["handling"]
        switch handling {
        case .some(.some(let value)): return value.lowercased() == "required"
        default: return type.essence == "application/isup" || type.essence == "application/qsig"
        }
    }
}
