public enum MessagingModule {}
