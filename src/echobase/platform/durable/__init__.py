"""The durable layer: what every deployment of an environment shares and keeps."""
