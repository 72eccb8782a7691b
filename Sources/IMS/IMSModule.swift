public enum IMSModule {}
