"""soulfra.platforms: the four platforms of an instance (runtime, surface, protocol, mirror), the bridge between
them and the instance that starts them together."""
