public enum SIPModule {}
