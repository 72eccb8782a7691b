public import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Whether a document is well-formed XML. swift-corelibs-foundation's XMLDocument recovers from
/// errors and its XMLParser does not notice a document that simply stops, so a truncated body
/// (`<presence><tuple>...` cut off in transit) would read as a whole one. This counts elements
/// open and closed over a SAX pass, external entities never loaded.
public enum XMLWellFormedness {
    /// nil when well-formed, otherwise what is wrong.
    public static func problem(in data: Data) -> String? {
        let parser = XMLParser(data: data)
        parser.shouldResolveExternalEntities = false
        let counter = DepthCounter()
        parser.delegate = counter
        guard parser.parse() else {
            return "not well-formed XML (line \(parser.lineNumber), column \(parser.columnNumber))"
        }
        guard counter.roots == 1 else { return counter.roots == 0 ? "no root element" : "more than one root element" }
        guard counter.depth == 0 else { return "the document ends inside an element" }
        return nil
    }

    private final class DepthCounter: NSObject, XMLParserDelegate {
        var depth = 0
        var roots = 0

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if depth == 0 { roots += 1 }
            depth += 1
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            depth -= 1
        }
    }
}
