public enum CoreProxyModule {}
