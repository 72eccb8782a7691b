public enum PresenceModule {}
