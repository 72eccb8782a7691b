import NIOConcurrencyHelpers
public import SIP

/// The subscribers this node serves, indexed by every public identity. Replaced or edited at run
/// time (the management API); lookups take one lock.
public final class IMSProfiles: Sendable {
    /// Where an identity belongs: its subscription and which service profile (implicit set).
    public struct Membership: Sendable, Hashable {
        public var subscription: IMSSubscription
        public var profileIndex: Int

        public var profile: IMSServiceProfile { subscription.serviceProfiles[profileIndex] }

        /// The AOR under which the whole implicit registration set keeps its bindings: the default identity's.
        public var setAOR: String? { profile.defaultIdentity?.key }
    }

    private struct State {
        var subscriptions: [String: IMSSubscription] = [:]
        var byIdentity: [String: Membership] = [:]
    }

    private let state = NIOLockedValueBox(State())

    public init(_ subscriptions: [IMSSubscription] = []) {
        for subscription in subscriptions { put(subscription) }
    }

    public var count: Int { state.withLockedValue { $0.subscriptions.count } }

    /// Adds or replaces a subscription (by private identity).
    public func put(_ subscription: IMSSubscription) {
        state.withLockedValue { state in
            if let old = state.subscriptions[subscription.privateID] { Self.unindex(old, from: &state.byIdentity) }
            state.subscriptions[subscription.privateID] = subscription
            for (index, profile) in subscription.serviceProfiles.enumerated() {
                for identity in profile.publicIdentities {
                    state.byIdentity[identity.key] = Membership(subscription: subscription, profileIndex: index)
                }
            }
        }
    }

    @discardableResult
    public func remove(privateID: String) -> Bool {
        state.withLockedValue { state in
            guard let old = state.subscriptions.removeValue(forKey: privateID) else { return false }
            Self.unindex(old, from: &state.byIdentity)
            return true
        }
    }

    public func subscription(privateID: String) -> IMSSubscription? {
        state.withLockedValue { $0.subscriptions[privateID] }
    }

    /// The membership of the identity `uri` names, if any subscriber has it.
    public func membership(of uri: SIPURI) -> Membership? {
        guard let key = IMSIdentityKey.of(uri) else { return nil }
        return state.withLockedValue { $0.byIdentity[key] }
    }

    /// The identity itself (barring, default flag), if a subscriber has it.
    public func identity(_ uri: SIPURI) -> IMSPublicIdentity? {
        guard let key = IMSIdentityKey.of(uri), let membership = membership(of: uri) else { return nil }
        return membership.profile.publicIdentities.first { $0.key == key }
    }

    private static func unindex(_ subscription: IMSSubscription, from index: inout [String: Membership]) {
        for profile in subscription.serviceProfiles {
            for identity in profile.publicIdentities where index[identity.key]?.subscription.privateID == subscription.privateID {
                index[identity.key] = nil
            }
        }
    }
}
