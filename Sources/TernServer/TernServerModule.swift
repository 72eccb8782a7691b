public enum TernServerModule {}
