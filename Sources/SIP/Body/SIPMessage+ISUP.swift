import NIOCore

/// The ISUP that SIP-I/SIP-T carries (RFC 3204, RFC 5621): the whole body, or one part of a
/// multipart/mixed body beside the SDP.
extension SIPMessage {
    /// The ISUP message of the body, when there is one that parses.
    public var isupMessage: ISUPMessage? {
        guard body.readableBytes > 0, let type = try? SIPMediaType(parsing: firstValue(.contentType) ?? "") else { return nil }
        if type.type == "application", type.subtype == "isup" {
            return try? ISUPMessage(parsing: Array(body.readableBytesView))
        }
        guard type.type == "multipart", let boundary = type.parameters.unquoted("boundary"),
              let multipart = try? MultipartBody(parsing: body, boundary: boundary),
              let part = multipart.firstPart(withContentType: "application/isup")
        else { return nil }
        return try? ISUPMessage(parsing: Array(part.body.readableBytesView))
    }

    /// Puts `message` where the ISUP was, leaving every other part (the SDP) as it was.
    /// - Returns: false when the body carries no ISUP.
    @discardableResult
    public mutating func setISUPMessage(_ message: ISUPMessage) -> Bool {
        guard let type = try? SIPMediaType(parsing: firstValue(.contentType) ?? "") else { return false }
        let bytes = ByteBuffer(bytes: message.encoded)
        if type.type == "application", type.subtype == "isup" {
            body = bytes
            return true
        }
        guard type.type == "multipart", let boundary = type.parameters.unquoted("boundary"),
              var multipart = try? MultipartBody(parsing: body, boundary: boundary),
              let index = multipart.firstIndex(ofContentType: "application/isup")
        else { return false }
        multipart.parts[index].body = bytes
        if let rebuilt = try? multipart.serialized(boundary: boundary) {
            body = rebuilt
            return true
        }
        // The new bytes happen to hold the delimiter: a fresh boundary.
        let fresh = MultipartBody.makeBoundary()
        guard let rebuilt = try? multipart.serialized(boundary: fresh) else { return false }
        var newType = type
        newType.parameters.set("boundary", fresh)
        setHeader(.contentType, newType.description)
        body = rebuilt
        return true
    }
}
