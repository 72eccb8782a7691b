#if canImport(FoundationXML)
public import FoundationXML
#else
public import Foundation
#endif

extension XMLElement {
    /// An attribute without a namespace prefix. (`attribute(forName:)` finds nothing in
    /// swift-corelibs-foundation when the element has a default namespace, as PIDF and reginfo do.)
    public func unqualifiedAttribute(_ name: String) -> String? {
        attributes?.first { $0.name == name }?.stringValue
    }
}
