/// What a transaction state machine answers one event with: at most five actions, kept inline.
/// An array for them was an allocation per event, about eight per proxied request.
public struct TransactionActions<Action: Sendable & Hashable>: Sendable, Hashable, Sequence {
    private var first: Action?
    private var second: Action?
    private var third: Action?
    private var fourth: Action?
    private var fifth: Action?

    /// The actions in order; an absent argument ends the list.
    public init(_ first: Action? = nil, _ second: Action? = nil, _ third: Action? = nil, _ fourth: Action? = nil,
                _ fifth: Action? = nil) {
        self.first = first
        self.second = first == nil ? nil : second
        self.third = self.second == nil ? nil : third
        self.fourth = self.third == nil ? nil : fourth
        self.fifth = self.fourth == nil ? nil : fifth
    }

    public struct Iterator: IteratorProtocol {
        fileprivate let actions: TransactionActions
        fileprivate var position = 0

        public mutating func next() -> Action? {
            defer { position += 1 }
            switch position {
            case 0: return actions.first
            case 1: return actions.second
            case 2: return actions.third
            case 3: return actions.fourth
            case 4: return actions.fifth
            default: return nil
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(actions: self) }
}
