public enum EventBusModule {}
